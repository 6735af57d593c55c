"""The ``trading:`` configuration section: accounts, risk limits, the trading day, Sharpe, push API.

Declared beside the tracker (``exporter/trading/tracker.py``) and built by
``exporter.config.load_data`` through ``section`` (registered in the ``feedwatch.sections`` entry
points), with the same strict walker as the rest of the file: unknown keys are errors, defaults are the dataclass field defaults below (documented in docs/trading-events.md),
and every problem is reported with its path (``trading.accounts[1].limits.drawdown_daily: ...``).

Shape::

    trading:
      state_file: /var/lib/feedwatch/trading.sqlite    # + trading.sqlite.backup beside it
      timezone: UTC
      day_start: "00:00"
      limits: {drawdown_daily: 0.05, drawdown_weekly: 0.10, drawdown_total: 0.20,
               consecutive_losses: 10, api_errors_per_minute: 3}
      sharpe: {risk_free_rate: 0.0, periods_per_year: 365, window: 30}
      api: {token: ${BOT_TOKEN}, hmac_secret_file: /run/secrets/bot_hmac, max_skew: 5m}
      accounts:
        - name: crypto-main
          symbols: {BTCUSDT: binance, ETHUSDT: binance}
        - name: stocks
          timezone: America/New_York
          day_start: "16:00"
          sharpe: {periods_per_year: 252}
          limits: {drawdown_daily: 0.03}
          symbols: {AAPL: stocks}

Account-level ``timezone``, ``day_start``, ``week_start``, ``sharpe`` and ``limits`` are partial
overrides of the section-level ones; ``resolved`` holds the result (one object the tracker reads).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exporter.config import Duration, FeedConfig, build_dataclass, overlay, read_secret_files

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_DAY_START = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_.:@-]+$")


@dataclass(frozen=True)
class Limits:
    """Risk limits, exported as ``feedwatch_trading_limit_*`` so rules compare against them."""

    # Drawdown from the trading day's peak equity, as a ratio (0.05 = 5 %).
    drawdown_daily: float = 0.05
    # Drawdown from the trading week's peak equity.
    drawdown_weekly: float = 0.10
    # Drawdown from the all-time peak equity.
    drawdown_total: float = 0.20
    # Losing trades in a row.
    consecutive_losses: int = 10
    # Failed API calls per minute (the alert fires above this).
    api_errors_per_minute: float = 3.0


@dataclass(frozen=True)
class LimitsOverride:
    """A partial Limits: only the keys given replace the section's."""

    drawdown_daily: float | None = None
    drawdown_weekly: float | None = None
    drawdown_total: float | None = None
    consecutive_losses: int | None = None
    api_errors_per_minute: float | None = None

    def apply(self, base: Limits) -> Limits:
        return overlay(base, self)


@dataclass(frozen=True)
class Sharpe:
    """Sharpe ratio from daily returns (formula in docs/trading-events.md)."""

    # Annual risk-free rate as a ratio (0.04 = 4 %); per period it is rate / periods_per_year.
    risk_free_rate: float = 0.0
    # Trading days per year used to annualise: 365 for crypto, 252 for stocks.
    periods_per_year: int = 365
    # The most recent daily returns used (a rolling window).
    window: int = 30
    # Fewer returns than this and the ratio is absent (never a fake 0); at least 2.
    min_returns: int = 2


@dataclass(frozen=True)
class SharpeOverride:
    risk_free_rate: float | None = None
    periods_per_year: int | None = None
    window: int | None = None
    min_returns: int | None = None

    def apply(self, base: Sharpe) -> Sharpe:
        return overlay(base, self)


@dataclass(frozen=True)
class ApiConfig:
    """``POST /api/v1/events``: who may push events (a bearer token and/or an HMAC secret)."""

    token: str = ""
    # A file holding the token (Docker/Kubernetes secrets); whitespace around it is ignored.
    token_file: str | None = None
    hmac_secret: str = ""
    hmac_secret_file: str | None = None
    # A signed request whose timestamp is further than this from our clock is refused (replay).
    max_skew: Duration = 300.0
    # Most events accepted in one request.
    max_batch: int = 1000
    # Largest request body in bytes (413 above; checked before the body is read).
    max_body_size: int = 1024 * 1024

    @property
    def enabled(self) -> bool:
        return bool(self.token or self.hmac_secret)


@dataclass(frozen=True)
class AccountRules:
    """Everything the tracker needs to know about one account, overrides resolved."""

    name: str
    limits: Limits
    sharpe: Sharpe
    timezone: str
    day_start: str
    week_start: str
    # symbol -> the feed whose price it trades on (joins positions with symbol freshness).
    symbols: Mapping[str, str]
    # ISO 4217 code of the account currency, for display only (the status page); None = unknown.
    currency: str | None = None

    @property
    def zone(self) -> dt.tzinfo:
        return ZoneInfo(self.timezone)

    @property
    def day_offset(self) -> dt.timedelta:
        hours, minutes = self.day_start.split(":")
        return dt.timedelta(hours=int(hours), minutes=int(minutes))

    @property
    def week_start_index(self) -> int:
        return WEEKDAYS.index(self.week_start)


@dataclass(frozen=True)
class AccountConfig:
    name: str
    limits: LimitsOverride = LimitsOverride()
    sharpe: SharpeOverride = SharpeOverride()
    timezone: str | None = None
    day_start: str | None = None
    week_start: Weekday | None = None
    symbols: dict[str, str] = field(default_factory=dict)
    # The account currency's ISO 4217 code (USD, EUR, ...), for display; USDT and the like are fine.
    currency: str | None = None
    # Filled by build_section.
    resolved: Any = None


@dataclass(frozen=True)
class TradingConfig:
    accounts: tuple[AccountConfig, ...] = ()
    # SQLite file holding the state that must survive a restart; unset keeps it in memory only.
    state_file: str | None = None
    # How often (at most) the state file is copied to <state_file>.backup after a change.
    state_backup_interval: Duration = 60.0
    # The trading day starts at day_start (HH:MM) in timezone; weeks start on week_start.
    timezone: str = "UTC"
    day_start: str = "00:00"
    week_start: Weekday = "monday"
    limits: Limits = Limits()
    sharpe: Sharpe = Sharpe()
    # Event ids are remembered this long to drop replays; older events are refused as expired.
    dedup_window: Duration = 7 * 86400.0
    api: ApiConfig = ApiConfig()

    def account(self, name: str) -> AccountRules | None:
        for account in self.accounts:
            if account.name == name:
                return account.resolved
        return None

    @property
    def rules(self) -> dict[str, AccountRules]:
        return {a.name: a.resolved for a in self.accounts}


def section(raw: Any, path: str, errors: list[str], environ: Mapping[str, str],
            feeds: Sequence[FeedConfig]) -> TradingConfig | None:
    """The ``trading:`` section as the config loader asks for it (the ``feedwatch.sections`` entry
    point): absent is fine unless a feed has ``kind: trading``, which needs the accounts."""
    if raw is None:
        if any(f.kind == "trading" for f in feeds):
            errors.append(f"{path}: required when a feed has kind 'trading' (it lists the accounts; "
                          "see docs/trading-events.md)")
        return None
    return build_section(raw, path, errors, environ, feeds)


def build_section(raw: Any, path: str, errors: list[str], environ: Mapping[str, str],
                  feeds: Sequence[FeedConfig]) -> TradingConfig | None:
    """Build and check ``trading:``; problems are appended to ``errors`` as "path: message"."""
    if raw is not None and not isinstance(raw, dict):
        errors.append(f"{path}: expected a mapping, got {type(raw).__name__}")
        return None
    raw = raw or {}
    section = build_dataclass(TradingConfig, {k: v for k, v in raw.items() if k != "accounts"}, path,
                              errors, environ, skip=frozenset({"accounts"}))
    if section is None:
        return None
    accounts_raw = raw.get("accounts") or []
    if not isinstance(accounts_raw, list):
        errors.append(f"{path}.accounts: expected a list, got {type(accounts_raw).__name__}")
        accounts_raw = []
    # ``resolved`` is derived, never a user key: build each account with it skipped.
    built = [build_dataclass(AccountConfig, item, f"{path}.accounts[{i}]", errors, environ,
                             skip=frozenset({"resolved"})) for i, item in enumerate(accounts_raw)]
    for i, item in enumerate(accounts_raw):
        if isinstance(item, dict) and "resolved" in item:
            errors.append(f"{path}.accounts[{i}].resolved: unknown key")
    section = dataclasses.replace(section, accounts=tuple(built))
    section = dataclasses.replace(section, api=_read_secrets(section.api, f"{path}.api", errors))
    _check_calendar(section.timezone, section.day_start, path, errors)
    _check_limits(section.limits, f"{path}.limits", errors)
    _check_sharpe(section.sharpe, f"{path}.sharpe", errors)
    if section.api.max_batch < 1:
        errors.append(f"{path}.api.max_batch: must be at least 1, got {section.api.max_batch}")
    if section.api.max_body_size < 1024:
        errors.append(f"{path}.api.max_body_size: must be at least 1024 bytes, got {section.api.max_body_size}")
    if section.state_backup_interval <= 0:
        errors.append(f"{path}.state_backup_interval: must be positive")
    if section.dedup_window <= 0:
        errors.append(f"{path}.dedup_window: must be positive")
    if not section.accounts:
        errors.append(f"{path}.accounts: at least one account is required (events for unlisted accounts are refused)")
    feeds_by_name = {f.name: f for f in feeds}
    accounts: list[AccountConfig] = []
    seen: dict[str, int] = {}
    for i, account in enumerate(section.accounts):
        where = f"{path}.accounts[{i}]"
        if account is None:
            continue
        if account.currency is not None and not re.fullmatch(r"[A-Z]{3,5}", account.currency):
            errors.append(f"{where}.currency: expected a currency code like USD, EUR or USDT, got {account.currency!r}")
        if not account.name or not _ACCOUNT_NAME.match(account.name):
            errors.append(f"{where}.name: {account.name!r} is not a valid account name (letters, digits, _ . : @ -)")
        if account.name in seen:
            errors.append(f"{where}.name: duplicate account {account.name!r} (also {path}.accounts[{seen[account.name]}])")
        seen[account.name] = i
        resolved = AccountRules(
            name=account.name,
            limits=account.limits.apply(section.limits),
            sharpe=account.sharpe.apply(section.sharpe),
            timezone=account.timezone or section.timezone,
            day_start=account.day_start or section.day_start,
            week_start=account.week_start or section.week_start,
            symbols=dict(account.symbols),
            currency=account.currency,
        )
        if account.timezone is not None or account.day_start is not None:
            _check_calendar(resolved.timezone, resolved.day_start, where, errors)
        if account.limits != LimitsOverride():
            _check_limits(resolved.limits, f"{where}.limits", errors)
        if account.sharpe != SharpeOverride():
            _check_sharpe(resolved.sharpe, f"{where}.sharpe", errors)
        for symbol, feed_name in account.symbols.items():
            feed = feeds_by_name.get(feed_name)
            if feed is None:
                known = ", ".join(sorted(feeds_by_name)) or "none configured"
                errors.append(f"{where}.symbols.{symbol}: unknown feed {feed_name!r} (feeds: {known})")
            elif feed.kind == "trading":
                errors.append(f"{where}.symbols.{symbol}: feed {feed_name!r} is a trading feed, not a price feed")
            elif symbol not in feed.symbols:
                errors.append(f"{where}.symbols.{symbol}: feed {feed_name!r} does not watch {symbol!r}, "
                              f"so its price freshness cannot be checked (add it to that feed's symbols)")
        accounts.append(dataclasses.replace(account, resolved=resolved))
    return dataclasses.replace(section, accounts=tuple(accounts))


def _read_secrets(api: ApiConfig, path: str, errors: list[str]) -> ApiConfig:
    """Resolve ``token_file`` / ``hmac_secret_file`` into the values (each with its own key)."""
    return read_secret_files(api, path, errors)


def _check_calendar(timezone: str, day_start: str, path: str, errors: list[str]) -> None:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(f"{path}.timezone: unknown time zone {timezone!r} (use an IANA name like UTC or America/New_York)")
    if not _DAY_START.match(day_start or ""):
        errors.append(f"{path}.day_start: expected a time of day as HH:MM (24 h), got {day_start!r}")


def _check_limits(limits: Limits, path: str, errors: list[str]) -> None:
    for key in ("drawdown_daily", "drawdown_weekly", "drawdown_total"):
        value = getattr(limits, key)
        if value is not None and not 0 < value <= 1:
            errors.append(f"{path}.{key}: a drawdown limit is a ratio in (0, 1] (0.05 = 5 %), got {value}")
    if limits.consecutive_losses is not None and limits.consecutive_losses < 1:
        errors.append(f"{path}.consecutive_losses: must be at least 1, got {limits.consecutive_losses}")
    if limits.api_errors_per_minute is not None and limits.api_errors_per_minute < 0:
        errors.append(f"{path}.api_errors_per_minute: must not be negative, got {limits.api_errors_per_minute}")


def _check_sharpe(sharpe: Sharpe, path: str, errors: list[str]) -> None:
    if sharpe.periods_per_year is not None and sharpe.periods_per_year < 1:
        errors.append(f"{path}.periods_per_year: must be at least 1 (365 for crypto, 252 for stocks), got {sharpe.periods_per_year}")
    if sharpe.min_returns is not None and sharpe.min_returns < 2:
        errors.append(f"{path}.min_returns: must be at least 2 (a sample standard deviation needs two returns), got {sharpe.min_returns}")
    if sharpe.window is not None and sharpe.min_returns is not None and sharpe.window < sharpe.min_returns:
        errors.append(f"{path}.window: must be at least min_returns ({sharpe.min_returns}), got {sharpe.window}")
