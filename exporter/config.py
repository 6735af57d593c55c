"""YAML configuration -> frozen, typed, validated objects.

The shape of every section is declared once, as a frozen dataclass whose field defaults *are*
the documented defaults. One generic walker (``build``) turns parsed YAML into those objects and
collects every problem with its path (``feeds[1].symbols[3]: ...``) instead of stopping at the
first, so ``feedwatch check-config`` can show a user all their mistakes in one go.

Strictness: unknown keys are errors. A feed's venue-specific keys (Polygon ``channels``, Binance
``streams``, ...) are declared by the venue's adapter as its ``Options`` dataclass, and optional
top-level sections (``trading:``) by the component that owns them; both are found through the
extension points in ``exporter/plugins.py``, so this module never imports a venue or a component
and adding one never touches it.

Values: ``${NAME}`` and ``${NAME:-default}`` are expanded from the environment in every string;
durations accept ``250ms``, ``180s``, ``5m``, ``1h``, ``1d``, ``1h30m`` or a bare number of seconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import importlib.util
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Collection, Literal, Mapping, Sequence, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml

from exporter import markets
from exporter.plugins import CONFIG_SECTIONS, VENUES, PluginError
from exporter.sharding import Shard


class ConfigError(Exception):
    """Raised with every problem found; ``errors`` holds one "path: message" string each."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


# --- value types ------------------------------------------------------------------------------

class _Duration:
    """Marker: a field annotated ``Duration`` accepts "5m"-style strings and holds seconds."""


Duration = Annotated[float, _Duration]

class _TimeOfDay:
    """Marker: a field annotated ``TimeOfDay`` accepts "HH:MM" (00:00 to 24:00) and holds minutes."""


TimeOfDay = Annotated[int, _TimeOfDay]


def parse_time_of_day(value: Any) -> int:
    """Minutes after midnight from ``"09:30"``; explains YAML's reading of an unquoted ``13:00``."""
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 13:00 as the base-60 number 780: refuse, and say why.
        raise ValueError(f"expected a time like \"13:00\" in quotes, got the number {value} "
                         f"(YAML reads an unquoted {value // 60}:{value % 60:02d} as a number)")
    if isinstance(value, dt.time):
        raise ValueError(f"expected a time like \"13:00\" in quotes, got {value}")
    return markets.parse_time(value)


def parse_date(value: Any) -> dt.date:
    """A date from YAML (an unquoted 2025-12-25 is already one) or an ISO string."""
    if isinstance(value, dt.datetime):
        raise ValueError(f"expected a date like 2025-12-25, got a date and time ({value})")
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value.strip()) if isinstance(value, str) else _no_date(value)
    except ValueError:
        raise ValueError(f"expected a date like 2025-12-25, got {value!r}") from None


def _no_date(value: Any) -> dt.date:
    raise ValueError(f"expected a date like 2025-12-25, got {value!r}")


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``"1h30m"``, ``"250ms"``, ``"180s"`` or a plain non-negative number."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 180s, 5m or 1h, got a boolean")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"expected a non-negative duration, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 180s, 5m or 1h, got {type(value).__name__}")
    text = value.strip()
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {value!r}: use a number with a unit, like 250ms, 180s, 5m, 1h or 1h30m")
    return total


def format_duration(seconds: float) -> str:
    """The inverse of parse_duration, for docs and messages (``300`` -> ``"5m"``)."""
    if seconds and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds}s"


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def expand_env(text: str, environ: Mapping[str, str], path: str, errors: list[str]) -> str:
    """Replace ``${NAME}`` / ``${NAME:-default}``; an unset variable without a default is an error."""

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        errors.append(f"{path}: environment variable {name} is not set")
        return ""

    return _ENV_REF.sub(replace, text)


# --- symbol names -----------------------------------------------------------------------------

# Longest symbol accepted: real tickers are short (options and futures codes reach ~25); anything
# longer is a mistake or an attempt to blow up label values.
SYMBOL_MAX_LENGTH = 64
# Characters that read as patterns: feedwatch matches nothing, so a symbol named ``*`` would be
# subscribed literally, never update, and alert as stale forever.
WILDCARD_CHARACTERS = "*?%"
SYMBOL_ADVICE = ("feedwatch watches exact symbols, one time series each: list every symbol you want "
                 "(a feed's symbols:), or add them at run time with trigger files or "
                 "POST /api/v1/watchlist/{feed}/{symbol}")


def symbol_problem(symbol: object) -> str | None:
    """Why ``symbol`` cannot be watched (wildcard-looking, empty, blank, control characters,
    absurd length), with what to do instead; None for an acceptable name.

    The one rule for every way a symbol enters: the config, trigger files, the watchlist API.
    """
    if not isinstance(symbol, str):
        return f"expected a symbol name, got {_describe(symbol)}"
    if not symbol:
        return "empty symbol"
    if len(symbol) > SYMBOL_MAX_LENGTH:
        return (f"symbol of {len(symbol)} characters (at most {SYMBOL_MAX_LENGTH}): "
                f"{symbol[:20]!r}... is not a ticker")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in symbol):
        return f"symbol {symbol!r} contains a control character"
    if any(ch.isspace() for ch in symbol):
        return f"symbol {symbol!r} contains whitespace"
    wildcard = next((ch for ch in symbol if ch in WILDCARD_CHARACTERS), None)
    if wildcard is not None:
        return f"symbol {symbol!r} looks like a wildcard ({wildcard!r}); {SYMBOL_ADVICE}"
    return None


# Symbol caps. Each watched symbol costs 6-7 series today (last update, last event, staleness,
# state, updates, price), up to ~10 with the detectors (frozen, expected interval, and two
# source series on feeds with REST fallback): 10,000 symbols are ~100,000 series, about what a
# Prometheus with 1-2 GiB of memory holds comfortably with room for the rules' series
# (docs/configuration.md#max_symbols shows the arithmetic).
# Venues with a built-in REST snapshot (exporter/feeds/rest.py); generic feeds configure theirs.
REST_KINDS = ("polygon", "binance", "bybit")

DEFAULT_MAX_SYMBOLS = 10_000
DEFAULT_FEED_MAX_SYMBOLS = 5_000


# --- the sections -----------------------------------------------------------------------------

@dataclass(frozen=True)
class FrozenCheck:
    """When a symbol whose updates keep arriving at one unchanged price is *frozen*.

    Frozen: at least ``updates`` updates in a row repeated the same price, and those repeats span
    at least ``duration`` of receive time (within the current market session). Both must hold, so
    a calm market does not trip it: a few identical prints, or a quiet minute, are normal; hundreds
    of them over many minutes are a venue or feed handler replaying a stuck price.
    """

    updates: int = 300          # repeats of one price in a row; 0 turns the check off
    duration: Duration = 600.0  # the repeats span at least this long
    # Quote mids count as well (a feed whose prices come from quotes alone). Per feed, not per
    # symbol: the hot path reads it once per frame. Off: only trade prices count, because an
    # unchanged quote mid for minutes is normal for a tick-constrained or illiquid instrument.
    quotes: bool = False

    def validate(self, path: str, errors: list[str]) -> None:
        if self.updates < 0:
            errors.append(f"{path}.updates: must be 0 (off) or more, got {self.updates}")


@dataclass(frozen=True)
class AdaptiveThresholds:
    """Thresholds learned from each symbol's own rhythm (opt-in; docs/configuration.md).

    Once ``warmup`` gaps between updates are learned, stale is ``k`` times the symbol's learned
    interval, kept within [floor, ceiling], and degraded ``k_degraded / k`` of that; critical
    stays the configured one, but never below the adaptive stale.
    """

    enabled: bool = False
    k: float = 20.0             # stale after this many learned intervals of silence
    k_degraded: float = 10.0    # degraded after this many (the same share of a bounded stale)
    floor: Duration = 5.0       # stale never earlier than this
    ceiling: Duration = 1800.0  # nor later than this (below the default critical, 1 h)
    warmup: int = 10            # gaps learned before the learned interval is used

    def validate(self, path: str, errors: list[str]) -> None:
        if not 0 < self.k_degraded <= self.k:
            errors.append(f"{path}: must satisfy 0 < k_degraded <= k (got k_degraded={self.k_degraded:g}, k={self.k:g})")
        if not 0 < self.floor <= self.ceiling:
            errors.append(f"{path}: must satisfy 0 < floor <= ceiling (got floor={format_duration(self.floor)}, "
                          f"ceiling={format_duration(self.ceiling)})")
        if not 1 <= self.warmup <= 1000:
            errors.append(f"{path}.warmup: must be from 1 to 1000 gaps, got {self.warmup}")


@dataclass(frozen=True)
class Thresholds:
    """Staleness boundaries between the health states (seconds since the last accepted update),
    and the detectors that judge a symbol by more than its silence."""

    degraded: Duration = 180.0
    stale: Duration = 300.0
    critical: Duration = 3600.0
    frozen: FrozenCheck = FrozenCheck()
    adaptive: AdaptiveThresholds = AdaptiveThresholds()

    def validate(self, path: str, errors: list[str]) -> None:
        if not (0 < self.degraded <= self.stale <= self.critical):
            errors.append(
                f"{path}: thresholds must satisfy 0 < degraded <= stale <= critical "
                f"(got degraded={format_duration(self.degraded)}, stale={format_duration(self.stale)}, "
                f"critical={format_duration(self.critical)})"
            )
        self.frozen.validate(f"{path}.frozen", errors)
        self.adaptive.validate(f"{path}.adaptive", errors)


def overlay(base: Any, partial: Any) -> Any:
    """``base`` with the fields a partial override (a dataclass of optionals) sets.

    Partial overrides (feed and symbol thresholds here, trading limits and Sharpe settings in
    trading_config) name the same fields as their full dataclass, every one defaulting to None.
    A field that is itself a partial (the thresholds' ``frozen`` and ``adaptive``) is overlaid
    on the base's value of that field, so a symbol can change one key of it.
    """
    given: dict[str, Any] = {}
    for f in dataclasses.fields(partial):
        value = getattr(partial, f.name)
        if value is not None:
            given[f.name] = overlay(getattr(base, f.name), value) if dataclasses.is_dataclass(value) else value
    return dataclasses.replace(base, **given)


@dataclass(frozen=True)
class FrozenOverride:
    """A partial FrozenCheck."""

    updates: int | None = None
    duration: Duration | None = None
    quotes: bool | None = None


@dataclass(frozen=True)
class AdaptiveOverride:
    """A partial AdaptiveThresholds."""

    enabled: bool | None = None
    k: float | None = None
    k_degraded: float | None = None
    floor: Duration | None = None
    ceiling: Duration | None = None
    warmup: int | None = None


@dataclass(frozen=True)
class ThresholdOverride:
    """A partial Thresholds: only the keys given replace the inherited ones."""

    degraded: Duration | None = None
    stale: Duration | None = None
    critical: Duration | None = None
    frozen: FrozenOverride | None = None
    adaptive: AdaptiveOverride | None = None

    def apply(self, base: Thresholds) -> Thresholds:
        return overlay(base, self)


@dataclass(frozen=True)
class Reconnect:
    """Backoff between connection attempts: random first delay, growth to a cap, reset after success."""

    initial_delay: Duration = 1.0
    max_delay: Duration = 60.0
    multiplier: float = 2.0
    # A connection that stayed up this long counts as a success and resets the backoff; so does a
    # shorter one that delivered data, at most once per this period (feeds/backoff.py).
    reset_after: Duration = 30.0


@dataclass(frozen=True)
class RestFields:
    """Generic feeds' REST snapshot: dotted paths into the response (like the generic adapter's)."""

    price: str = ""
    bid: str = ""
    ask: str = ""
    timestamp: str = ""


@dataclass(frozen=True)
class RestConfig:
    """REST fallback: poll the venue's snapshot while the socket is down or a symbol is stale."""

    enabled: bool = False
    # Base URL of the venue's REST API ("" = the venue's public one); for generic feeds, a URL
    # template with {symbol} (required there).
    url: str = ""
    # Each affected symbol is polled at most once per interval.
    interval: Duration = 2.0
    # Requests per second at most, all symbols together (0 = the venue's default: docs).
    max_requests_per_second: float = 0.0
    timeout: Duration = 5.0
    # Generic feeds only: where the price is in the response.
    fields: RestFields = RestFields()


@dataclass(frozen=True)
class NoOptions:
    """Venues without keys of their own."""


@dataclass(frozen=True)
class FeedConfig:
    """One feed: a venue connection (possibly several sockets) and the symbols it watches."""

    name: str
    kind: str
    url: str = ""
    api_key: str = ""
    symbols: tuple[str, ...] = ()
    # Session calendar (see exporter/markets.py); None means the venue trades 24/7.
    market: str | None = None
    thresholds: ThresholdOverride = ThresholdOverride()
    symbol_thresholds: dict[str, ThresholdOverride] = field(default_factory=dict)
    # No frame, ping or pong for this long and the socket is considered dead. With the pings
    # below, a live but quiet venue answers twice within it; a dead socket (half-open, traffic
    # black-holed) is given up within 27.5 s (feeds/keepalive.py: the deadline plus 10 %).
    heartbeat_timeout: Duration = 25.0
    # Our ping interval (WebSocket or the venue's ping message; 0 disables). Bybit wants one at
    # least every 20 s. A venue that pings us (Binance, every 20 s) is pinged only when quiet.
    ping_interval: Duration = 10.0
    # Every symbol silent this long while the socket is up: reconnect (silent-stall protection).
    silence_timeout: Duration = 600.0
    # A stream is unhealthy after this many consecutive errors or this long without an update.
    unhealthy_after_errors: int = 10
    unhealthy_after_silence: Duration = 300.0
    # A first price further than this ratio from the reference is held back until confirmed.
    first_print_max_deviation: float = 0.5
    connect_timeout: Duration = 10.0
    # The WebSocket client library (exporter/feeds/transport.py): aiohttp, or picows (cheaper per
    # frame, bench/README.md; an optional dependency, pip install 'feedwatch[picows]').
    transport: Literal["aiohttp", "picows"] = "aiohttp"
    reconnect: Reconnect = Reconnect()
    # Poll the venue's REST snapshot while the socket is down or a symbol is stale (off by default).
    rest: RestConfig = RestConfig()
    # Most symbols this feed watches, configured and added at run time together; new symbols
    # beyond it (trigger files, the watchlist API) are refused and counted.
    max_symbols: int = DEFAULT_FEED_MAX_SYMBOLS
    # Venue-specific keys, typed by the adapter's ``Options`` dataclass.
    options: Any = NoOptions()
    # Resolved at load time: the global thresholds with the feed override applied.
    resolved_thresholds: Thresholds = Thresholds()
    # Resolved at load time: the calendar ``market`` names, built-in or from ``markets:``
    # (None: look ``market`` up among the built-ins, for configs built in code).
    resolved_calendar: markets.Calendar | None = None

    def thresholds_for(self, symbol: str) -> Thresholds:
        override = self.symbol_thresholds.get(symbol)
        return override.apply(self.resolved_thresholds) if override else self.resolved_thresholds


@dataclass(frozen=True)
class SessionConfig:
    """One weekly session of a custom market: on these days, from ``open`` to ``close``."""

    days: tuple[str, ...]
    open: TimeOfDay
    close: TimeOfDay
    # The session opens at ``open`` on the evening before each of ``days`` (a futures market
    # whose Monday starts on Sunday evening); then ``open`` may be after ``close``.
    opens_day_before: bool = False


@dataclass(frozen=True)
class MarketConfig:
    """A session calendar of the user's own, usable as a feed's ``market:`` (see markets.py)."""

    timezone: str
    sessions: tuple[SessionConfig, ...]
    holidays: tuple[dt.date, ...] = ()
    early_closes: dict[dt.date, TimeOfDay] = field(default_factory=dict)
    # The last day the holiday list covers; None: December 31 of the last year that holidays or
    # early_closes name (no end when they name none).
    holidays_until: dt.date | None = None


@dataclass(frozen=True)
class ApiCredentials:
    """Who may use an authenticated HTTP API: a bearer token and/or an HMAC secret.

    The watchlist's admin API uses it as is; the trading push API's section has the same keys
    and more (``exporter/trading/config.py``). Both are checked by ``exporter/web/auth.py``.
    """

    token: str = ""
    # A file holding the token (Docker/Kubernetes secrets); whitespace around it is ignored.
    token_file: str | None = None
    hmac_secret: str = ""
    hmac_secret_file: str | None = None
    # A signed request whose timestamp is further than this from our clock is refused (replay).
    max_skew: Duration = 300.0

    @property
    def enabled(self) -> bool:
        return bool(self.token or self.hmac_secret)


def read_text_file(file_path: str, key: str, errors: list[str]) -> str:
    """The text of a file holding one value (a Docker/Kubernetes secret), whitespace around it
    ignored; "" when it cannot be read or is empty, with the problem in ``errors`` under ``key``."""
    try:
        with open(file_path, encoding="utf-8") as fh:
            text = fh.read().strip()
    except OSError as exc:
        errors.append(f"{key}: cannot read {file_path}: {exc.strerror or exc}")
        return ""
    if not text:
        errors.append(f"{key}: {file_path} is empty")
    return text


def read_secret_files(section: Any, path: str, errors: list[str],
                      keys: Sequence[str] = ("token", "hmac_secret")) -> Any:
    """Resolve each ``<key>_file`` of a section (at ``path``) into ``<key>``: an API section's
    ``token_file`` / ``hmac_secret_file``, the databases' ``dsn_file``. Giving both is an error."""
    values = {}
    for key in keys:
        file_path = getattr(section, f"{key}_file")
        if file_path is None:
            continue
        if getattr(section, key):
            errors.append(f"{path}.{key}_file: give either {key} or {key}_file, not both")
            continue
        value = read_text_file(file_path, f"{path}.{key}_file", errors)
        if value:
            values[key] = value
    return dataclasses.replace(section, **values) if values else section


@dataclass(frozen=True)
class WatchlistConfig:
    """Symbols added at run time: trigger files and the admin API (see docs/configuration.md)."""

    trigger_dir: str | None = None
    ttl: Duration = 1800.0
    scan_interval: Duration = 5.0
    # The feed of an immediate_*.json trigger that names none (default: the only market-data feed).
    default_feed: str | None = None
    # POST / DELETE /api/v1/watchlist/{feed}/{symbol}; refuses every request until configured.
    api: ApiCredentials = ApiCredentials()


@dataclass(frozen=True)
class HTTPConfig:
    """Limits of the HTTP server, so slow or hostile clients cannot starve scrapes (docs/configuration.md)."""

    # Open connections at most; past it the connection idle or waiting longest for its request
    # headers is closed to make room, and when none is, the new connection gets 503.
    max_connections: int = 512
    # A client must send its request line and headers within this time (slowloris): 408 and close.
    header_timeout: Duration = 10.0
    # A keep-alive connection without a new request for this long is closed.
    idle_timeout: Duration = 60.0
    # A request body (the push API) must arrive within this time: 408.
    body_timeout: Duration = 30.0


@dataclass(frozen=True)
class Config:
    listen: str = ":10119"
    telemetry_path: str = "/metrics"
    http: HTTPConfig = HTTPConfig()
    thresholds: Thresholds = Thresholds()
    feeds: tuple[FeedConfig, ...] = ()
    # Most symbols over every feed together (see DEFAULT_MAX_SYMBOLS for the arithmetic).
    max_symbols: int = DEFAULT_MAX_SYMBOLS
    # Session calendars of the user's own, by name (a feed's ``market:`` may name one).
    markets: dict[str, MarketConfig] = field(default_factory=dict)
    watchlist: WatchlistConfig = WatchlistConfig()
    # This replica's share of the symbols, INDEX/COUNT (exporter/sharding.py); --shard overrides it.
    shard: str = "0/1"
    # One instrument on several feeds, priced against each other at scrape time
    # (feedwatch_instrument_price_deviation_ratio): instrument name -> {feed name: its symbol there}.
    instruments: dict[str, dict[str, str]] = field(default_factory=dict)
    # Sections built by the component that registers them (``feedwatch.sections`` entry points):
    # ``trading`` by exporter/trading/config.py, kept beside the tracker; ``journal`` by
    # exporter/journal/config.py; ``recorder`` by exporter/feeds/recorder.py; ``tick_sink`` by
    # exporter/ticks/config.py.
    trading: Any = field(default=None, metadata={"section": True})
    journal: Any = field(default=None, metadata={"section": True})
    recorder: Any = field(default=None, metadata={"section": True})
    tick_sink: Any = field(default=None, metadata={"section": True})


# --- the generic walker -----------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        if _Duration in tp.__metadata__:
            return "duration"
        return "time of day" if _TimeOfDay in tp.__metadata__ else _type_name(tp.__origin__)
    if tp is dt.date:
        return "date"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin in (tuple, list):
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "mapping"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def build(tp: Any, value: Any, path: str, errors: list[str], environ: Mapping[str, str]) -> Any:
    """Convert ``value`` to type ``tp``; on a problem append "path: message" and return None."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        if _Duration in tp.__metadata__:
            try:
                return parse_duration(_expand(value, path, errors, environ))
            except ValueError as exc:
                errors.append(f"{path}: {exc}")
                return None
        if _TimeOfDay in tp.__metadata__:
            try:
                return parse_time_of_day(_expand(value, path, errors, environ))
            except ValueError as exc:
                errors.append(f"{path}: {exc}")
                return None
        return build(tp.__origin__, value, path, errors, environ)
    if tp is dt.date:
        try:
            return parse_date(_expand(value, path, errors, environ))
        except ValueError as exc:
            errors.append(f"{path}: {exc}")
            return None
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return build(non_none[0], value, path, errors, environ)
        for candidate in non_none:  # first that converts cleanly wins
            trial: list[str] = []
            result = build(candidate, value, path, trial, environ)
            if not trial:
                return result
        errors.append(f"{path}: expected {_type_name(tp)}, got {_describe(value)}")
        return None
    if origin is Literal:
        value = _expand(value, path, errors, environ)
        if value not in typing.get_args(tp):
            errors.append(f"{path}: expected {_type_name(tp)}, got {value!r}")
            return None
        return value
    if origin in (tuple, list):
        if value is None:
            return ()
        if isinstance(value, str) and typing.get_args(tp)[0] is str:
            # Allow "AAPL, MSFT" as well as a YAML list; env expansion often yields one string.
            value = [part.strip() for part in _expand(value, path, errors, environ).split(",") if part.strip()]
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {_describe(value)}")
            return ()
        item_tp = typing.get_args(tp)[0]
        return tuple(build(item_tp, item, f"{path}[{i}]", errors, environ) for i, item in enumerate(value))
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {_describe(value)}")
            return {}
        key_tp, val_tp = typing.get_args(tp)
        if key_tp is str:
            return {str(k): build(val_tp, v, f"{path}.{k}", errors, environ) for k, v in value.items()}
        built_keys = {k: build(key_tp, k, f"{path}.{k}", errors, environ) for k in value}
        return {built_keys[k]: build(val_tp, v, f"{path}.{k}", errors, environ)
                for k, v in value.items() if built_keys[k] is not None}
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, path, errors, environ)
    if tp is Any:
        return value
    if tp is bool:
        value = _expand(value, path, errors, environ)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            errors.append(f"{path}: expected true or false, got {_describe(value)}")
            return None
        return value
    if tp is int:
        value = _expand(value, path, errors, environ)
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            errors.append(f"{path}: expected an integer, got {_describe(value)}")
            return None
    if tp is float:
        value = _expand(value, path, errors, environ)
        try:
            if isinstance(value, bool):
                raise ValueError
            result = float(value)
            if not math.isfinite(result):
                raise ValueError
            return result
        except (TypeError, ValueError):
            errors.append(f"{path}: expected a number, got {_describe(value)}")
            return None
    if tp is str:
        if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
            errors.append(f"{path}: expected a string, got {_describe(value)}")
            return None
        return _expand(str(value), path, errors, environ)
    raise TypeError(f"config walker cannot build {tp!r}")  # a programming error, not a user one


def build_dataclass(tp: Any, value: Any, path: str, errors: list[str], environ: Mapping[str, str],
                    skip: frozenset[str] = frozenset(), more_keys: Collection[str] = (),
                    otherwise: str | None = None) -> Any:
    """Build a dataclass from a mapping: unknown keys and missing required keys are errors.

    An unknown key's hint suggests the closest field, else the closest of ``more_keys`` (keys
    accepted at the same level but built elsewhere, like a venue's options), else says
    ``otherwise`` (or lists the fields).
    """
    prefix = f"{path}." if path else ""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        errors.append(f"{path or '<top>'}: expected a mapping, got {_describe(value)}")
        value = {}
    hints = typing.get_type_hints(tp, include_extras=True)
    all_fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
    fields = {name: f for name, f in all_fields.items() if name not in skip}
    for key in value:
        if key not in all_fields:
            errors.append(f"{prefix}{key}: unknown key ({_suggest(str(key), all_fields, more_keys, otherwise)})")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in value:
            kwargs[name] = build(hints[name], value[name], f"{prefix}{name}", errors, environ)
            if kwargs[name] is None and f.default is not dataclasses.MISSING and f.default is not None:
                del kwargs[name]  # keep going with the default; the error is already recorded
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(f"{prefix}{name}: required key is missing")
            kwargs[name] = None
    try:
        return tp(**kwargs)
    except (TypeError, ValueError) as exc:  # e.g. a __post_init__ check
        errors.append(f"{path or '<top>'}: {exc}")
        return None


def _expand(value: Any, path: str, errors: list[str], environ: Mapping[str, str]) -> Any:
    return expand_env(value, environ, path, errors) if isinstance(value, str) else value


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value)


def _suggest(key: str, known: Collection[str], more: Collection[str] = (), otherwise: str | None = None) -> str:
    for candidates in (known, more):
        close = difflib.get_close_matches(key, sorted(candidates), n=1)
        if close:
            return f"did you mean {close[0]!r}?"
    return otherwise or f"known keys: {', '.join(sorted(known))}"


# --- loading ----------------------------------------------------------------------------------

def load_file(path: str, environ: Mapping[str, str] | None = None, *, shard: str | None = None) -> Config:
    """Read and validate a YAML file; raises ConfigError listing every problem.

    ``shard`` (``--shard``) overrides the file's ``shard:`` before the checks that depend on it
    (the symbol caps count this shard's share)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError([f"{path}: {exc.strerror or exc}"]) from exc
    return load_text(text, environ, source=path, shard=shard)


def load_text(text: str, environ: Mapping[str, str] | None = None, source: str = "<config>", *,
              shard: str | None = None) -> Config:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"{source}:{where}: invalid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    return load_data(data if data is not None else {}, environ, shard=shard)


def load_data(data: Any, environ: Mapping[str, str] | None = None, *, shard: str | None = None) -> Config:
    """Validate already-parsed YAML (a dict); raises ConfigError listing every problem.
    ``shard``: as for ``load_file``."""
    environ = os.environ if environ is None else environ
    errors: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError([f"<top>: expected a mapping of settings, got {_describe(data)}"])
    feeds_raw = data.get("feeds", [])
    sections = [f.name for f in dataclasses.fields(Config) if f.metadata.get("section")]
    top = {k: v for k, v in data.items() if k != "feeds" and k not in sections}
    config = build_dataclass(Config, top, "", errors, environ, skip=frozenset({"feeds", *sections}))
    if config is None:
        config = Config()
    if shard is not None:
        config = dataclasses.replace(config, shard=shard.strip())
    config.thresholds.validate("thresholds", errors)
    custom = market_calendars(config.markets, errors)

    feeds: list[FeedConfig] = []
    if not isinstance(feeds_raw, list):
        errors.append(f"feeds: expected a list, got {_describe(feeds_raw)}")
        feeds_raw = []
    seen: dict[str, int] = {}
    positions: list[int] = []   # each built feed's index in the file, for key paths
    for i, raw in enumerate(feeds_raw):
        feed = _build_feed(raw, f"feeds[{i}]", config.thresholds, custom, errors, environ)
        if feed is None:
            continue
        if feed.name in seen:
            errors.append(f"feeds[{i}].name: duplicate feed name {feed.name!r} (also feeds[{seen[feed.name]}])")
        seen[feed.name] = i
        feeds.append(feed)
        positions.append(i)

    built: dict[str, Any] = {}
    for name in sections:
        try:
            build_section = CONFIG_SECTIONS.get(name)
        except PluginError as exc:
            errors.append(f"{name}: {exc}")
            continue
        if build_section is None:
            if name in data:
                errors.append(f"{name}: no installed component handles this section "
                              f"(nothing registered it in the {CONFIG_SECTIONS.group!r} entry points)")
            continue
        # The builder sees the section's raw value (None when absent: it decides whether it is
        # required, e.g. by a feed kind) and the built feeds.
        built[name] = build_section(data.get(name), name, errors, environ, tuple(feeds))

    watchlist = config.watchlist
    config = dataclasses.replace(config, watchlist=dataclasses.replace(
        watchlist, api=read_secret_files(watchlist.api, "watchlist.api", errors)))
    if watchlist.ttl <= 0:
        errors.append("watchlist.ttl: must be positive")
    if watchlist.scan_interval <= 0:
        errors.append("watchlist.scan_interval: must be positive")
    if watchlist.default_feed is not None and watchlist.default_feed not in seen:
        errors.append(f"watchlist.default_feed: no feed named {watchlist.default_feed!r} "
                      f"(feeds: {', '.join(seen) or 'none'})")
    check_instruments(config.instruments, feeds, errors)
    check_symbol_caps(config, list(zip(positions, feeds)), errors)
    if not _parse_listen(config.listen):
        errors.append(f"listen: expected host:port like ':10119' or '127.0.0.1:10119', got {config.listen!r}")
    if not config.telemetry_path.startswith("/"):
        errors.append(f"telemetry_path: must start with '/', got {config.telemetry_path!r}")
    try:
        Shard.parse(config.shard)
    except ValueError as exc:
        errors.append(f"shard: {exc}")
    if config.http.max_connections < 8:
        errors.append(f"http.max_connections: must be at least 8, got {config.http.max_connections}")
    for key in ("header_timeout", "idle_timeout", "body_timeout"):
        if getattr(config.http, key) <= 0:
            errors.append(f"http.{key}: must be positive")
    if errors:
        raise ConfigError(errors)
    return dataclasses.replace(config, feeds=tuple(feeds), **built)


def _build_feed(raw: Any, path: str, defaults: Thresholds, custom: Mapping[str, markets.Calendar],
                errors: list[str], environ: Mapping[str, str]) -> FeedConfig | None:
    if not isinstance(raw, dict):
        errors.append(f"{path}: expected a mapping, got {_describe(raw)}")
        return None
    kind = raw.get("kind")
    try:
        adapter = VENUES.get(kind) if isinstance(kind, str) else None
    except PluginError as exc:  # a plugin venue that is installed but broken
        errors.append(f"{path}.kind: {exc}")
        return None
    if adapter is None:
        known = ", ".join(VENUES.names()) or ("none: install the feedwatch package (pip install .) "
                                              "so its venues' entry points exist")
        errors.append(f"{path}.kind: {'unknown feed kind ' + repr(kind) if kind is not None else 'required key is missing'} (known kinds: {known})")
        return None
    resolved_fields = ("options", "resolved_thresholds", "resolved_calendar")
    common = {f.name for f in dataclasses.fields(FeedConfig) if f.name not in resolved_fields}
    options_cls = adapter.Options
    option_keys = {f.name for f in dataclasses.fields(options_cls)}
    common_part = {k: v for k, v in raw.items() if k in common or k not in option_keys}
    option_part = {k: v for k, v in raw.items() if k in option_keys and k not in common}
    # Keys unknown to both end up in common_part: their hint also looks among the venue's keys.
    venue_keys = f"for kind {kind!r} the venue keys are: {', '.join(sorted(option_keys))}" if option_keys else None
    feed = build_dataclass(FeedConfig, common_part, path, errors, environ,
                           skip=frozenset(resolved_fields),
                           more_keys=option_keys, otherwise=venue_keys)
    options = build_dataclass(options_cls, option_part, path, errors, environ)
    if feed is None or options is None:
        return None
    if feed.name is not None and not _NAME.match(feed.name):
        errors.append(f"{path}.name: {feed.name!r} is not a valid name (letters, digits, _ . : -; not starting with a digit)")
    resolved = feed.thresholds.apply(defaults)
    resolved.validate(f"{path}.thresholds", errors)
    for symbol, override in feed.symbol_thresholds.items():
        if symbol not in feed.symbols:
            errors.append(f"{path}.symbol_thresholds.{symbol}: {symbol!r} is not in {path}.symbols")
        elif override is not None:
            override.apply(resolved).validate(f"{path}.symbol_thresholds.{symbol}", errors)
            if override.frozen is not None and override.frozen.quotes is not None:
                errors.append(f"{path}.symbol_thresholds.{symbol}.frozen.quotes: set per feed only "
                              f"({path}.thresholds.frozen.quotes), not per symbol")
    seen: set[str] = set()
    for j, symbol in enumerate(feed.symbols):
        problem = symbol_problem(symbol)
        if problem is not None:
            errors.append(f"{path}.symbols[{j}]: {problem}")
        elif symbol in seen:
            errors.append(f"{path}.symbols[{j}]: duplicate symbol {symbol!r}")
        seen.add(symbol)
    calendar = None
    if feed.market is not None:
        calendar = custom.get(feed.market) or markets.CALENDARS.get(feed.market)
        if calendar is None:
            known = ", ".join(sorted({*markets.CALENDARS, *custom}))
            errors.append(f"{path}.market: unknown market {feed.market!r} (known: {known}; "
                          f"or define it under markets:)")
    rest = feed.rest
    if rest.enabled:
        if rest.interval <= 0:
            errors.append(f"{path}.rest.interval: must be positive")
        if rest.timeout <= 0:
            errors.append(f"{path}.rest.timeout: must be positive")
        if rest.max_requests_per_second < 0 or not math.isfinite(rest.max_requests_per_second):
            errors.append(f"{path}.rest.max_requests_per_second: must be 0 (the venue's default) or positive")
        if kind == "generic":
            if "{symbol}" not in rest.url:
                errors.append(f"{path}.rest.url: a generic feed's REST fallback needs a URL template with "
                              f"{{symbol}}, like https://example.com/ticker/{{symbol}}")
            if not (rest.fields.price or rest.fields.bid or rest.fields.ask):
                errors.append(f"{path}.rest.fields: give price, or bid and ask: the dotted paths to the "
                              f"price in the response")
        elif kind not in REST_KINDS:
            errors.append(f"{path}.rest.enabled: no REST fallback for kind {kind!r} "
                          f"(available for: {', '.join(REST_KINDS)}, generic)")
    elif rest.fields != RestFields() and kind != "generic":
        errors.append(f"{path}.rest.fields: only generic feeds take field paths")
    if feed.max_symbols < 1:
        errors.append(f"{path}.max_symbols: must be at least 1, got {feed.max_symbols}")
    errors.extend(f"{path}.transport: {problem}" for problem in transport_problems(feed))
    # (Its symbols against max_symbols: in check_symbol_caps, which knows the shard.)
    if not 0 < feed.first_print_max_deviation:
        errors.append(f"{path}.first_print_max_deviation: must be a positive ratio, got {feed.first_print_max_deviation}")
    feed = dataclasses.replace(feed, options=options, resolved_thresholds=resolved,
                               resolved_calendar=calendar or markets.calendar(None))
    check = getattr(adapter, "check_config", None)
    if check is not None:
        for problem in check(feed):  # venue rules: "channels[2]: ..." relative to the feed
            errors.append(f"{path}.{problem}")
    return feed


def transport_problems(feed: FeedConfig) -> list[str]:
    """Why ``feed.transport`` cannot serve this feed (empty if it can). What picows cannot do is
    refused here, never ignored at run time."""
    if feed.transport != "picows":
        return []
    problems = []
    if importlib.util.find_spec("picows") is None:
        problems.append("picows is not installed (pip install 'feedwatch[picows]'), or use transport: aiohttp")
    if "@" in feed.url.partition("://")[2].partition("/")[0]:
        problems.append("picows does not send credentials given in the URL (user:password@host), aiohttp "
                        "does: use transport: aiohttp for this feed")
    return problems


def check_symbol_caps(config: Config, feeds: Collection[tuple[int, FeedConfig]], errors: list[str]) -> None:
    """Each feed's symbols against its ``max_symbols``, all of them against the top-level one.

    Sharded (``shard:``, or ``--shard`` through ``load_file``), only the symbols this shard owns
    count: the caps bound one process, and each replica watches its share of the file.
    """
    try:
        shard = Shard.parse(config.shard).bound(config) if config.shard != "0/1" else Shard()
    except ValueError:
        return  # the shard's own error is reported; counting needs it
    where = f" on shard {shard}" if shard.sharded else ""
    total = 0
    for i, feed in feeds:
        count = len(feed.symbols) if not shard.sharded else sum(shard.owns(feed.name, s) for s in feed.symbols)
        total += count
        if feed.max_symbols >= 1 and count > feed.max_symbols:
            errors.append(f"feeds[{i}].symbols: {count} symbols{where}, more than feeds[{i}].max_symbols "
                          f"({feed.max_symbols}); raise max_symbols if your Prometheus can hold the series "
                          f"(docs/configuration.md#max_symbols), or split the list over several feeds"
                          f"{' or shards' if shard.sharded else ''}")
    if config.max_symbols < 1:
        errors.append(f"max_symbols: must be at least 1, got {config.max_symbols}")
    elif total > config.max_symbols:
        errors.append(f"max_symbols: the feeds list {total} symbols together{where}, more than max_symbols "
                      f"({config.max_symbols}); raise it if your Prometheus can hold the series "
                      f"(docs/configuration.md#max_symbols){', or run more shards' if shard.sharded else ''}")


def check_instruments(instruments: Mapping[str, Mapping[str, str] | None], feeds: Collection[FeedConfig],
                      errors: list[str]) -> None:
    """``instruments:``: each names at least two feeds, each with one of that feed's symbols, and a
    (feed, symbol) belongs to one instrument at most (else its deviation would be ambiguous)."""
    by_name = {feed.name: feed for feed in feeds}
    owner: dict[tuple[str, str], str] = {}
    for name, members in instruments.items():
        path = f"instruments.{name}"
        if not name or not name.strip():
            errors.append(f"{path}: an instrument needs a name")
        if members is None:
            continue  # its error is recorded already
        if len(members) < 2:
            errors.append(f"{path}: name at least two feeds (feed: symbol) to compare, got {len(members)}")
        for feed_name, symbol in members.items():
            where = f"{path}.{feed_name}"
            feed = by_name.get(feed_name)
            if feed is None:
                known = ", ".join(sorted(by_name)) or "none"
                errors.append(f"{where}: no feed named {feed_name!r} (feeds: {known})")
                continue
            if symbol is None:
                continue
            if symbol not in feed.symbols:
                errors.append(f"{where}: {symbol!r} is not in the symbols of feed {feed_name!r}")
                continue
            first = owner.setdefault((feed_name, symbol), name)
            if first != name:
                errors.append(f"{where}: {symbol!r} on {feed_name!r} already belongs to instrument {first!r}")


def market_calendars(configured: Mapping[str, MarketConfig], errors: list[str]) -> dict[str, markets.Calendar]:
    """The ``markets:`` section as calendars; every problem appended with its path."""
    found: dict[str, markets.Calendar] = {}
    for name, market in configured.items():
        path = f"markets.{name}"
        if market is None:
            continue  # its error is recorded already
        if name in markets.CALENDARS:
            errors.append(f"{path}: {name!r} is a built-in market; give yours another name")
            continue
        if not _NAME.match(name):
            errors.append(f"{path}: {name!r} is not a valid name (letters, digits, _ . : -; not starting with a digit)")
            continue
        calendar = _market_calendar(name, market, path, errors)
        if calendar is not None:
            found[name] = calendar
    return found


def _market_calendar(name: str, market: MarketConfig, path: str, errors: list[str]) -> markets.Calendar | None:
    ok = True
    timezone = None
    try:
        timezone = ZoneInfo(market.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(market.timezone, sorted(available_timezones()), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "an IANA name like Europe/London"
        errors.append(f"{path}.timezone: unknown timezone {market.timezone!r} ({hint})")
        ok = False
    if not market.sessions:
        errors.append(f"{path}.sessions: at least one session is required "
                      f"(a market open around the clock needs no calendar: omit the feed's market)")
        ok = False
    sessions: list[markets.Session] = []
    for i, session in enumerate(market.sessions):
        where = f"{path}.sessions[{i}]"
        if session is None or session.open is None or session.close is None:
            ok = False
            continue
        days: set[int] = set()
        if not session.days:
            errors.append(f"{where}.days: at least one day is required (like [mon-fri])")
            ok = False
        for j, spec in enumerate(session.days):
            try:
                days |= markets.parse_days([spec])
            except ValueError as exc:
                errors.append(f"{where}.days[{j}]: {exc}")
                ok = False
        if session.close == 0:
            errors.append(f"{where}.close: a session cannot close at 00:00 (the end of a day is 24:00)")
            ok = False
            continue
        if session.open >= markets.MINUTES_PER_DAY:
            errors.append(f"{where}.open: a session cannot open at 24:00 (use 00:00 of the next day)")
            ok = False
            continue
        if session.open >= session.close and not session.opens_day_before:
            errors.append(f"{where}: open ({markets.format_time(session.open)}) must be before close "
                          f"({markets.format_time(session.close)}); a session across midnight needs "
                          f"opens_day_before: true, or two sessions")
            ok = False
            continue
        if days:
            sessions.append(markets.Session(frozenset(days), session.open, session.close, session.opens_day_before))
    for day, close in market.early_closes.items():
        if close is not None and close == 0:
            errors.append(f"{path}.early_closes.{day}: a close at 00:00 is a holiday: list the date under holidays")
            ok = False
    if not ok or timezone is None:
        return None
    holidays = frozenset(d for d in market.holidays if d is not None)
    early = {d: c for d, c in market.early_closes.items() if c is not None}
    until = market.holidays_until
    if until is None and (holidays or early):
        until = dt.date(max(d.year for d in (*holidays, *early)), 12, 31)
    return markets.Calendar(name=name, timezone=timezone, sessions=tuple(sessions), holidays=holidays,
                            early_closes=early, end=until, source="config")


def _parse_listen(listen: str) -> tuple[str, int] | None:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        return None
    return host.strip("[]"), int(port)


def listen_address(listen: str) -> tuple[str, int]:
    """``":10119"`` -> ``("0.0.0.0", 10119)``; ``"127.0.0.1:0"`` -> ``("127.0.0.1", 0)``."""
    parsed = _parse_listen(listen)
    if parsed is None:
        raise ValueError(f"invalid listen address {listen!r}")
    host, port = parsed
    return host or "0.0.0.0", port
