"""Per-symbol state and the health model: the heart of feedwatch. No I/O, no metric library.

Feed adapters write into a ``FeedBook`` (one per configured feed) on the hot path; the collector,
the status page and the JSON API read it at scrape time. Health is never stored by a timer: it is
*classified at read time* from the injected clock, so a frozen feed turns stale the instant
someone looks, and tests move a fake clock instead of sleeping.

Health states (thresholds per feed and per symbol, defaults 180 s / 300 s / 1 h):

    state     value  rule                                 meaning
    healthy     0    staleness < degraded                 safe to act on
    degraded    1    degraded <= staleness < stale        act with caution
    stale       2    stale <= staleness < critical        skip price-dependent actions
    critical    3    staleness >= critical                subscription likely dead: resubscribe
    closed     -1    outside the feed's market session    not an error

Staleness is measured from the newest of: the last accepted update, the subscription
acknowledgement (for a symbol that never updated; from when it was requested if never
acknowledged), and the opening of the current market session (so a stock is not "critical" at
09:30 because it last traded yesterday).

Hot-path rules: ``apply`` and ``record`` do a dict lookup, a few comparisons and four attribute
writes per message, nothing else (no metric library, no logging, no unit conversion). Counters are plain ints and dicts, rendered by the collector.
With a tick sink configured, each frame's decoded updates go on its bounded ``TickTape`` by
reference (one extend per frame, room checked then; nothing per message; ``attach_tape`` puts a
taping wrapper in ``apply_one``'s place); without one, ``apply`` pays one None test per frame and
``apply_one`` nothing.

Edges sanitize, cores trust: an update is stored only if its price is a finite number above 0 and
its venue timestamp is *plausible*, so the collector, the status page and the JSON API never meet
a value they cannot render. Plausible means 0 (the venue gave no time), or a Unix time from
2000-01-01T00:00:00Z (``TIMESTAMP_FLOOR``) to 2100-01-01T00:00:00Z (``TIMESTAMP_CEILING``) in
any unit (s, ms, us, ns: the four ranges cannot overlap). Anything else (negative, NaN, infinite,
a 320-digit integer, 1970, the year 9999, a number between two units' ranges) is rejected as
``implausible_timestamp``: not stored, not observed as latency. The window is fixed, not relative
to the receive clock, on purpose: the clock is injected (tests run a fake clock against venues
stamping real time, and a replayed recording keeps its own time), and a venue whose clock is
merely wrong by hours is better seen than hidden: a late one shows as latency
(``FeedHighLatency``), and ``feedwatch_symbol_last_event_timestamp_seconds`` shows one that runs
ahead. The check is one chained comparison against the range of the unit the feed last used;
only a value outside it takes the slow branch (``_timestamp_ok``), which finds the unit.

Every rejection is counted by reason and leaves a short note (``notes``: symbol, value, why) that
the adapter turns into a ``Rejected`` signal, so the runner logs it, rate-limited, with a preview
of the frame. Notes are capped (``MAX_NOTES``): callers that never drain them lose nothing else.

Detectors that look past staleness, each as cheap as it can be:

- *Frozen prices* (``is_frozen``): the hot path compares each trade with the last one (``ref``)
  and, only when the price moved, writes the time and resets the run (``changed``, ``same``); a
  repeat increments ``same``. Judged at read time against ``thresholds.frozen``.
- *Adaptive thresholds* (``learn``, ``limits``): learned in the 1 s sweep from ``last_update``,
  never on the hot path; ``classify`` uses them once a symbol is warmed up.
- *Cross-feed deviation* (``Book.deviations``): computed at scrape time from fresh prices.
- *Falling behind* (``LagTracker``): the lowest latency of each second (one comparison per frame in
  ``observe_latency``) against its floor, sampled with the sockets' backlog by the sweep.
"""

from __future__ import annotations

import math
import statistics
import sys
from bisect import bisect_left
from dataclasses import dataclass
from typing import Callable, ClassVar, Generator, Iterable, Mapping, Protocol, Sequence, Union

from exporter.config import DEFAULT_MAX_SYMBOLS, FeedConfig, Thresholds, symbol_problem
from exporter.markets import calendar
from exporter.slices import run_all

HEALTHY, DEGRADED, STALE, CRITICAL, CLOSED = 0, 1, 2, 3, -1
STATE_NAMES = {HEALTHY: "healthy", DEGRADED: "degraded", STALE: "stale", CRITICAL: "critical", CLOSED: "closed"}
STATES = (HEALTHY, DEGRADED, STALE, CRITICAL, CLOSED)

# Label values that exist from the start (counters start at 0, so rate() and increase() work
# from the first scrape and dashboards never show "no data" for a healthy feed).
DISCONNECT_REASONS = (
    "server_closed",      # the venue closed the socket (close frame or EOF)
    "network_error",      # connect refused, reset, DNS, TLS
    "heartbeat_timeout",  # no frame, ping or pong within heartbeat_timeout
    "auth_failed",        # the venue rejected the credentials
    "max_connections",    # the venue refused: too many connections for this key
    "silent_stall",       # socket up, every symbol silent for silence_timeout
    "protocol_error",     # the venue sent something that breaks the protocol
    "rollover",           # planned: connection age limit (Binance 24 h), make-before-break
    "server_shutdown",    # planned: the venue announced maintenance (Binance serverShutdown)
    "resharding",         # planned: symbols moved between connections
    "reload",             # planned: a configuration reload changed the feed's connection settings
    "shutdown",           # feedwatch itself is stopping
)
ERROR_KINDS = (
    "connect",            # could not open the socket
    "decode",             # a frame that is not valid JSON / not the expected shape
    "protocol",           # valid JSON the venue should not send (unknown event, bad status)
    "subscribe",          # the venue refused a subscription
    "auth",               # authentication refused
    "send",               # could not write to the socket
    "missing_field",      # generic feeds: a configured field path never matched
)
REJECT_REASONS = (
    "nonpositive_price",         # price <= 0
    "nan_price",                 # NaN
    "infinite_price",            # +/- infinity
    "crossed_quote",             # bid > ask
    "first_print_unconfirmed",   # a first print far from its reference, dropped when not confirmed
    "unknown_symbol",            # an update for a symbol this feed does not watch
    "implausible_timestamp",     # a venue time outside [2000-01-01, 2100-01-01) in every unit
)
MESSAGE_KINDS = ("trade", "quote", "status", "control", "heartbeat", "other")
REFUSE_REASONS = (
    "invalid_name",      # wildcard-looking, empty, whitespace, control characters, absurd length
    "feed_limit",        # the feed already watches its max_symbols
    "exporter_limit",    # the exporter already watches max_symbols over every feed
)
# What became of each trigger file read (feedwatch_watchlist_trigger_files_total{result}).
TRIGGER_RESULTS = (
    "accepted",          # read and applied (its symbols watched, or refused by a limit and counted there)
    "malformed",         # not JSON, not the documented shape, a bad ttl: moved aside
    "invalid_symbol",    # a wildcard-looking or otherwise impossible symbol: moved aside
    "unknown_feed",      # names a feed that does not exist (or names none when several could): moved aside
)
# feedwatch_feed_rest_requests_total{result} (exporter/feeds/rest.py says what each means).
REST_RESULTS = ("ok", "http_error", "rate_limited", "timeout", "network_error", "decode_error")
WATCHLIST_ACTIONS = ("add", "remove")
WATCHLIST_CREDENTIALS = ("token", "hmac")

# Exchange-timestamp-to-receive latency buckets (seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# The plausible window of a venue timestamp (see the module docstring), in seconds.
TIMESTAMP_FLOOR = 946_684_800.0       # 2000-01-01T00:00:00Z
TIMESTAMP_CEILING = 4_102_444_800.0   # 2100-01-01T00:00:00Z
# [floor, ceiling) in s, ms, us and ns: disjoint, so a value's unit is the range it falls in.
_UNITS = (1.0, 1e3, 1e6, 1e9)  # stamps per second: s, ms, us, ns
TIMESTAMP_RANGES = tuple((TIMESTAMP_FLOOR * unit, TIMESTAMP_CEILING * unit) for unit in _UNITS)
# Rejection notes kept until an adapter takes them (one frame rarely holds more than a few).
MAX_NOTES = 8
# Symbols the sweep classifies between two chances for the event loop to run (exporter/slices.py):
# a slice always does one chunk, and 2,048 were single steps of 5-10 ms at 100k symbols on a slow
# day (bench/README.md, "Stalls, second round of 2026-11-27"); 512 is the render's chunk.
SWEEP_CHUNK = 512

_INF = math.inf
_NAN = math.nan
# Below this, bid + ask cannot overflow to inf; larger (finite) sides take the slow branch.
_HALF_MAX = sys.float_info.max / 2
# SymbolState.acks: never confirmed, confirmed on the current connection, confirmed before.
NEVER_ACKED, ACKED, WAS_ACKED = 0, 1, 2
_NEVER = 1 << 62  # larger than any timestamp in any unit


def escape_label(value: str) -> str:
    """Escape a label value for the Prometheus text format."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class SymbolState:
    """Everything known about one (feed, symbol). Slotted: 100k of these must stay small.

    Every slot costs 8 bytes per symbol (bench/README.md keeps the total at most 350 bytes), so
    a few hold two things that are never needed at the same time; each says when it means what.
    """

    __slots__ = (
        "symbol",         # the venue's symbol
        "labels",         # cached 'feed="x",symbol="y"' for the renderer
        "th",             # Thresholds (shared object for the common case)
        "price",          # last accepted price (a quote's bid/ask mid); NaN before the first
        "last_update",    # receive time of the last accepted update (0.0 = never)
        "last_event",     # the venue's timestamp of that update, raw (any Unix unit; 0 = none)
        "updates",        # accepted updates
        "since",          # until the first update: when it was requested, then first acknowledged
                          # (its staleness counts from it); after it, unused by staleness, so the
                          # adaptive learner keeps there the last update it looked at (``learn``)
        "acks",           # NEVER_ACKED, ACKED (on the current connection) or WAS_ACKED (before)
        "guard",          # the first trade is still to be checked (garbage-first-print guard)
        "ref",            # the trade price the next trade is judged by: while the guard is on, a
                          # first print held back for confirmation (NaN = none); after, the last
                          # accepted trade, for the frozen check
        "last_state",     # state at the last sweep, for transition events
        "last_seq",       # last sequence number seen (venues that give one; 0 = none)
        "gaps",           # sequence gaps seen for this symbol
        "rest_mark",      # ``updates`` right after the last REST fallback update (-1 = none): the
                          # price is the REST's while no other update came since (see ``from_rest``)
        # The frozen-price check (``FeedBook.is_frozen``), written by the hot path:
        "changed",        # receive time the compared price last changed
        "same",           # updates in a row since then that repeated it
        # Adaptive thresholds (``FeedBook.learn``), written by the 1 s sweep, never the hot path:
        "learn",          # None: not learning; (gaps, mean log-gap) while warming up; then the mean
    )

    def __init__(self, feed: str, symbol: str, th: Thresholds, now: float) -> None:
        self.symbol = symbol
        self.labels = f'feed="{escape_label(feed)}",symbol="{escape_label(symbol)}"'
        self.th = th
        self.price = _NAN
        self.last_update = 0.0
        self.last_event = 0
        self.updates = 0
        self.since = now
        self.acks = NEVER_ACKED
        self.guard = True
        self.ref = _NAN
        self.last_state = HEALTHY
        self.last_seq = 0
        self.gaps = 0
        self.rest_mark = -1
        self.changed = 0.0
        self.same = 0
        self.learn: float | tuple[int, float] | None = None

    @property
    def acknowledged(self) -> bool:
        """The venue confirmed the subscription on the current connection."""
        return self.acks == ACKED

    @acknowledged.setter
    def acknowledged(self, value: bool) -> None:
        self.acks = ACKED if value else (WAS_ACKED if self.acks != NEVER_ACKED else NEVER_ACKED)

    @property
    def ever_acked(self) -> bool:
        """Confirmed at least once: re-acknowledgements after reconnects keep the staleness clock."""
        return self.acks != NEVER_ACKED

    @property
    def from_rest(self) -> bool:
        """The last accepted update came from the REST fallback (no socket update since).

        Derived, not stored per message: the hot path stays untouched, and a WebSocket update
        (which counts in ``updates``) ends it by itself.
        """
        return self.rest_mark == self.updates

    @property
    def event_time(self) -> float:
        """Exchange timestamp of the last accepted update, in seconds; 0.0 if none was given."""
        return to_seconds(self.last_event)


class ConnectionState:
    """One socket of a feed (large symbol lists are spread over several)."""

    __slots__ = ("name", "labels", "opened", "up", "last_heartbeat", "connected_at", "symbols",
                 "down_since", "down_reason")

    def __init__(self, feed: str, name: str) -> None:
        self.name = name
        self.labels = f'feed="{escape_label(feed)}",connection="{escape_label(name)}"'
        self.opened = False        # a socket is open (counted in connects; its disconnect not yet)
        self.up = False            # ... and the venue accepted it: authenticated and subscribed
        self.last_heartbeat = 0.0
        self.connected_at = 0.0
        self.symbols: tuple[str, ...] = ()
        self.down_since = 0.0      # when it last went down (0 = unknown or never up)
        self.down_reason = ""      # the disconnect reason it went down with ("" = never up)


@dataclass(frozen=True)
class ConnectionChange:
    """A connection of a feed went up or down; for the incident journal and the status page.

    ``reason`` is the disconnect reason (one of DISCONNECT_REASONS) when ``up`` is False.
    """

    feed: str
    connection: str
    up: bool
    reason: str
    at: float


@dataclass(frozen=True)
class Transition:
    """A symbol changed health state (observed at a sweep); feeds logs and the incident journal."""

    feed: str
    symbol: str
    old: int
    new: int
    staleness: float
    at: float

    def describe(self) -> str:
        return (f"{self.symbol} on {self.feed}: {STATE_NAMES[self.old]} -> {STATE_NAMES[self.new]} "
                f"(staleness {self.staleness:.1f}s)")

    def fields(self) -> dict[str, object]:
        """The transition as log fields."""
        return {"feed": self.feed, "symbol": self.symbol, "from": STATE_NAMES[self.old], "state": STATE_NAMES[self.new],
                "staleness": round(self.staleness, 3)}


class TradeLike(Protocol):
    """A venue's decoded trade struct: ``is_quote = False`` as a class attribute."""

    is_quote: ClassVar[bool]
    symbol: str
    price: float
    ts: float


class QuoteLike(Protocol):
    """A venue's decoded quote struct: ``is_quote = True``; price is the bid/ask mid."""

    is_quote: ClassVar[bool]
    symbol: str
    bid: float
    ask: float
    ts: float


Update = Union[TradeLike, QuoteLike]


# ``to_seconds``'s units as data, for code that converts many stamps at once (the collector):
# (lowest, highest] raw values read as one unit, and the divisor to seconds. ``to_seconds`` spells
# the same comparisons out (one call per stamp); tests/unit/test_book.py keeps the two in step.
TIMESTAMP_UNITS = ((1e17, math.inf, 1e9), (1e14, 1e17, 1e6), (1e11, 1e14, 1e3), (0.0, 1e11, 1.0))


def to_seconds(ts: float) -> float:
    """A Unix timestamp in s, ms, us or ns -> seconds, told apart by magnitude.

    Between 1973 and 5138 the four units cannot be confused (now is ~1.7e9 s, 1.7e12 ms,
    1.7e15 us, 1.7e18 ns), so venues hand over their raw stamps and nothing is multiplied on
    the hot path.
    """
    # Division, not multiplication by 1e-3: 1700000000123 / 1e3 prints as 1700000000.123.
    if ts > 1e17:
        return ts / 1e9
    if ts > 1e14:
        return ts / 1e6
    if ts > 1e11:
        return ts / 1e3
    return float(ts)


def _short(text: str, limit: int = 40) -> str:
    """A symbol cut for a log line."""
    return text if len(text) <= limit else text[:limit] + "..."


def value_text(value: object, limit: int = 40) -> str:
    """A venue's value for a log line, never raising: a 5,000-digit integer cannot even be
    ``repr``-ed (Python's integer string limit), so huge integers are described by size."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    try:
        text = repr(value)
    except Exception:  # an object whose repr fails is described by its type
        return f"a {type(value).__name__}"
    return _short(text, limit)


class _Trade:
    """An update handed to ``FeedBook.record`` as values, shaped like a venue's decoded trade."""

    __slots__ = ("symbol", "price", "ts")
    is_quote = False

    def __init__(self, symbol: str, price: float, ts: float) -> None:
        self.symbol, self.price, self.ts = symbol, price, ts


class _Quote:
    """The quote counterpart of ``_Trade``."""

    __slots__ = ("symbol", "bid", "ask", "ts")
    is_quote = True

    def __init__(self, symbol: str, bid: float, ask: float, ts: float) -> None:
        self.symbol, self.bid, self.ask, self.ts = symbol, bid, ask, ts


TAPE_SLOTS = 4   # a tape entry, per frame: feed, receive time, items (or one update), fixes


class RestTick:
    """A price the REST fallback applied (``FeedBook.apply_rest``), as the tape carries it: the
    tick sink writes it with ``source`` "rest" (never on the hot path: a few a second at most)."""

    __slots__ = ("symbol", "price", "ts")
    is_quote = False   # an update's shape for the tape; ``exporter.ticks.rows`` tells it apart by class

    def __init__(self, symbol: str, price: float, ts: float) -> None:
        self.symbol, self.price, self.ts = symbol, price, ts


class TickTape:
    """Accepted prices on their way to the tick sink (``exporter/ticks``): the hot path's one outlet.

    ``frames`` is one flat list, ``TAPE_SLOTS`` (4) entries per frame the book applied while a
    sink is configured: the feed's name, the frame's receive time, ``items`` and ``fixes``.
    ``items`` is the very sequence of decoded updates the adapter handed to ``FeedBook.apply``,
    or, from ``apply_one`` (``_apply_one_taped``), the one update itself (an update has
    ``is_quote``, a sequence has not), kept by reference: nothing is copied or built per update,
    so the hot path pays one ``extend`` by a 4-tuple (freed at once) per *frame* and nothing per
    message (measured in bench/README.md). Flat, so that no container the garbage collector
    tracks is kept per single-event frame (a kept tuple each cost ~600 instructions a Binance
    frame in collections). The updates already hold symbol, price or bid/ask, the raw venue
    timestamp and, when the adapter decoded it for the sink, the trade's ``size``. Hence the
    callers' contract: an update and the sequence holding it are not reused or changed after
    ``apply`` (every adapter decodes or builds fresh ones per frame; a test holds each to it).

    Every update of ``items`` was accepted at its own price (a trade's ``price``, a quote's mid
    ``(bid + ask) * 0.5``, computed the way ``apply`` does) unless ``fixes`` says otherwise:
    ``None`` when nothing needed fixing (the fast path), else ``{id(update): price}``, written
    only by the slow branches (``FeedBook._untape``): ``None`` for an update not accepted
    (rejected, or a first print held by the first-print guard), or the price accepted when that
    is not the update's own (a one-sided quote's side). ``id`` is unique here because the entry
    keeps every update of the frame alive. ``exporter.ticks.rows.prepare`` turns entries into
    typed rows, off the hot path. One accepted update never reaches the tape: a held first print
    confirmed by the next (only its price was kept; the confirming print is on the tape).

    Bounded: ``rows`` counts the accepted updates on the tape; once it reaches ``limit`` when a
    frame is applied, that frame's accepted updates are counted in ``dropped`` instead, so memory
    stays bounded through a sink outage (overshoot: at most one frame). The sink swaps
    ``frames`` for an empty list and lowers ``limit`` by what it still holds (``take``), so
    waiting plus unwritten rows stay within its ``buffer_limit``.
    """

    __slots__ = ("frames", "rows", "limit", "capacity", "dropped")

    def __init__(self, capacity_rows: int) -> None:
        self.frames: list = []   # feed, receive time, items (or one update), fixes; per frame
        self.rows = 0
        self.capacity = capacity_rows
        self.limit = capacity_rows
        self.dropped = 0

    def put(self, name: str, now: float, items: Sequence[Update], fixes: dict[int, float | None] | None) -> None:
        """One applied frame (``FeedBook.apply``, after its loop): on the tape, or counted as dropped."""
        accepted = len(items) if fixes is None else len(items) - sum(1 for p in fixes.values() if p is None)
        if self.rows < self.limit:
            self.frames.extend((name, now, items, fixes))
            self.rows += accepted
        else:
            self.dropped += accepted

    def take(self, held_rows: int = 0) -> tuple[list, int]:
        """The entries so far and how many rows they hold; a new empty list takes their place.
        ``held_rows`` is how many rows the sink still holds unwritten: the tape's room shrinks by
        as many (and by the rows taken now, which the sink will hold)."""
        frames, rows = self.frames, self.rows
        self.frames, self.rows = [], 0
        self.limit = max(0, self.capacity - held_rows - rows)
        return frames, rows

    def release(self, held_rows: int) -> None:
        """The sink holds ``held_rows`` unwritten rows now (it wrote some): room for more."""
        self.limit = max(0, self.capacity - held_rows)

    @property
    def depth(self) -> int:
        """Rows waiting on the tape (not yet taken by the sink)."""
        return self.rows


class FeedBook:
    """State of one feed: its symbols, connections and counters."""

    def __init__(self, config: FeedConfig, now: float,
                 connection_listeners: list[Callable[[ConnectionChange], None]] | None = None) -> None:
        self.config = config
        # Told of every connection going up or down (shared with the Book; never on the hot path).
        self.connection_listeners = connection_listeners if connection_listeners is not None else []
        self.name = config.name
        self.labels = f'feed="{escape_label(config.name)}"'
        self.symbols: dict[str, SymbolState] = {}
        self.connections: dict[str, ConnectionState] = {}
        self.calendar = config.resolved_calendar or calendar(config.market)
        self.market_open = self.calendar.is_open(now)
        self.session_start = now          # when the current session opened (or we started)
        self.started_at = now
        self.deviation = config.first_print_max_deviation
        # Counters, rendered as *_total; every known label value starts at 0.
        self.connects = 0
        self.disconnects = dict.fromkeys(DISCONNECT_REASONS, 0)
        self.messages = dict.fromkeys(MESSAGE_KINDS, 0)
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.rejected = dict.fromkeys(REJECT_REASONS, 0)
        self.bytes = 0
        self.sequence_gaps = 0
        self.reconnect_attempts = 0
        self.consecutive_errors = 0
        self.last_message = 0.0
        self.last_update = 0.0
        self.last_error = ""
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.refused = dict.fromkeys(REFUSE_REASONS, 0)
        # REST fallback (exporter/feeds/restpoll.py): requests by result, updates applied, and
        # whether the poller is polling now. Rendered only for feeds with rest.enabled.
        self.rest_requests = dict.fromkeys(REST_RESULTS, 0)
        self.rest_updates = 0
        self.rest_active = False
        # The exporter-wide symbol budget (set by the Book that holds this feed; None alone).
        self.budget: Book | None = None
        # The plausible range of a raw venue timestamp in the unit this feed last used (seconds
        # until one arrives); ``_timestamp_ok`` switches it. Cached so the hot path compares only.
        self.ts_low, self.ts_high = TIMESTAMP_RANGES[0]
        self.ts_unit = 1.0  # stamps per second in that range (1e3 for ms): converts for latency
        # (reason, detail) of recent rejections, for the adapter to report (``take_notes``).
        self.notes: list[tuple[str, str]] = []
        # The tick sink's tape (``TickTape``), when one is configured: accepted prices go there,
        # with the notes of ``apply``'s slow branches on the frame under way (``_untape``).
        self.tape: TickTape | None = None
        self.tape_fixes: dict[int, float | None] | None = None
        # Falling behind (``sample_lag``): the lowest venue-to-receive latency since the last
        # sample (written by ``observe_latency``, once per frame), the latency floor learned while
        # caught up, and the last sample's results.
        self.latency_min = _INF
        self.lag = LagTracker()
        # Bumped whenever a reload gives the symbols new thresholds (``reconfigure``): the
        # collector reads each symbol's ``th`` again only then, not at every scrape.
        self.thresholds_generation = 0
        self._detectors(config)
        for symbol in config.symbols:
            self.add_symbol(symbol, now)

    def _detectors(self, config: FeedConfig) -> None:
        """The per-feed switches the hot path and the sweep read (from the resolved thresholds)."""
        self.frozen_quotes = config.resolved_thresholds.frozen.quotes
        # Whether any symbol learns its interval: the sweep skips the others at no cost.
        self.adaptive = config.resolved_thresholds.adaptive.enabled or any(
            o is not None and o.adaptive is not None and o.adaptive.enabled
            for o in config.symbol_thresholds.values())

    # --- symbols ----------------------------------------------------------------------------

    def add_symbol(self, symbol: str, now: float) -> SymbolState:
        state = self.symbols.get(symbol)
        if state is None:
            state = SymbolState(self.name, symbol, self.config.thresholds_for(symbol), now)
            self.symbols[symbol] = state
        return state

    def remove_symbol(self, symbol: str) -> bool:
        return self.symbols.pop(symbol, None) is not None

    def admit(self, symbols: Iterable[str], now: float) -> tuple[list[str], dict[str, str]]:
        """Add the new ones of ``symbols`` within the limits: (added, {refused symbol: reason}).

        The gate for symbols added at run time (trigger files, the watchlist API): a name that
        cannot be a symbol (``config.symbol_problem``) and anything past the feed's
        ``max_symbols`` or the exporter's are refused and counted in ``refused`` by reason.
        Symbols already watched are neither added nor refused.
        """
        added: list[str] = []
        refused: dict[str, str] = {}
        feed_room = self.config.max_symbols - len(self.symbols)
        total_room = self.budget.room() if self.budget is not None else feed_room
        for symbol in dict.fromkeys(symbols):
            if symbol in self.symbols:
                continue
            if symbol_problem(symbol) is not None:
                reason = "invalid_name"
            elif feed_room <= 0:
                reason = "feed_limit"
            elif total_room <= 0:
                reason = "exporter_limit"
            else:
                self.add_symbol(symbol, now)
                added.append(symbol)
                feed_room -= 1
                total_room -= 1
                continue
            self.refused[reason] += 1
            refused[symbol] = reason
        return added, refused

    def reconfigure(self, config: FeedConfig, now: float) -> None:
        """A reloaded configuration for this feed (same name): thresholds, market, checks.

        Symbols keep their state (last update, price, counters); each gets its thresholds from
        the new config. Which symbols are watched is the runner's business (it adds and removes
        them here as it subscribes).
        """
        self.config = config
        new_calendar = config.resolved_calendar or calendar(config.market)
        if new_calendar != self.calendar:
            # session_start stays: restarting it now would make every stale symbol look fresh.
            self.calendar = new_calendar
            self.market_open = new_calendar.is_open(now)
        self.deviation = config.first_print_max_deviation
        self._detectors(config)
        self.thresholds_generation += 1   # the collector's cached per-symbol thresholds are void
        for symbol, state in self.symbols.items():
            state.th = th = config.thresholds_for(symbol)
            if not th.adaptive.enabled:  # switched off: forget what was learned
                state.learn = None

    def acknowledge(self, symbols: Iterable[str], now: float) -> None:
        """The venue confirmed these subscriptions; a never-updated symbol's clock starts now.

        Only the first acknowledgement restarts the clock: if every reconnect did, a flapping
        connection would keep a symbol that never updates looking fresh forever.
        """
        for symbol in symbols:
            state = self.symbols.get(symbol)
            if state is not None and state.acks != ACKED:
                first = state.acks == NEVER_ACKED
                state.acks = ACKED
                if first and not state.updates:
                    state.since = now

    def unacknowledge(self, symbols: Iterable[str]) -> None:
        for symbol in symbols:
            state = self.symbols.get(symbol)
            if state is not None:
                state.acknowledged = False

    # --- the hot path -----------------------------------------------------------------------

    def apply(self, items: Sequence[Update], now: float) -> None:
        """Accept one frame's updates, in order: the only per-message code on the hot path.

        Items are a venue's decoded structs with ``symbol``, ``ts`` (Unix time in any unit) and
        a class attribute ``is_quote``: quotes carry ``bid``/``ask``, trades carry ``price``.
        The raw timestamp is stored and converted when read. Latency is observed once per
        frame, for its oldest event: the worst delay that frame delivered. (Measured: storing
        plain fields beats keeping the decoded structs alive, whose scattered frees cost more.)

        With a tick sink, ``items`` itself goes on the ``TickTape`` (by reference, after the
        loop), so the caller must not reuse or change it or its updates afterwards. The slow
        branches, given the update, note for the tape what they did not accept or accepted at
        another price (``_untape``): the loop itself has no code for the tape and is the same
        bytecode with a sink or without (measured: inline code for it cost instructions per
        message, sink or not).
        """
        symbols = self.symbols
        oldest = _NEVER
        quotes = 0
        low, high = self.ts_low, self.ts_high
        frozen_quotes = self.frozen_quotes
        for item in items:
            state = symbols.get(item.symbol)
            ts = item.ts
            if item.is_quote:
                quotes += 1
                bid = item.bid
                ask = item.ask
                if state is None or not (0.0 < bid <= ask < _HALF_MAX):
                    price = self._salvage_quote(state, item.symbol, bid, ask, item)
                    if price != price:
                        continue
                else:
                    price = (bid + ask) * 0.5
                if ts and not (low <= ts < high):
                    if not self._timestamp_ok(state, ts, item):
                        continue
                    low, high = self.ts_low, self.ts_high
                if frozen_quotes:  # the frozen check on quote mids (against the last price)
                    if price != state.price:
                        state.changed = now
                        state.same = 0
                    else:
                        state.same += 1
            else:
                price = item.price
                if state is None or not (0.0 < price < _INF):
                    self._reject(state, item.symbol, price, item)
                    continue
                if ts and not (low <= ts < high):
                    if not self._timestamp_ok(state, ts, item):
                        continue
                    low, high = self.ts_low, self.ts_high
                if state.guard and not self._confirm_first(state, price, item):
                    continue
                # The frozen check: one comparison; writes only when the price moves.
                if price != state.ref:
                    state.ref = price
                    state.changed = now
                    state.same = 0
                else:
                    state.same += 1
            state.price = price
            state.last_update = now
            state.last_event = ts
            state.updates += 1
            if ts < oldest:
                oldest = ts
        tape = self.tape
        if tape is not None:  # the frame goes on the tape by reference (or is counted as dropped)
            fixes = self.tape_fixes
            if fixes is not None:
                self.tape_fixes = None
            tape.put(self.name, now, items, fixes)
        messages = self.messages
        messages["quote"] += quotes
        messages["trade"] += len(items) - quotes
        if oldest != _NEVER:
            self.last_update = now
            if oldest:
                self.observe_latency(now - to_seconds(oldest))

    def apply_one(self, item: Update, now: float) -> bool:
        """``apply`` for a frame that carries one event (Binance and Bybit send one per frame).

        The same checks and writes as ``apply``'s loop body, without the loop, the frame
        bookkeeping and the tuple: 0.30 instead of 0.52 us per frame, ~10 % of a single-message
        venue's end-to-end cost (bench/README.md); ``observe_latency`` is inlined (issue 14: -1.8 %
        instructions per Binance frame, adapter and book, counted by cachegrind). Kept identical
        to ``apply`` by tests/unit/test_book.py::test_apply_one_matches_apply. Returns whether it
        was accepted.
        """
        state = self.symbols.get(item.symbol)
        ts = item.ts
        if item.is_quote:
            self.messages["quote"] += 1
            bid = item.bid
            ask = item.ask
            if state is None or not (0.0 < bid <= ask < _HALF_MAX):
                price = self._salvage_quote(state, item.symbol, bid, ask)
                if price != price:
                    return False
            else:
                price = (bid + ask) * 0.5
            if ts and not (self.ts_low <= ts < self.ts_high) and not self._timestamp_ok(state, ts):
                return False
            if self.frozen_quotes:
                if price != state.price:
                    state.changed = now
                    state.same = 0
                else:
                    state.same += 1
        else:
            self.messages["trade"] += 1
            price = item.price
            if state is None or not (0.0 < price < _INF):
                self._reject(state, item.symbol, price)
                return False
            if ts and not (self.ts_low <= ts < self.ts_high) and not self._timestamp_ok(state, ts):
                return False
            if state.guard and not self._confirm_first(state, price):
                return False
            if price != state.ref:
                state.ref = price
                state.changed = now
                state.same = 0
            else:
                state.same += 1
        state.price = price
        state.last_update = now
        state.last_event = ts
        state.updates += 1
        self.last_update = now
        if ts:  # checked above, so its unit is the cached range's: a division, no to_seconds
            # observe_latency, inlined: one Python call fewer per timestamped update (bench/README.md)
            latency = now - ts / self.ts_unit
            if latency < self.latency_min:
                self.latency_min = latency
            if latency < 0.0:
                latency = 0.0
            self.latency_counts[bisect_left(LATENCY_BUCKETS, latency)] += 1
            self.latency_sum += latency
        return True

    def _apply_one_taped(self, item: Update, now: float) -> bool:
        """``apply_one`` with a tick sink: what ``attach_tape`` puts in its place on this feed.

        A wrapper rather than a test inside ``apply_one``: single-event venues call it once per
        frame, and even a ``None`` test there measured ~1 % of a Binance frame's instructions
        without a sink; with one, the call and the symbol lookup here cost less than the rest of
        keeping the update. Only accepted updates go on the tape (a frame of one).
        """
        if not _apply_one(self, item, now):
            return False
        tape = self.tape
        if tape.rows < tape.limit:  # type: ignore[union-attr]
            fixes = None
            if item.is_quote and not (0.0 < item.bid <= item.ask < _HALF_MAX):
                # Salvaged (apply_one's slow branch): its price, not the mid, is on the tape.
                fixes = {id(item): self.symbols[item.symbol].price}
            tape.frames.extend((self.name, now, item, fixes))  # type: ignore[union-attr]
            tape.rows += 1  # type: ignore[union-attr]
        else:
            tape.dropped += 1  # type: ignore[union-attr]
        return True

    def attach_tape(self, tape: TickTape | None) -> None:
        """Send this feed's accepted prices to ``tape`` (None: no tick sink). ``apply`` tests
        ``tape`` once per frame; ``apply_one`` is replaced on this instance by
        ``_apply_one_taped`` (so callers binding ``feed.apply_one`` afterwards get it), and
        adapters built afterwards decode trade sizes. Attach before adapters are built."""
        self.tape = tape
        if tape is None:
            self.__dict__.pop("apply_one", None)
        else:
            self.apply_one = self._apply_one_taped  # type: ignore[method-assign]

    def observe_latency(self, latency: float) -> None:
        if latency < self.latency_min:  # before the clamp: a venue clock ahead of ours is no lag
            self.latency_min = latency
        if latency < 0.0:
            latency = 0.0  # clock skew: count it as instant rather than corrupt the sum
        self.latency_counts[bisect_left(LATENCY_BUCKETS, latency)] += 1
        self.latency_sum += latency

    def record(self, symbol: str, price: float, event_ts: float, now: float, quote: bool = False) -> bool:
        """Accept one update given as values (the in-process Monitor); True if accepted.

        ``event_ts`` is the exchange time (any Unix unit; 0 = none). ``quote=True`` marks a mid
        price from a quote: it goes through ``apply_one`` as a quote whose bid and ask are both
        that price (same checks, same reject reasons, mid = price), so it skips the first-print
        guard the way a two-sided quote does.
        """
        try:
            price = float(price)  # venues' decoders give floats; an in-process caller may not
        except OverflowError:     # an integer past a float's range: rejected as infinite_price
            price = _INF if price > 0 else -_INF
        item = _Quote(symbol, price, price, event_ts) if quote else _Trade(symbol, price, event_ts)
        return self.apply_one(item, now)

    def apply_rest(self, symbol: str, bid: float, ask: float, event_ts: float, now: float) -> bool:
        """A REST fallback snapshot (a trade: bid == ask == price); True if it moved the book.

        Not the hot path (a few requests per second at most). The same price checks as a
        socket's quote (counted in ``rejected`` alike). Its time is the venue's timestamp when
        it gives one (capped at ``now``), else ``now``: a REST answer carrying yesterday's last
        trade does not make a symbol look fresh. A snapshot no newer than what the book has is
        not applied. The feed's ``last_update`` is left alone: stream health and silent-stall
        detection are about the socket, and REST must not hide that it is quiet. Neither a
        repeated REST price nor the REST polling rhythm feeds the detectors: no frozen repeat, no
        learned interval (``learn`` skips REST updates).
        """
        state = self.symbols.get(symbol)
        if state is None or not (0.0 < bid <= ask < _HALF_MAX):
            price = self._salvage_quote(state, symbol, bid, ask)
            if price != price:
                return False
        else:
            price = (bid + ask) * 0.5
        if event_ts and not any(low <= event_ts < high for low, high in TIMESTAMP_RANGES):
            # Checked without switching the feed's cached unit: REST may stamp in another unit
            # than the socket (Polygon: ns over REST, ms over the socket).
            self._note("implausible_timestamp", symbol, f"REST timestamp {value_text(event_ts)} is not a Unix "
                                                        f"time from 2000 to 2100 (in s, ms, us or ns)")
            return False
        when = min(now, to_seconds(event_ts)) if event_ts else now
        if when <= state.last_update:
            return False
        # The frozen check: a REST price that moved ends a run of repeats (and is what the next
        # socket trade is compared with); one that did not move is no repeat, since polling a
        # quiet symbol every few seconds returns the same snapshot without the venue sending anything.
        if price != state.price:
            state.changed = when
            state.same = 0
        if not state.guard:  # while the guard is on, ``ref`` holds a first print awaiting confirmation
            state.ref = price
        state.price = price
        state.last_update = when
        state.last_event = event_ts
        state.updates += 1
        state.rest_mark = state.updates
        self.rest_updates += 1
        tape = self.tape
        if tape is not None:  # the tick sink keeps REST prices too, as source "rest"
            if tape.rows < tape.limit:
                tape.frames.extend((self.name, now, RestTick(state.symbol, price, event_ts), None))
                tape.rows += 1
            else:
                tape.dropped += 1
        return True

    def check_sequence(self, state: SymbolState, seq: int) -> None:
        """Count a gap when a venue's contiguous per-symbol sequence skips (Binance trade ids)."""
        last = state.last_seq
        if last and seq > last + 1:
            state.gaps += 1
            self.sequence_gaps += 1
        if seq > last:
            state.last_seq = seq

    # --- the slow branches (off the hot path by construction) -------------------------------

    def _note(self, reason: str, symbol: str, detail: str) -> None:
        """Count a rejection and keep a short note of it for the adapter to report."""
        self.rejected[reason] += 1
        notes = self.notes
        if len(notes) < MAX_NOTES:
            notes.append((reason, f"{_short(symbol)}: {detail}"))

    def take_notes(self) -> list[tuple[str, str]]:
        """The notes of the rejections since the last call (an adapter reports them as signals).

        Emptied in place: an adapter may hold ``feed.notes`` itself and test it after each frame."""
        notes = self.notes[:]
        self.notes.clear()
        return notes

    def _untape(self, item: Update, price: float | None) -> None:
        """For the tape (``TickTape``): ``item``, in the frame ``apply`` is applying, was not
        accepted (``price`` None) or was accepted at ``price``, which is not its own. Called by
        the slow branches only, when ``apply`` gives them the update and a tick sink is
        configured (they test both before calling: a guarded first print takes that branch
        often). ``apply`` hands the frame's notes to the tape after its loop."""
        fixes = self.tape_fixes
        if fixes is None:
            fixes = self.tape_fixes = {}
        fixes[id(item)] = price

    def _timestamp_ok(self, state: SymbolState, ts: float, item: Update | None = None) -> bool:
        """Slow branch of the timestamp check: is ``ts`` plausible in another unit (then the
        cached range switches to it)? Otherwise count and note the rejection. Comparisons only:
        a NaN fails every one, and Python compares a huge integer with a float exactly, so no
        value can raise here."""
        for (low, high), unit in zip(TIMESTAMP_RANGES, _UNITS):
            if low <= ts < high:
                # Bounds of the stamps' own type: comparing an int with a float is several
                # times slower than int with int (measured on the ingest path).
                self.ts_low, self.ts_high = (int(low), int(high)) if type(ts) is int else (low, high)
                self.ts_unit = unit
                return True
        self._note("implausible_timestamp", state.symbol,
                   f"venue timestamp {value_text(ts)} is not a Unix time from 2000 to 2100 (in s, ms, us or ns)")
        if item is not None and self.tape is not None:
            self._untape(item, None)
        return False

    def _reject(self, state: SymbolState | None, symbol: str, price: float, item: Update | None = None) -> None:
        if item is not None and self.tape is not None:
            self._untape(item, None)
        if state is None:
            self._note("unknown_symbol", symbol, "update for a symbol this feed does not watch")
        elif price != price:
            self._note("nan_price", symbol, "price is NaN")
        elif price in (_INF, -_INF):
            self._note("infinite_price", symbol, f"price is {value_text(price)}")
        else:
            self._note("nonpositive_price", symbol, f"price {value_text(price)} is not above 0")

    def _salvage_quote(self, state: SymbolState | None, symbol: str, bid: float, ask: float,
                       item: Update | None = None) -> float:
        """Price of a quote that failed the fast check: a one-sided quote uses its side; NaN = rejected."""
        price = self._quote_side(state, symbol, bid, ask)
        if item is not None and self.tape is not None:  # not the mid, either way: the tape must say so
            self._untape(item, price if price == price else None)
        return price

    def _quote_side(self, state: SymbolState | None, symbol: str, bid: float, ask: float) -> float:
        if state is None:
            self._note("unknown_symbol", symbol, "quote for a symbol this feed does not watch")
            return _NAN
        if bid != bid or ask != ask:
            self._note("nan_price", symbol, f"quote bid {value_text(bid)} ask {value_text(ask)}")
            return _NAN
        if _INF in (bid, ask) or -_INF in (bid, ask):
            self._note("infinite_price", symbol, f"quote bid {value_text(bid)} ask {value_text(ask)}")
            return _NAN
        if 0.0 < bid <= ask:  # valid but past _HALF_MAX: halves first, so the mid stays finite
            return bid * 0.5 + ask * 0.5
        if bid > 0.0 and ask > 0.0:  # both sides valid, so bid > ask
            self._note("crossed_quote", symbol, f"quote bid {value_text(bid)} above ask {value_text(ask)}")
            return _NAN
        side = bid if bid > 0.0 else ask
        if side > 0.0:
            return side
        self._note("nonpositive_price", symbol, f"quote bid {value_text(bid)} ask {value_text(ask)}: no side above 0")
        return _NAN

    def _confirm_first(self, state: SymbolState, price: float, item: Update | None = None) -> bool:
        """Garbage-first-print guard: may this first trade print be accepted? (A print it does
        not accept is noted for the tape when ``item`` is given.)

        With a price already known from quotes (the mid), a first print within
        ``first_print_max_deviation`` of it is accepted; one further away is dropped. Without one,
        the first print is held back (``ref``) and accepted only when the next trade lands
        within the deviation of it; otherwise the held print is dropped and the newer one is held
        instead. A quote arriving meanwhile becomes the reference (a print still held then is
        dropped). Drops are counted as ``first_print_unconfirmed``; a held print that the next
        one confirms counts as accepted, so every print is counted exactly once (the soak checks
        that nothing is lost). Once a print is accepted the guard is off for that symbol.
        """
        limit = self.deviation
        ref = state.price
        pending = state.ref
        if ref == ref:  # a quote mid is known
            if abs(price - ref) <= limit * ref:
                if pending == pending:  # a print held before the quote came: never confirmed
                    self._note("first_print_unconfirmed", state.symbol,
                               f"held first trade {value_text(pending)} dropped: a quote came first")
                state.guard = False
                state.ref = _NAN
                return True
            self._note("first_print_unconfirmed", state.symbol,
                       f"first trade {value_text(price)} is more than {limit:.0%} from the quote mid {value_text(ref)}")
            if item is not None and self.tape is not None:
                self._untape(item, None)
            return False
        if pending != pending:
            state.ref = price
            if item is not None and self.tape is not None:
                self._untape(item, None)
            return False
        if abs(price - pending) <= limit * min(price, pending):
            # The held print is confirmed: it counts as accepted too (every print ends up
            # counted once, accepted or rejected), though the newer price is the one kept.
            state.updates += 1
            state.guard = False
            state.ref = _NAN
            return True
        self._note("first_print_unconfirmed", state.symbol,
                   f"held first trade {value_text(pending)} not confirmed by the next, {value_text(price)}")
        state.ref = price
        if item is not None and self.tape is not None:
            self._untape(item, None)
        return False

    # --- connection bookkeeping (called by the runner) --------------------------------------

    def connection(self, name: str) -> ConnectionState:
        conn = self.connections.get(name)
        if conn is None:
            conn = self.connections[name] = ConnectionState(self.name, name)
        return conn

    def drop_connection(self, name: str) -> None:
        self.connections.pop(name, None)

    def opened(self, name: str, now: float) -> None:
        """A socket of this connection opened (its handshake done): counted in connects, but not
        up: an open socket is not yet a venue that accepted us (``connected``)."""
        conn = self.connection(name)
        conn.opened = True
        conn.last_heartbeat = now
        self.connects += 1

    def connected(self, name: str, now: float) -> None:
        """The venue accepted this connection (authenticated where it authenticates, and its first
        subscription acknowledged or its first data arrived): up from ``now``. A connection that
        was not reported ``opened`` first counts as opened here."""
        conn = self.connection(name)
        if not conn.opened:
            self.opened(name, now)
        was_up = conn.up
        conn.up = True
        conn.connected_at = now
        conn.last_heartbeat = now
        if not was_up:
            self._tell(ConnectionChange(self.name, name, True, "", now))

    def disconnected(self, name: str, reason: str, now: float | None = None) -> None:
        """The connection ended with ``reason``; ``now`` (book time) dates it for the status page.

        Every opened socket counts its disconnect once, up or not (a loop of refused logins is a
        loop of ``auth_failed`` disconnects); only one that was up is told as going down.
        """
        conn = self.connection(name)
        if conn.opened:
            conn.opened = False
            self.disconnects[reason] = self.disconnects.get(reason, 0) + 1
            conn.down_reason = reason
        if conn.up:
            conn.up = False
            conn.down_since = now if now is not None else 0.0
            self._tell(ConnectionChange(self.name, name, False, reason, conn.down_since))
        for symbol in conn.symbols:
            state = self.symbols.get(symbol)
            if state is not None:
                state.acknowledged = False

    def _tell(self, change: ConnectionChange) -> None:
        for listener in self.connection_listeners:
            listener(change)

    def heartbeat(self, name: str, now: float) -> None:
        self.connection(name).last_heartbeat = now
        self.messages["heartbeat"] += 1

    def error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.consecutive_errors += 1
        if detail:
            self.last_error = detail

    def frame_received(self, size: int, now: float) -> None:
        self.bytes += size
        self.last_message = now

    def frame_ok(self) -> None:
        self.consecutive_errors = 0

    # --- reading (scrape time) --------------------------------------------------------------

    def refresh_market(self, now: float) -> bool:
        """Re-evaluate the session; a session that just opened restarts every symbol's clock."""
        is_open = self.calendar.is_open(now)
        if is_open and not self.market_open:
            self.session_start = now
        self.market_open = is_open
        return is_open

    def reference_time(self, state: SymbolState) -> float:
        ref = state.last_update or state.since
        return ref if ref > self.session_start else self.session_start

    def staleness(self, state: SymbolState, now: float) -> float:
        return max(0.0, now - self.reference_time(state))

    def classify(self, state: SymbolState, now: float) -> int:
        if not self.market_open:
            return CLOSED
        age = now - self.reference_time(state)
        if state.learn.__class__ is float:  # adaptive thresholds, learned
            degraded, stale, critical = self.limits(state)
            return HEALTHY if age < degraded else DEGRADED if age < stale else STALE if age < critical else CRITICAL
        th = state.th
        if age < th.degraded:
            return HEALTHY
        if age < th.stale:
            return DEGRADED
        if age < th.critical:
            return STALE
        return CRITICAL

    def limits(self, state: SymbolState) -> tuple[float, float, float]:
        """The (degraded, stale, critical) staleness thresholds in force for ``state``: the
        configured ones, or the adaptive ones once the symbol's interval is learned."""
        th = state.th
        learned = state.learn
        if learned.__class__ is not float:
            return th.degraded, th.stale, th.critical
        a = th.adaptive
        stale = min(max(a.k * math.exp(learned), a.floor), a.ceiling)  # type: ignore[arg-type]
        return stale * a.k_degraded / a.k, stale, max(th.critical, stale)

    @staticmethod
    def expected_interval(state: SymbolState) -> float | None:
        """The symbol's learned interval between updates (adaptive thresholds), once warmed up."""
        learned = state.learn
        return math.exp(learned) if learned.__class__ is float else None  # type: ignore[arg-type]

    def is_frozen(self, state: SymbolState) -> bool:
        """Updates keep arriving but repeat one price: at least ``frozen.updates`` repeats in a
        row, spanning at least ``frozen.duration`` of this market session (thresholds)."""
        check = state.th.frozen
        if not check.updates or state.same < check.updates or not self.market_open:
            return False
        start = state.changed if state.changed > self.session_start else self.session_start
        return state.last_update - start >= check.duration

    def is_fresh(self, state: SymbolState, now: float) -> bool:
        """Safe to act on: priced, healthy, and not frozen (the bot API's ``fresh``; the price
        deviation compares fresh prices only)."""
        return state.updates > 0 and self.classify(state, now) == HEALTHY and not self.is_frozen(state)

    # --- adaptive thresholds: learning each symbol's rhythm, in the sweep --------------------

    def learn(self, state: SymbolState) -> None:
        """Learn from the gap before ``state``'s latest update, if the sweep has not seen it yet.

        Off the hot path: the 1 s sweep compares ``last_update`` with the update it saw last. A
        symbol updating more often than the sweep shows one gap per sweep (about 1 s), which is
        the resolution (see docs/configuration.md). Gaps that began before the current market
        session opened (the overnight close, a weekend) or that end while it is closed are not
        learned. The statistic is the mean of log-gaps (the geometric mean interval): a plain
        average while warming up, then an exponential one over about ``warmup`` gaps, each gap's
        pull limited to a factor of 4 so a single outage cannot teach "normal" (a symbol whose
        rhythm really changes is followed within a couple of dozen gaps).
        """
        last = state.last_update
        learned = state.learn
        if learned is None:  # not learning yet: mark the first update (``since`` is free now)
            if last:
                state.since = last
                state.learn = (0, 0.0)
            return
        seen = state.since
        if last == seen:
            return
        state.since = last
        if seen < self.session_start or not self.market_open or last <= seen:
            return
        if state.from_rest:  # paced by rest.interval, not by the venue: not the symbol's rhythm
            return
        x = math.log(last - seen)
        warmup = state.th.adaptive.warmup
        if learned.__class__ is tuple:
            n, mean = learned  # type: ignore[misc]
            n += 1
            mean = x if n == 1 else mean + _clamp_pull(x - mean) / n
            state.learn = mean if n >= warmup else (n, mean)
            return
        state.learn = learned + _clamp_pull(x - learned) / warmup  # type: ignore[operator]

    # --- falling behind ----------------------------------------------------------------------

    def sample_lag(self, now: float, backlog: int) -> None:
        """Once a second (the sweep): how far behind the venue this feed's processing is.

        ``backlog`` is the bytes received for the feed but not yet processed (the runner reads
        its sockets). See ``LagTracker``.
        """
        low = self.latency_min
        self.latency_min = _INF
        self.lag.sample(now, backlog, low, self.bytes)

    def state_counts(self, now: float) -> dict[int, int]:
        counts = dict.fromkeys(STATES, 0)
        for state in self.symbols.values():
            counts[self.classify(state, now)] += 1
        return counts

    def is_up(self) -> bool:
        return any(conn.up for conn in self.connections.values())

    def is_healthy(self, now: float) -> bool:
        """Stream health: connected, fewer than N consecutive errors, updates within the window."""
        if not self.is_up() or self.consecutive_errors >= self.config.unhealthy_after_errors:
            return False
        if not self.market_open or not self.symbols:
            return True
        last = self.last_update or self.started_at
        last = max(last, self.session_start)
        return now - last < self.config.unhealthy_after_silence

    def sweep(self, now: float) -> list[Transition]:
        """Classify every symbol and report the ones whose state changed since the last sweep;
        symbols with adaptive thresholds learn from their latest gap first."""
        return run_all(self.sweep_steps(now))

    def sweep_steps(self, now: float) -> Generator[None, None, list[Transition]]:
        """``sweep`` yielding after each ``SWEEP_CHUNK`` symbols (``exporter/slices.py``): 100k
        symbols take ~100 ms, a stall if swept at once every second."""
        self.refresh_market(now)
        changes: list[Transition] = []
        members = list(self.symbols.values())   # the feed may change between two steps
        classify = self.classify
        learn = self.learn if self.adaptive else None
        for i in range(0, len(members), SWEEP_CHUNK):
            for state in members[i:i + SWEEP_CHUNK]:
                if learn is not None and state.th.adaptive.enabled:
                    learn(state)
                new = classify(state, now)
                if new != state.last_state:
                    changes.append(Transition(self.name, state.symbol, state.last_state, new,
                                              self.staleness(state, now), now))
                    state.last_state = new
            yield
        return changes


# A single gap moves the learned log-interval by at most this (a factor of 4) before averaging.
_MAX_PULL = math.log(4.0)


def _clamp_pull(delta: float) -> float:
    return _MAX_PULL if delta > _MAX_PULL else -_MAX_PULL if delta < -_MAX_PULL else delta


class LagTracker:
    """How far behind the venue a feed's processing is: ``feedwatch_feed_processing_lag_seconds``.

    Sampled once a second. The venue stamps each event when it happens; the latency of what we
    apply (receive clock minus venue stamp) is the venue's and the network's delay plus however
    long the data waited for us. When we cannot keep up, data queues in our socket and, once that
    is full, at the venue (TCP holds it back there), so the latency of everything we apply grows
    for as long as we stay behind. The lag is therefore the lowest latency applied since the last
    sample (one late print cannot raise it) minus the *floor*, the venue's and network's own
    delay: the lowest latency seen over the last ten minutes. The floor follows a venue clock
    that moves either way, but only a sample with nothing waiting in our sockets lets old
    minimums expire, so a feed that stays behind does not teach the floor its own delay.

    The lag counts only while bytes wait for us (``backlog`` > 0): a venue that is late on its
    own while we wait idle for its data is not our lag (``FeedHighLatency`` covers that). When
    bytes wait and none were read since the last sample, the reader is stuck and the lag grows
    by the time passed. Clock offsets between the venue and us cancel out. A feed whose venue
    gives no timestamps has no lag to report (None); its backlog is still exported.
    """

    WINDOW = 600.0       # the floor remembers latencies this long (once caught up again)
    BUCKET = 60.0        # kept as per-minute minimums,
    MAX_BUCKETS = 1440   # at most a day of them while never caught up

    __slots__ = ("value", "backlog", "buckets", "floor", "at", "processed")

    def __init__(self) -> None:
        self.value: float | None = None      # seconds behind; None: unknown (no venue timestamps yet)
        self.backlog = 0                     # bytes waiting at the last sample
        self.buckets: list[list[float]] = []  # [minute start, lowest latency in it]
        self.floor: float | None = None
        self.at = 0.0                        # time of the last sample
        self.processed = 0                   # the feed's bytes received at the last sample

    def sample(self, now: float, backlog: int, low: float, processed: int) -> None:
        """``low``: the lowest latency applied since the last sample (inf: none); ``processed``:
        the feed's byte counter (frames read), to tell a stuck reader from a quiet one."""
        stuck = backlog > 0 and processed == self.processed and self.at > 0.0
        elapsed = now - self.at if self.at > 0.0 else 0.0
        self.backlog, self.at, self.processed = backlog, now, processed
        if low == _INF:
            if self.value is not None:
                self.value = self.value + elapsed if stuck else 0.0 if backlog <= 0 else self.value
            return
        self._learn_floor(now, low, caught_up=backlog <= 0)
        lag = low - self.floor if backlog > 0 else 0.0  # type: ignore[operator]
        self.value = lag if lag > 0.0 else 0.0

    def _learn_floor(self, now: float, low: float, caught_up: bool) -> None:
        buckets = self.buckets
        start = now - now % self.BUCKET
        if buckets and buckets[-1][0] == start:
            if low < buckets[-1][1]:
                buckets[-1][1] = low
        else:
            buckets.append([start, low])
        if caught_up:
            while buckets[0][0] <= now - self.WINDOW:
                del buckets[0]
        elif len(buckets) > self.MAX_BUCKETS:
            del buckets[0]
        self.floor = min(low for _, low in buckets)


_apply_one = FeedBook.apply_one   # the plain one, for the taping wrapper (a global: one lookup)


class Book:
    """All feeds, keyed by name, the instruments compared across them, and the listeners for
    state transitions and connection changes."""

    def __init__(self, feeds: Iterable[FeedConfig], now: float,
                 instruments: Mapping[str, Mapping[str, str]] | None = None, *,
                 max_symbols: int = DEFAULT_MAX_SYMBOLS) -> None:
        # Listeners of every feed's connection changes (the incident journal); one list, shared.
        self.connection_listeners: list[Callable[[ConnectionChange], None]] = []
        self.feeds: dict[str, FeedBook] = {f.name: FeedBook(f, now, self.connection_listeners) for f in feeds}
        for feed in self.feeds.values():
            feed.budget = self
        self.listeners: list[Callable[[Transition], None]] = []
        self.tape: TickTape | None = None
        # Most symbols over every feed (config ``max_symbols``; a reload may change it).
        self.max_symbols = max_symbols
        # The run-time watchlist's counters (exporter/feeds/watchlist.py writes them).
        self.trigger_files = dict.fromkeys(TRIGGER_RESULTS, 0)
        self.watchlist_changes = {(action, credential): 0 for action in WATCHLIST_ACTIONS
                                  for credential in WATCHLIST_CREDENTIALS}
        # instrument -> {feed: symbol} (config ``instruments:``), for ``deviations``.
        self.instruments: dict[str, dict[str, str]] = {k: dict(v) for k, v in (instruments or {}).items()}

    def attach_tape(self, tape: TickTape | None) -> None:
        """Send every feed's accepted prices (and those of feeds added later) to ``tape``."""
        self.tape = tape
        for feed in self.feeds.values():
            feed.attach_tape(tape)

    def deviations(self, now: float) -> list[tuple[str, str, float]]:
        """(instrument, feed, ratio) for every watched member of every instrument: its price's
        deviation from the median of the instrument's fresh prices (0.01 = 1 % above), or NaN
        while that is unknown (its price is not fresh, or fewer than two of the instrument's are).

        Fresh is the bot API's verdict (priced, healthy, not frozen): a stale or frozen venue has
        no price to compare, and is its own alert. With two venues the median is their midpoint,
        so each shows half of the gap between them; with three or more, the one that went astray
        stands out. A member whose feed or symbol is not watched (anymore) has no series.
        """
        found: list[tuple[str, str, float]] = []
        feeds = self.feeds
        for name, members in self.instruments.items():
            known: list[tuple[str, float]] = []
            for feed_name, symbol in members.items():
                feed = feeds.get(feed_name)
                state = feed.symbols.get(symbol) if feed is not None else None
                if state is not None:
                    known.append((feed_name, state.price if feed.is_fresh(state, now) else _NAN))  # type: ignore[union-attr]
            fresh = [price for _, price in known if price == price]
            if len(fresh) < 2:
                found.extend((name, feed_name, _NAN) for feed_name, _ in known)
                continue
            reference = statistics.median(fresh)
            found.extend((name, feed_name, price / reference - 1.0) for feed_name, price in known)
        return found

    def feed(self, name: str) -> FeedBook:
        return self.feeds[name]

    def add_feed(self, config: FeedConfig, now: float) -> FeedBook:
        """A feed added by a configuration reload."""
        feed = self.feeds[config.name] = FeedBook(config, now, self.connection_listeners)
        feed.attach_tape(self.tape)
        feed.budget = self
        return feed

    def remove_feed(self, name: str) -> None:
        """A feed removed by a configuration reload: its series stop being rendered."""
        self.feeds.pop(name, None)

    def sweep(self, now: float) -> list[Transition]:
        return run_all(self.sweep_steps(now))

    def sweep_steps(self, now: float) -> Generator[None, None, list[Transition]]:
        changes: list[Transition] = []
        for feed in list(self.feeds.values()):
            changes.extend((yield from feed.sweep_steps(now)))
        for change in changes:
            for listener in self.listeners:
                listener(change)
        return changes

    def symbol_count(self) -> int:
        return sum(len(f.symbols) for f in self.feeds.values())

    def room(self) -> int:
        """How many more symbols fit under the exporter-wide ``max_symbols``."""
        return self.max_symbols - self.symbol_count()
