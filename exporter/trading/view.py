"""The live trading view of one account: the JSON read model of ``GET /api/v1/trading/{account}``
and of the status page's account panels (no I/O, no HTTP; time injected).

Every number comes from the same ``Account`` methods the trading collector renders, so the page,
the API and /metrics agree. What only the view has:

- ``api.error_rate_per_minute`` and ``api.p99_latency_seconds``: over the API calls of the last
  minute (by the calls' own timestamps, from ``Account.recent_api``), so the panel shows what is
  happening now rather than since the start;
- ``levels``: ``ok`` / ``warn`` / ``breach`` per figure against its limit (warning at 80 % of a
  drawdown limit, as the alert rules do), which the page turns into colours.

Values that are undefined are ``null``, never a fake 0, as on /metrics.
"""

from __future__ import annotations

import math
from typing import Optional

import msgspec

from exporter.trading import desk
from exporter.trading.tracker import Account

API_WINDOW = 60.0
# A drawdown at this share of its limit is shown as a warning (the rules' warning threshold).
WARN_SHARE = 0.8


class Drawdown(msgspec.Struct):
    current: Optional[float]
    daily: Optional[float]
    weekly: Optional[float]
    max: Optional[float]
    limit_daily: float
    limit_weekly: float
    limit_total: float


class Switch(msgspec.Struct):
    active: bool
    reason: str


class Positions(msgspec.Struct):
    open: int
    limit: Optional[int]
    utilization: Optional[float]
    symbols: dict[str, float]


class Api(msgspec.Struct):
    errors_total: int
    error_rate_per_minute: float
    limit_per_minute: float
    p99_latency_seconds: Optional[float]
    calls_last_minute: int


class Desk(msgspec.Struct):
    sortino: Optional[float]
    calmar: Optional[float]
    profit_factor: Optional[float]
    average_win: Optional[float]
    average_loss: Optional[float]
    expectancy: Optional[float]


class AccountView(msgspec.Struct):
    account: str
    currency: Optional[str]
    now: float
    equity: Optional[float]
    realized_pnl: float
    realized_pnl_daily: float
    drawdown: Drawdown
    sharpe: Optional[float]
    win_rate: Optional[float]
    trades: dict[str, int]
    losing_streak: int
    losing_streak_limit: int
    kill_switch: Switch
    circuit_breaker: Switch
    positions: Positions
    api: Api
    desk: Desk
    last_event: Optional[float]
    levels: dict[str, str]


def recent_api_calls(account: Account, now: float, window: float = API_WINDOW) -> list[tuple[float, bool, float]]:
    """The account's API calls stamped within ``window`` seconds before ``now``."""
    cutoff = now - window
    calls = []
    for call in reversed(account.recent_api):
        if call[0] < cutoff:
            break
        calls.append(call)
    return calls


def api_errors_per_minute(account: Account, now: float, window: float = API_WINDOW) -> float:
    errors = sum(1 for _, ok, _ in recent_api_calls(account, now, window) if not ok)
    return errors * 60.0 / window


def quantile(values: list[float], q: float) -> Optional[float]:
    """Nearest-rank quantile (the value at rank ceil(q * n)); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def _level(value: Optional[float], limit: float, warn_share: float = WARN_SHARE) -> str:
    if value is None:
        return "unknown"
    if value >= limit:
        return "breach"
    if value >= warn_share * limit:
        return "warn"
    return "ok"


def account_view(account: Account, now: float) -> AccountView:
    limits = account.rules.limits
    calls = recent_api_calls(account, now)
    errors = sum(1 for _, ok, _ in calls if not ok)
    rate = errors * 60.0 / API_WINDOW
    drawdown = Drawdown(
        current=account.drawdown(), daily=account.drawdown_daily(now), weekly=account.drawdown_weekly(now),
        max=account.max_drawdown, limit_daily=limits.drawdown_daily, limit_weekly=limits.drawdown_weekly,
        limit_total=limits.drawdown_total)
    utilization = account.utilization()
    pnl_daily = account.pnl_today(now)
    levels = {
        "drawdown_current": _level(drawdown.current, limits.drawdown_total),
        "drawdown_daily": _level(drawdown.daily, limits.drawdown_daily),
        "drawdown_weekly": _level(drawdown.weekly, limits.drawdown_weekly),
        "losing_streak": _level(float(account.losing_streak), float(limits.consecutive_losses)),
        "kill_switch": "breach" if account.kill_switch else "ok",
        "circuit_breaker": "breach" if account.breaker_open else "ok",
        "positions": "unknown" if utilization is None else _level(utilization, 1.0, 0.8),
        "api": "breach" if rate > limits.api_errors_per_minute else ("warn" if errors else "ok"),
        "pnl_daily": "ok" if pnl_daily >= 0 else "warn",
        "sharpe": "unknown" if account.sharpe(now) is None else ("ok" if account.sharpe(now) >= 0 else "warn"),
    }
    return AccountView(
        account=account.name,
        currency=account.rules.currency,
        now=now,
        equity=account.equity,
        realized_pnl=account.pnl_total,
        realized_pnl_daily=pnl_daily,
        drawdown=drawdown,
        sharpe=account.sharpe(now),
        win_rate=account.win_rate(),
        trades=dict(account.trades),
        losing_streak=account.losing_streak,
        losing_streak_limit=limits.consecutive_losses,
        kill_switch=Switch(account.kill_switch, account.kill_reason),
        circuit_breaker=Switch(account.breaker_open, account.breaker_reason),
        positions=Positions(open=account.positions_open(), limit=account.position_limit, utilization=utilization,
                            symbols=dict(sorted(account.positions.items()))),
        api=Api(errors_total=account.api_errors, error_rate_per_minute=rate,
                limit_per_minute=float(limits.api_errors_per_minute),
                p99_latency_seconds=quantile([latency for _, _, latency in calls], 0.99),
                calls_last_minute=len(calls)),
        desk=Desk(sortino=desk.sortino(account, now), calmar=desk.calmar(account, now),
                  profit_factor=desk.profit_factor(account), average_win=desk.average_win(account),
                  average_loss=desk.average_loss(account), expectancy=desk.expectancy(account)),
        last_event=account.last_event or None,
        levels=levels,
    )
