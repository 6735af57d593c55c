"""Trading metrics per account, from a bot's event stream. No I/O, time injected.

The tracker turns the events of docs/trading-events.md (``trade``, ``equity``, ``positions``,
``safety``, ``api_call``) into the state the trading collector renders: equity, realized P&L
(total and for the current trading day), drawdowns (from the running, the day's and the week's
peak, and the maximum), a Sharpe ratio from daily returns, the win rate, the losing streak, the
kill switch and circuit breaker with their reasons, open positions against their limit, and the
API error count and latency histogram. Every formula is written down in docs/trading-events.md
and implemented once, here.

Values that depend on "now" (today's P&L, the day's and week's drawdown, which days are complete
for the Sharpe ratio) are derived at read time from the injected clock, like the book's health
states: a new trading day starts at the boundary whether or not an event arrives.

Events are applied in arrival order. A replayed event (same account and ``id``) is counted once;
an ``equity``, ``positions`` or ``safety`` snapshot older than the one already applied is refused
as ``out_of_order``; an event older than ``dedup_window`` (beyond what the id memory covers) is
refused as ``expired``, and one stamped more than 5 minutes ahead of our clock as ``future``.
Problems are counted by reason and described in the returned
``IngestResult``; callers log them (the runner for the WebSocket feed, the push API for HTTP).

Persistence goes through an injected store (``exporter/trading/store.py``): ids are claimed and
the touched accounts saved in one transaction per batch, so a restart neither forgets the peak,
the day's P&L or the losing streak, nor double-counts a replay. Memory follows the store: a
batch is applied to working copies of its accounts, and the accounts the collectors read take
the new state only once it is committed; when a commit fails (disk full, read-only file system)
nothing changes and the batch is reported as ``IngestResult.store_error``, so the sender can
send it again and it counts once.

Every store call runs in one writer thread, in arrival order: a commit's fsyncs (~19 ms on this
project's VM) never hold the event loop for the push API (``ingest_raw_async``), which answers
only once its batch is committed. The synchronous entry points (the bot's WebSocket stream, the
in-process Monitor) wait for the same thread, so the two never interleave.

A batch is checked before anything is applied. ``atomic=True`` (the push API) refuses the whole
batch if any event is invalid, naming each by its index; without it (a stream, which nobody can
answer) the valid events are applied and the invalid ones counted and described.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import math
import weakref
from concurrent.futures import ThreadPoolExecutor
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Callable, ClassVar, Iterable, Literal, Union

import msgspec

from exporter.book import to_seconds
from exporter.text import preview

if TYPE_CHECKING:
    from exporter.config import Config, FeedConfig
    from exporter.trading.config import AccountRules, TradingConfig
    from exporter.trading.store import Store

log = logging.getLogger(__name__)

EVENT_TYPES = ("trade", "equity", "positions", "safety", "api_call")
# Why an event (or a push request) was refused; every value starts at 0.
REJECT_REASONS = (
    "malformed",        # not JSON, not an object, a missing or mistyped field, a value out of range
    "unknown_type",     # a well-formed event whose type is not one of EVENT_TYPES
    "unknown_account",  # an account that is not configured (accounts are label values: bounded)
    "duplicate",        # an id already applied (a bot replaying after a reconnect)
    "expired",          # older than dedup_window: too old to tell a replay from a new event
    "future",           # more than FUTURE_TOLERANCE ahead of our clock (it would block later snapshots)
    "out_of_order",     # a snapshot older than the one already applied
    "unauthorized",     # push API: missing or wrong token / signature (per request)
    "replayed",         # push API: signature timestamp outside max_skew, or a signature seen before
)
RESULTS = ("win", "loss", "flat")
# Latency of the bot's own exchange API calls (seconds).
API_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# An event stamped further ahead of the exporter's clock than this is refused: applied, it would
# make every later snapshot look out of order until the clocks caught up.
FUTURE_TOLERANCE = 300.0
# Problems kept per ingest call for the caller's log line.
_MAX_PROBLEMS = 5
# Invalid events described (with their index) per ingest call, for the push API's 400 answer.
_MAX_ERRORS = 50
_PRUNE_EVERY = 60.0
# Recent API calls kept per account for the live view's error rate and p99 latency (not persisted).
RECENT_API_CALLS = 5000


# --- events -----------------------------------------------------------------------------------

# Integers a bot sends are bounded where they are decoded (edges sanitize): an id or a limit of
# 5,000 digits cannot even be printed in an error message, let alone stored or rendered.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Count = Annotated[int, msgspec.Meta(ge=0, lt=2**53)]


class _Event(msgspec.Struct, kw_only=True):
    """Fields every event has. ``ts``: Unix time (s, ms, us or ns) or an RFC 3339 string."""

    account: str
    id: Union[str, Int64]
    ts: Union[float, str]
    type: ClassVar[str]


class Trade(_Event, kw_only=True):
    """A closed trade. ``pnl`` is realized P&L before ``fees``, in the account currency."""

    type: ClassVar[str] = "trade"
    symbol: str
    side: Literal["long", "short"]
    quantity: float
    entry_price: float
    exit_price: float
    pnl: float
    fees: float = 0.0


class Equity(_Event, kw_only=True):
    """Account equity (cash plus the value of open positions) in the account currency."""

    type: ClassVar[str] = "equity"
    equity: float


class Positions(_Event, kw_only=True):
    """Every open position (signed quantity per symbol; absent or 0 = flat) and the limit."""

    type: ClassVar[str] = "positions"
    positions: dict[str, float]
    limit: Union[Count, None] = None


class Safety(_Event, kw_only=True):
    """Kill switch and/or circuit breaker state; ``reason`` applies to those given."""

    type: ClassVar[str] = "safety"
    kill_switch: Union[bool, None] = None
    circuit_breaker: Union[Literal["open", "closed"], None] = None
    reason: str = ""


class ApiCall(_Event, kw_only=True):
    """One call the bot made to its exchange's API."""

    type: ClassVar[str] = "api_call"
    endpoint: str
    ok: bool
    latency: float
    status: Union[Int64, None] = None


Event = Union[Trade, Equity, Positions, Safety, ApiCall]
EVENT_CLASSES: dict[str, type] = {cls.type: cls for cls in (Trade, Equity, Positions, Safety, ApiCall)}
_DECODERS = {name: msgspec.json.Decoder(cls) for name, cls in EVENT_CLASSES.items()}


class _Head(msgspec.Struct):
    type: Any = None


_head_decoder = msgspec.json.Decoder(_Head)
_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])


class EventError(ValueError):
    """An event that cannot be applied; ``reason`` is one of REJECT_REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def event_seconds(ts: float | str) -> float:
    """An event's ``ts`` as Unix seconds: numbers in any unit, or an RFC 3339 / ISO 8601 string."""
    if isinstance(ts, str):
        text = ts.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise EventError("malformed", f"ts {ts!r} is neither a Unix time nor an RFC 3339 timestamp") from None
        if parsed.tzinfo is None:
            raise EventError("malformed", f"ts {ts!r} has no UTC offset (append Z or +00:00)")
        try:
            return parsed.timestamp()
        except (OverflowError, ValueError):  # 9999-12-31T23:59:59-23:59 is past the calendar's end in UTC
            raise EventError("malformed", f"ts {ts!r} is outside the range of a Unix time") from None
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not ts > 0:
        raise EventError("malformed", f"ts must be a positive Unix time, got {_number_text(ts)}")
    try:
        seconds = to_seconds(float(ts))
    except OverflowError:  # an integer past a float's range (in-process callers)
        seconds = math.inf
    if not math.isfinite(seconds):
        raise EventError("malformed", f"ts must be a finite Unix time, got {_number_text(ts)}")
    return seconds


def _number_text(value: Any) -> str:
    """A number for an error message; integers too long to print are described by size."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    return repr(value)


def check_event(event: Event) -> str | None:
    """Range checks msgspec's types cannot express; a message, or None when the event is fine."""
    if not event.account:
        return "account is empty"
    if event.id == "" or isinstance(event.id, bool):
        return "id is empty"
    if isinstance(event, Trade):
        if not event.symbol:
            return "symbol is empty"
        for name in ("quantity", "entry_price", "exit_price"):
            value = getattr(event, name)
            if not (math.isfinite(value) and value > 0):
                return f"{name} must be a positive number, got {value!r}"
        for name in ("pnl", "fees"):
            if not math.isfinite(getattr(event, name)):
                return f"{name} must be a finite number"
    elif isinstance(event, Equity):
        if not math.isfinite(event.equity):
            return "equity must be a finite number"
    elif isinstance(event, Positions):
        for symbol, quantity in event.positions.items():
            if not symbol:
                return "positions has an empty symbol"
            if not math.isfinite(quantity):
                return f"positions.{symbol} must be a finite number"
        if event.limit is not None and event.limit < 0:
            return f"limit must not be negative, got {event.limit}"
    elif isinstance(event, Safety):
        if event.kill_switch is None and event.circuit_breaker is None:
            return "a safety event needs kill_switch and/or circuit_breaker"
    elif isinstance(event, ApiCall):
        if not (math.isfinite(event.latency) and event.latency >= 0):
            return f"latency must be a non-negative number of seconds, got {event.latency!r}"
    return None


# Besides DecodeError, msgspec raises these for invalid UTF-8 inside a string and for nesting
# deeper than it recurses: all three mean "not a usable event".
_UNDECODABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def _decode_problem(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 ({exc.reason} at byte {exc.start})"
    return str(exc)


# What decode_event returns for ``{"type": "heartbeat"}``: the stream is alive, nothing to apply.
HEARTBEAT = object()


def decode_event(raw: bytes | msgspec.Raw) -> Event:
    """One JSON object -> a typed event (or HEARTBEAT); raises EventError(malformed | unknown_type)."""
    try:
        head = _head_decoder.decode(raw)
    except _UNDECODABLE as exc:
        raise EventError("malformed", f"not a JSON object: {_decode_problem(exc)}") from None
    if not isinstance(head.type, str) or not head.type:
        raise EventError("malformed", "missing or non-string field 'type'")
    if head.type == "heartbeat":
        return HEARTBEAT  # type: ignore[return-value]
    decoder = _DECODERS.get(head.type)
    if decoder is None:
        raise EventError("unknown_type", f"unknown event type {head.type!r} (known: {', '.join(EVENT_TYPES)})")
    try:
        return decoder.decode(raw)
    except _UNDECODABLE as exc:
        raise EventError("malformed", f"{head.type} event: {_decode_problem(exc)}") from None


def event_from_mapping(data: Any) -> Event:
    """A parsed JSON object (or keyword dict) -> a typed event, for in-process callers."""
    if not isinstance(data, dict):
        raise EventError("malformed", f"an event is a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    cls = EVENT_CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        reason = "unknown_type" if isinstance(kind, str) and kind else "malformed"
        raise EventError(reason, f"unknown event type {kind!r} (known: {', '.join(EVENT_TYPES)})")
    try:
        return msgspec.convert({k: v for k, v in data.items() if k != "type"}, cls)
    except _UNDECODABLE as exc:
        raise EventError("malformed", f"{kind} event: {_decode_problem(exc)}") from None


def split_payload(data: bytes | str) -> list[msgspec.Raw]:
    """A frame or request body: one JSON object, or an array of them."""
    if isinstance(data, str):
        try:
            data = data.encode()
        except UnicodeEncodeError as exc:  # a str holding lone surrogates: not valid Unicode text
            raise EventError("malformed", f"text is not valid Unicode: {exc}") from None
    stripped = data.lstrip()
    if stripped[:1] == b"[":
        try:
            return _list_decoder.decode(stripped)
        except _UNDECODABLE as exc:
            raise EventError("malformed", f"invalid JSON array: {_decode_problem(exc)}") from None
    return [msgspec.Raw(stripped)]


# --- the trading calendar ---------------------------------------------------------------------

class TradingCalendar:
    """Maps a Unix time to its trading day and week (proleptic ordinals, comparable as ints).

    The trading day starts at ``day_start`` local time in ``timezone``: a 17:00 New York
    boundary puts Monday 18:00 in Tuesday's trading day. Weeks start on ``week_start`` at
    the day boundary.
    """

    def __init__(self, rules: "AccountRules") -> None:
        self.zone = rules.zone
        self.offset = rules.day_offset
        self.week_start = rules.week_start_index

    def day(self, ts: float) -> int:
        # Aware datetime minus a timedelta is wall-clock arithmetic: the boundary stays at the
        # same local time across DST changes.
        local = dt.datetime.fromtimestamp(ts, self.zone) - self.offset
        return local.date().toordinal()

    def week(self, day: int) -> int:
        return day - (dt.date.fromordinal(day).weekday() - self.week_start) % 7


# --- per-account state ------------------------------------------------------------------------

def _ratio_below(peak: float | None, value: float | None) -> float | None:
    """Drawdown of ``value`` from ``peak`` as a ratio; None when undefined (no peak above 0)."""
    if peak is None or value is None or peak <= 0:
        return None
    return max(0.0, (peak - value) / peak)


class Account:
    """Everything tracked for one account; plain attributes, persisted as a JSON-able dict."""

    # Attributes saved by the store (names are the persisted keys: change with a migration).
    PERSISTED = (
        "equity", "equity_ts", "peak", "max_drawdown", "day", "day_peak", "week", "week_peak",
        "closes", "pnl_total", "pnl_day_key", "pnl_day", "trades", "losing_streak", "gross_profit", "gross_loss",
        "kill_switch", "kill_reason", "breaker_open", "breaker_reason", "safety_ts",
        "positions", "position_limit", "positions_ts",
        "api_errors", "latency_counts", "latency_sum", "last_event",
    )

    def __init__(self, rules: "AccountRules") -> None:
        self.rules = rules
        self.name = rules.name
        self.calendar = TradingCalendar(rules)
        self.equity: float | None = None
        self.equity_ts = 0.0
        self.peak: float | None = None          # highest equity ever seen
        self.max_drawdown: float | None = None  # largest drawdown from the running peak
        self.day = 0                             # trading day of the last equity snapshot
        self.day_peak: float | None = None       # highest equity of that day (incl. its opening)
        self.week = 0
        self.week_peak: float | None = None
        self.closes: list[list[float]] = []      # [[day, last equity of that day], ...], ascending
        self.pnl_total = 0.0
        self.pnl_day_key = 0
        self.pnl_day = 0.0
        self.trades = dict.fromkeys(RESULTS, 0)
        self.losing_streak = 0
        self.gross_profit = 0.0                  # sum of net P&L of winning trades (desk metrics)
        self.gross_loss = 0.0                    # sum of net P&L of losing trades (negative)
        self.kill_switch = False
        self.kill_reason = ""
        self.breaker_open = False
        self.breaker_reason = ""
        self.safety_ts = 0.0
        self.positions: dict[str, float] = {}
        self.position_limit: int | None = None
        self.positions_ts = 0.0
        self.api_errors = 0
        self.latency_counts = [0] * (len(API_LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.last_event = 0.0
        # (ts, ok, latency) of the latest API calls: the live view's last-minute error rate and p99.
        self.recent_api: deque[tuple[float, bool, float]] = deque(maxlen=RECENT_API_CALLS)

    # --- persistence ------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.PERSISTED}

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the state, to put back with ``load_state`` if a batch cannot be stored."""
        state = copy.deepcopy(self.to_state())
        state["_recent_api"] = list(self.recent_api)  # not persisted, but undone with the rest
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        for name in self.PERSISTED:
            if name in state:
                setattr(self, name, state[name])
        self.trades = {**dict.fromkeys(RESULTS, 0), **self.trades}
        if "_recent_api" in state:
            self.recent_api = deque(state["_recent_api"], maxlen=RECENT_API_CALLS)
        if len(self.latency_counts) != len(API_LATENCY_BUCKETS) + 1:  # buckets changed: restart them
            self.latency_counts = [0] * (len(API_LATENCY_BUCKETS) + 1)
            self.latency_sum = 0.0

    # --- applying events --------------------------------------------------------------------

    def out_of_order(self, event: Event, ts: float) -> bool:
        if isinstance(event, Equity):
            return ts < self.equity_ts
        if isinstance(event, Positions):
            return ts < self.positions_ts
        if isinstance(event, Safety):
            return ts < self.safety_ts
        return False

    def apply(self, event: Event, ts: float) -> None:
        if ts > self.last_event:
            self.last_event = ts
        if isinstance(event, Trade):
            self._trade(event, ts)
        elif isinstance(event, Equity):
            self._equity(event.equity, ts)
        elif isinstance(event, Positions):
            self.positions = {s: q for s, q in event.positions.items() if q != 0}
            if event.limit is not None:
                self.position_limit = event.limit
            self.positions_ts = ts
        elif isinstance(event, Safety):
            if event.kill_switch is not None:
                self.kill_switch = event.kill_switch
                self.kill_reason = event.reason
            if event.circuit_breaker is not None:
                self.breaker_open = event.circuit_breaker == "open"
                self.breaker_reason = event.reason
            self.safety_ts = ts
        elif isinstance(event, ApiCall):
            if not event.ok:
                self.api_errors += 1
            self.latency_counts[bisect_left(API_LATENCY_BUCKETS, event.latency)] += 1
            self.latency_sum += event.latency
            self.recent_api.append((ts, event.ok, event.latency))

    def _trade(self, trade: Trade, ts: float) -> None:
        net = trade.pnl - trade.fees
        result = "win" if net > 0 else "loss" if net < 0 else "flat"
        self.trades[result] += 1
        if result == "loss":
            self.losing_streak += 1
            self.gross_loss += net
        elif result == "win":
            self.losing_streak = 0
            self.gross_profit += net
        # A flat trade neither extends nor breaks the streak.
        self.pnl_total += net
        day = self.calendar.day(ts)
        if day > self.pnl_day_key:
            self.pnl_day_key = day
            self.pnl_day = net
        elif day == self.pnl_day_key:
            self.pnl_day += net
        # A trade closed on an earlier trading day counts in the total only.

    def _equity(self, equity: float, ts: float) -> None:
        day = self.calendar.day(ts)
        week = self.calendar.week(day)
        previous = self.equity
        # The day's (week's) peak includes its opening equity: the last value before it began.
        if day != self.day or self.day_peak is None:
            self.day = day
            self.day_peak = equity if previous is None else max(previous, equity)
        else:
            self.day_peak = max(self.day_peak, equity)
        if week != self.week or self.week_peak is None:
            self.week = week
            self.week_peak = equity if previous is None else max(previous, equity)
        else:
            self.week_peak = max(self.week_peak, equity)
        self.peak = equity if self.peak is None else max(self.peak, equity)
        drawdown = _ratio_below(self.peak, equity)
        if drawdown is not None and (self.max_drawdown is None or drawdown > self.max_drawdown):
            self.max_drawdown = drawdown
        self.equity = equity
        self.equity_ts = ts
        if self.closes and self.closes[-1][0] == day:
            self.closes[-1][1] = equity
        else:
            self.closes.append([day, equity])
            # Keep the window's closes, the close before them and the day in progress.
            del self.closes[:-(self.rules.sharpe.window + 2)]

    # --- reading (derived at read time from ``now``) ------------------------------------------

    def drawdown(self) -> float | None:
        """From the running peak."""
        return _ratio_below(self.peak, self.equity)

    def drawdown_daily(self, now: float) -> float | None:
        """From the current trading day's peak; 0 at the start of a day without a snapshot yet."""
        today = self.calendar.day(now)
        peak = self.day_peak if self.day >= today else self.equity
        return _ratio_below(peak, self.equity)

    def drawdown_weekly(self, now: float) -> float | None:
        this_week = self.calendar.week(self.calendar.day(now))
        peak = self.week_peak if self.week >= this_week else self.equity
        return _ratio_below(peak, self.equity)

    def pnl_today(self, now: float) -> float:
        return self.pnl_day if self.pnl_day_key >= self.calendar.day(now) else 0.0

    def daily_returns(self, now: float) -> list[float] | None:
        """Returns between consecutive completed trading days' closing equity (window applied).

        None when a close is not positive (a return from it is undefined).
        """
        today = self.calendar.day(now)
        closes = [equity for day, equity in self.closes if day < today]
        if any(c <= 0 for c in closes[:-1]):
            return None
        returns = [closes[i] / closes[i - 1] - 1.0 for i in range(1, len(closes))]
        return returns[-self.rules.sharpe.window:]

    def sharpe(self, now: float) -> float | None:
        """Annualised Sharpe ratio of the daily returns; None until defined (never a fake 0)."""
        settings = self.rules.sharpe
        returns = self.daily_returns(now)
        if returns is None or len(returns) < settings.min_returns:
            return None
        n = len(returns)
        mean = sum(returns) / n
        variance = sum((r - mean) ** 2 for r in returns) / (n - 1)
        if variance <= 0:
            return None
        excess = mean - settings.risk_free_rate / settings.periods_per_year
        return excess / math.sqrt(variance) * math.sqrt(settings.periods_per_year)

    def win_rate(self) -> float | None:
        total = sum(self.trades.values())
        return self.trades["win"] / total if total else None

    def positions_open(self) -> int:
        return len(self.positions)

    def utilization(self) -> float | None:
        if not self.position_limit:
            return None
        return len(self.positions) / self.position_limit


# --- the tracker ------------------------------------------------------------------------------

@dataclass
class IngestResult:
    """What one frame or request did: counts, and a few problem descriptions to log.

    ``errors`` lists the invalid events as (index in the body, reason, message): the push API
    answers them with 400. ``refused`` means an all-or-nothing batch was dropped because of them;
    ``store_error`` that the state file could not be written, so nothing was applied.
    """

    accepted: int = 0
    heartbeats: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    errors: list[tuple[int | None, str, str]] = field(default_factory=list)
    refused: bool = False
    store_error: str | None = None

    def reject(self, reason: str, message: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        if reason != "duplicate" and len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(f"{reason}: {message}")

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())


@dataclass
class _Checked:
    """An event that passed every check that does not depend on the stored state."""

    index: int
    event: Event
    ts: float
    account: "Account"


@dataclass
class _Committed:
    """A batch the writer thread committed: the accounts' new states, what was applied, what skipped."""

    states: dict[str, dict[str, Any]]
    applied: list[tuple[str, str]]
    skipped: list[tuple[str, str]]


class Tracker:
    """All configured accounts, the ingest counters, and the store that keeps them.

    Memory never runs ahead of the store: a batch is applied to copies of its accounts, saved
    and committed in one transaction (in the writer thread), and only then shown and counted;
    if the commit fails nothing changes, so the event is neither lost from the file nor counted
    twice when it is sent again.
    """

    def __init__(self, config: "TradingConfig", now: float, store: "Store | None" = None) -> None:
        from exporter.trading.store import MemoryStore

        self.config = config
        self.store = store if store is not None else MemoryStore()
        self.accounts: dict[str, Account] = {a.name: Account(a.resolved) for a in config.accounts}
        for name, state in self.store.load().items():
            account = self.accounts.get(name)
            if account is not None:  # an account removed from the config is ignored, not deleted
                account.load_state(state)
        self.events = {(name, kind): 0 for name in self.accounts for kind in EVENT_TYPES}
        self.rejected = dict.fromkeys(REJECT_REASONS, 0)
        self.store_errors = 0
        self.last_prune = now - _PRUNE_EVERY
        # The one thread that talks to the store, and the state it last committed per account
        # (written by that thread only; a batch starts from it, never from a state in flight).
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="feedwatch-trading-store")
        self._committed: dict[str, dict[str, Any]] = {name: a.snapshot() for name, a in self.accounts.items()}
        # Told which accounts a batch changed, after it is committed and shown (the live view
        # pushes, the incident journal looks for breaches). Called on the ingesting thread (the
        # event loop's for the push API and the stream); must be quick.
        self.listeners: list[Callable[["Tracker", frozenset[str]], None]] = []
        # Forget expired ids now; on a full disk this fails, is counted, and is retried later.
        self.housekeeping(now)

    def reconfigure(self, config: "TradingConfig") -> None:
        """A reloaded ``trading:`` section (same state file): accounts, limits, calendars, API.

        Accounts that stay keep their state and get their new rules (limits, Sharpe settings,
        trading calendar: a changed calendar applies from the next event); new accounts start
        from their saved state, if the file has one; removed accounts leave memory and the
        metrics, while their saved state stays in the file.
        """
        saved: dict[str, Any] | None = None
        accounts: dict[str, Account] = {}
        for account_config in config.accounts:
            rules = account_config.resolved
            account = self.accounts.get(rules.name)
            if account is None:
                account = Account(rules)
                if saved is None:
                    saved = self._writer.submit(self.store.load).result()
                if rules.name in saved:
                    account.load_state(saved[rules.name])
                self._committed[rules.name] = account.snapshot()
            else:
                account.rules = rules
                account.calendar = TradingCalendar(rules)
            accounts[rules.name] = account
        self.accounts = accounts
        self.events = {(name, kind): self.events.get((name, kind), 0) for name in accounts for kind in EVENT_TYPES}
        self.config = config
        if hasattr(self.store, "backup_interval"):  # the SQLite store: same file, new backup pace
            self.store.backup_interval = config.state_backup_interval

    # --- ingest -------------------------------------------------------------------------------

    def ingest_json(self, data: bytes | str, now: float, *, atomic: bool = False) -> IngestResult:
        """A frame or request body (one event object or an array of them)."""
        try:
            raws = split_payload(data)
        except EventError as exc:
            result = IngestResult()
            self._invalid(result, None, exc.reason, str(exc))
            result.refused = atomic
            return result
        return self.ingest_raw(raws, now, atomic=atomic)

    def ingest_raw(self, raws: Iterable[msgspec.Raw], now: float, *, atomic: bool = False) -> IngestResult:
        """Events already split out of a body (``split_payload``), each still JSON.

        Invalid events (malformed, unknown type or account, expired, future) are counted and
        described with their index. Without ``atomic`` (a stream: nobody to answer) the valid
        ones are applied; with it (the push API) any invalid event refuses the whole batch.
        """
        result, checked = self._check_raw(raws, now, atomic)
        if not result.refused:
            self._apply(checked, now, result)
        return result

    async def ingest_raw_async(self, raws: Iterable[msgspec.Raw], now: float, *,
                               atomic: bool = False) -> IngestResult:
        """``ingest_raw`` for the push API: the event loop runs while the writer thread commits;
        returns once the batch is committed (or refused). Cancelling the caller (a client that
        hung up) does not cancel the batch: it is committed and counted all the same."""
        result, checked = self._check_raw(raws, now, atomic)
        if not result.refused:
            await asyncio.shield(asyncio.ensure_future(self._apply_async(checked, now, result)))
        return result

    def _check_raw(self, raws: Iterable[msgspec.Raw], now: float, atomic: bool) -> tuple[IngestResult, list[_Checked]]:
        result = IngestResult()
        checked: list[_Checked] = []
        for index, raw in enumerate(raws):
            try:
                event = decode_event(raw)
            except EventError as exc:
                self._invalid(result, index, exc.reason, f"{exc} in {preview(bytes(raw), 160)}")
                continue
            if event is HEARTBEAT:
                result.heartbeats += 1
                continue
            item = self._check(index, event, now, result)
            if item is not None:
                checked.append(item)
        if atomic and result.errors:
            result.refused = True
        return result, checked

    def ingest(self, events: Iterable[Event], now: float) -> IngestResult:
        """Already-typed events (the in-process API)."""
        result = IngestResult()
        checked = [item for index, event in enumerate(events)
                   if (item := self._check(index, event, now, result)) is not None]
        self._apply(checked, now, result)
        return result

    def reject(self, reason: str, count: int = 1) -> None:
        """Count refusals decided outside the tracker (the push API's authentication)."""
        self.rejected[reason] += count

    def _invalid(self, result: IngestResult, index: int | None, reason: str, message: str) -> None:
        self.rejected[reason] += 1
        result.reject(reason, message)
        if len(result.errors) < _MAX_ERRORS:
            result.errors.append((index, reason, message))

    def _check(self, index: int, event: Event, now: float, result: IngestResult) -> _Checked | None:
        """The checks that need no stored state; None (counted) when the event is invalid."""
        problem = check_event(event)
        if problem is not None:
            self._invalid(result, index, "malformed", f"{event.type} event {event.id!r}: {problem}")
            return None
        try:
            ts = event_seconds(event.ts)
        except EventError as exc:
            self._invalid(result, index, exc.reason, f"{event.type} event {event.id!r}: {exc}")
            return None
        account = self.accounts.get(event.account)
        if account is None:
            self._invalid(result, index, "unknown_account",
                          f"{event.type} event {event.id!r} for account {event.account!r} "
                          f"(configured: {', '.join(self.accounts)})")
            return None
        if ts < now - self.config.dedup_window:
            self._invalid(result, index, "expired", f"{event.type} event {event.id!r} from {_iso(ts)} is older "
                          f"than dedup_window and may be a replay")
            return None
        if ts > now + FUTURE_TOLERANCE:
            self._invalid(result, index, "future", f"{event.type} event {event.id!r} at {_iso(ts)} is "
                          f"{ts - now:.0f}s ahead of this exporter's clock; check the bot's clock")
            return None
        return _Checked(index, event, ts, account)

    def _apply(self, checked: list[_Checked], now: float, result: IngestResult) -> None:
        """Commit valid events in one store transaction (waiting for the writer thread), then
        show them; on a store failure nothing is shown or counted."""
        if checked:
            self._land(self._writer.submit(self._transaction, checked), result)
        self.housekeeping(now, result)

    async def _apply_async(self, checked: list[_Checked], now: float, result: IngestResult) -> None:
        if checked:
            future = self._writer.submit(self._transaction, checked)
            # Wait without raising: _land reads the outcome (a StoreError is a refused batch,
            # anything else raises from there).
            waited = asyncio.wrap_future(future)
            try:
                await asyncio.wait({waited})
            finally:
                waited.cancel()   # only if we were cancelled: the transaction too, if not started yet
            self._land(future, result)
        problem = await asyncio.wrap_future(self._writer.submit(self._housekeep, now))
        self._housekept(problem, result)

    def _transaction(self, checked: list[_Checked]) -> "_Committed":
        """The writer thread: apply a batch to working copies of its accounts (from their last
        committed state), claim the ids, save and commit; the copies' states when committed."""
        store = self.store
        work: dict[str, Account] = {}
        touched: set[str] = set()
        applied: list[tuple[str, str]] = []
        skipped: list[tuple[str, str]] = []      # (reason, message): counted once committed
        try:
            store.begin()
            for item in checked:
                event, ts, account = item.event, item.ts, item.account
                if not store.claim(account.name, str(event.id), ts):
                    skipped.append(("duplicate", f"{event.type} event {event.id!r}"))
                    continue
                working = work.get(account.name)
                if working is None:
                    working = work[account.name] = Account(account.rules)
                    working.load_state(copy.deepcopy(self._committed.get(account.name) or account.to_state()))
                if working.out_of_order(event, ts):
                    skipped.append(("out_of_order", f"{event.type} event {event.id!r} at {_iso(ts)} is older "
                                                    f"than the {event.type} snapshot already applied"))
                    continue
                working.apply(event, ts)
                touched.add(account.name)
                applied.append((account.name, event.type))
            for name in touched:
                store.save(name, work[name].to_state())
            store.commit()
            # What memory shows: the saved state and what it keeps only in memory (recent API calls).
            states = {name: work[name].snapshot() for name in touched}
        except BaseException:
            store.rollback()
            raise
        self._committed.update(states)
        return _Committed(states, applied, skipped)

    def _land(self, future: Any, result: IngestResult) -> None:
        """Back on the caller's thread: show the committed states and count the batch."""
        from exporter.trading.store import StoreError

        try:
            done: _Committed = future.result()
        except StoreError as exc:
            self.store_errors += 1
            result.store_error = str(exc)
            result.problems.append(f"state store: {exc}; nothing of this batch was applied")
            return
        for name in done.states:
            account = self.accounts.get(name)
            if account is not None:  # the latest committed: batches may land out of order
                account.load_state(copy.deepcopy(self._committed[name]))
        for key in done.applied:
            if key in self.events:
                self.events[key] += 1
        result.accepted += len(done.applied)
        for reason, message in done.skipped:
            self.rejected[reason] += 1
            result.reject(reason, message)
        if done.states:
            self._tell(frozenset(done.states))

    def housekeeping(self, now: float, result: IngestResult | None = None) -> str | None:
        """Forget old event ids and refresh the store's backup when they are due.

        Called after every batch and by the push API's timer (so the last changes of a stream
        that went quiet are backed up too). A failure is counted and returned (and added to
        ``result``'s problems); the next call retries.
        """
        return self._housekept(self._writer.submit(self._housekeep, now).result(), result)

    async def housekeeping_async(self, now: float) -> str | None:
        """``housekeeping`` without holding the event loop (a backup fsyncs)."""
        return self._housekept(await asyncio.wrap_future(self._writer.submit(self._housekeep, now)), None)

    def _housekeep(self, now: float) -> str | None:
        from exporter.trading.store import StoreError

        store = self.store
        try:
            if now - self.last_prune >= _PRUNE_EVERY:
                self.last_prune = now
                store.prune(now - self.config.dedup_window)
            if store.backup_due():
                store.backup()
        except StoreError as exc:
            return str(exc)
        return None

    def _housekept(self, problem: str | None, result: IngestResult | None) -> str | None:
        if problem is not None:
            self.store_errors += 1
            if result is not None and len(result.problems) < _MAX_PROBLEMS:
                result.problems.append(f"state store: {problem}")
        return problem

    def _tell(self, accounts: frozenset[str]) -> None:
        for listener in self.listeners:
            try:
                listener(self, accounts)
            except Exception:  # a listener's bug must not cost the events (they are applied)
                log.exception("trading listener %r failed", listener)

    def close(self) -> None:
        self._writer.shutdown(wait=True)   # a commit in flight finishes first
        self.store.close()


def _iso(ts: float) -> str:
    try:
        return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):  # beyond what a datetime holds: say the number
        return f"Unix time {ts!r}"


# --- one tracker per configuration ------------------------------------------------------------
#
# The service builds feeds, the server builds routes and renderers, and all of them must see the
# same Tracker (and the same SQLite file). ``attach`` creates it once per Config object; the
# ``trading`` feed adapter finds it through its FeedConfig. Keyed by object identity (configs
# hold dicts, so they are not hashable) with weak references, so tests that build many configs
# do not keep them alive.

_TRACKERS: dict[int, tuple[weakref.ref, Tracker]] = {}
_BY_FEED: dict[int, tuple[weakref.ref, Tracker]] = {}


def attach(config: "Config", now: float, *, reset_state: bool = False) -> Tracker | None:
    """The Tracker for ``config`` (created and opened on first use); None without ``trading:``.

    Opening raises ``store.StateFileError`` for a state file that cannot be used, unless
    ``reset_state`` (``feedwatch run --reset-trading-state``) allows replacing a damaged one.
    """
    trading = config.trading
    if trading is None:
        return None
    entry = _TRACKERS.get(id(trading))
    if entry is not None and entry[0]() is trading:
        tracker = entry[1]
    else:
        from exporter.trading.store import open_store

        store = open_store(trading.state_file, reset=reset_state, backup_interval=trading.state_backup_interval)
        try:
            tracker = Tracker(trading, now, store)
        except BaseException:
            store.close()
            raise
        _TRACKERS[id(trading)] = (weakref.ref(trading, _forget(_TRACKERS, id(trading))), tracker)
    for feed in config.feeds:
        if feed.kind == "trading":
            _BY_FEED[id(feed)] = (weakref.ref(feed, _forget(_BY_FEED, id(feed))), tracker)
    return tracker


def reattach(old: "Config", new: "Config") -> Tracker | None:
    """Hand ``old``'s tracker to ``new`` (a configuration reload): same state and state file,
    the new section's rules (``Tracker.reconfigure``); the new trading feeds deliver to it."""
    entry = _TRACKERS.pop(id(old.trading), None) if old.trading is not None else None
    if entry is None or new.trading is None:
        return None
    tracker = entry[1]
    tracker.reconfigure(new.trading)
    _TRACKERS[id(new.trading)] = (weakref.ref(new.trading, _forget(_TRACKERS, id(new.trading))), tracker)
    for feed in new.feeds:
        if feed.kind == "trading":
            _BY_FEED[id(feed)] = (weakref.ref(feed, _forget(_BY_FEED, id(feed))), tracker)
    return tracker


def detach(config: "Config") -> None:
    """Close and forget ``config``'s tracker (service shutdown; the next attach reopens the file)."""
    trading = config.trading
    entry = _TRACKERS.pop(id(trading), None) if trading is not None else None
    if entry is None:
        return
    for key, (ref, tracker) in list(_BY_FEED.items()):
        if tracker is entry[1]:
            del _BY_FEED[key]
    entry[1].close()


def tracker_for_feed(feed: "FeedConfig") -> Tracker | None:
    """The tracker a ``kind: trading`` feed delivers to (set by ``attach``)."""
    entry = _BY_FEED.get(id(feed))
    if entry is not None and entry[0]() is feed:
        return entry[1]
    return None


def _forget(table: dict, key: int):
    def callback(_ref: weakref.ref) -> None:
        table.pop(key, None)
    return callback
