"""Read models of the Book for the JSON API and the live status page (no I/O, no HTTP).

Everything is computed at read time from the injected clock with the same ``FeedBook`` methods
the collector uses, so ``/api/v1/status`` and ``/metrics`` agree on every number. Shapes are
msgspec structs: they are the documented JSON schema and encode without an intermediate dict.

- ``feed_status``: one feed for ``GET /api/v1/status`` (up, health, connections, state counts,
  the worst symbols by staleness and by sequence gaps).
- ``symbol_view``: one symbol for ``GET /api/v1/symbols/{feed}/{symbol}``: "is this price fresh
  enough to trade on?" (``fresh`` = a price is known, the state is healthy, the price is not
  frozen, the staleness is within ``max_staleness`` when asked, and the price came from
  ``source`` when asked; ``reason`` says why not), with where the price came from (``source``:
  ws or rest).
- ``snapshot``: the compact frame pushed once a second to the status page over Server-Sent Events
  (with, per feed, why it is down and since when: ``down_reason``).
"""

from __future__ import annotations

import heapq
from typing import Optional

import msgspec

from exporter.book import HEALTHY, STATE_NAMES, STATES, Book, FeedBook, SymbolState


def _time_or_none(value: float) -> Optional[float]:
    return value if value else None


def _event_time(state: SymbolState) -> Optional[float]:
    """The venue's timestamp in seconds, or None when there is none or it cannot be converted.

    The book stores only plausible timestamps; this is the guard behind it, so a bad value
    reads as unknown (null) instead of failing the request."""
    try:
        seconds = float(state.event_time)
    except (OverflowError, TypeError, ValueError):
        return None
    return seconds if seconds and seconds == seconds and abs(seconds) != float("inf") else None


class ConnectionStatus(msgspec.Struct):
    name: str
    up: bool
    last_heartbeat: Optional[float]
    connected_at: Optional[float]
    symbols: int


class SymbolBrief(msgspec.Struct):
    symbol: str
    state: str
    staleness_seconds: float
    last_update: Optional[float]
    price: Optional[float]
    gaps: int


class FeedStatus(msgspec.Struct):
    name: str
    kind: str
    up: bool
    started_at: float
    last_update: Optional[float]
    last_message: Optional[float]
    error_count: int              # every error since start (sum of feedwatch_feed_errors_total)
    consecutive_errors: int       # the run that makes a stream unhealthy at unhealthy_after_errors
    last_error: str
    recovery_attempts: int        # reconnect attempts (feedwatch_feed_reconnect_attempts_total)
    is_healthy: bool
    market_open: bool
    subscribed: int
    acknowledged: int
    connections: list[ConnectionStatus]
    symbols: dict[str, int]       # state name -> count, all five states
    stalest: list[SymbolBrief]    # the worst N by staleness, worst first
    most_gaps: list[SymbolBrief]  # symbols with sequence gaps, most first (at most N)


class Status(msgspec.Struct):
    version: str
    now: float
    ready: bool
    ready_reason: str
    feeds: list[FeedStatus]


class Thresholds(msgspec.Struct):
    degraded: float
    stale: float
    critical: float


class SymbolView(msgspec.Struct):
    feed: str
    symbol: str
    state: str
    state_value: int
    staleness_seconds: float
    fresh: bool                       # safe to trade on: priced, healthy, not frozen (and within max_staleness if given)
    # Why not fresh, the first that applies: "no_price", the state's name ("degraded", "stale",
    # "critical", "closed"), "frozen", "max_staleness"; None when fresh.
    reason: Optional[str]
    frozen: bool                      # updates keep arriving at one unchanged price (thresholds.frozen)
    max_staleness_seconds: Optional[float]
    price: Optional[float]
    last_update: Optional[float]
    last_event: Optional[float]
    update_count: int
    acknowledged: bool
    sequence_gaps: int
    thresholds: Thresholds            # the ones in force: adaptive ones once learned
    adaptive: bool                    # whether those are learned from the symbol's rhythm
    expected_interval_seconds: Optional[float]   # the learned interval (adaptive thresholds)
    # Where the price came from: "ws" (the feed's socket) or "rest" (the REST fallback, while the
    # socket is down or the symbol was stale). A REST price is fresh by its own (venue) timestamp;
    # a strict bot refuses it with ?source=ws, or by reading this field.
    source: str = "ws"
    rest_timestamp: Optional[float] = None   # last_update, when the price is the REST fallback's
    required_source: Optional[str] = None    # the ?source= asked for, if any


class Problem(msgspec.Struct):
    error: str


def _brief(feed: FeedBook, state: SymbolState, now: float) -> SymbolBrief:
    price = state.price
    return SymbolBrief(state.symbol, STATE_NAMES[feed.classify(state, now)], feed.staleness(state, now),
                       _time_or_none(state.last_update), price if price == price else None, state.gaps)


def feed_status(feed: FeedBook, now: float, worst: int = 10) -> FeedStatus:
    """One feed's status; call ``feed.refresh_market(now)`` first (``book_status`` does)."""
    counts = feed.state_counts(now)
    symbols = feed.symbols.values()
    stalest = heapq.nlargest(worst, symbols, key=lambda s: feed.staleness(s, now)) if worst > 0 else []
    gappy = heapq.nlargest(worst, (s for s in symbols if s.gaps), key=lambda s: s.gaps) if worst > 0 else []
    return FeedStatus(
        name=feed.name,
        kind=feed.config.kind,
        up=feed.is_up(),
        started_at=feed.started_at,
        last_update=_time_or_none(feed.last_update),
        last_message=_time_or_none(feed.last_message),
        error_count=sum(feed.errors.values()),
        consecutive_errors=feed.consecutive_errors,
        last_error=feed.last_error,
        recovery_attempts=feed.reconnect_attempts,
        is_healthy=feed.is_healthy(now),
        market_open=feed.market_open,
        subscribed=len(feed.symbols),
        acknowledged=sum(1 for s in symbols if s.acknowledged),
        connections=[ConnectionStatus(c.name, c.up, _time_or_none(c.last_heartbeat), _time_or_none(c.connected_at),
                                      len(c.symbols)) for c in feed.connections.values()],
        symbols={STATE_NAMES[state]: counts[state] for state in STATES},
        stalest=[_brief(feed, s, now) for s in stalest],
        most_gaps=[_brief(feed, s, now) for s in gappy],
    )


def book_status(book: Book, now: float, version: str, ready: tuple[bool, str], worst: int = 10) -> Status:
    for feed in book.feeds.values():
        feed.refresh_market(now)
    return Status(version=version, now=now, ready=ready[0], ready_reason=ready[1],
                  feeds=[feed_status(feed, now, worst) for feed in book.feeds.values()])


def symbol_view(feed: FeedBook, state: SymbolState, now: float, max_staleness: float | None = None,
                required_source: str | None = None) -> SymbolView:
    """``required_source`` ("ws" or "rest"): fresh only when the price came from that source."""
    feed.refresh_market(now)
    value = feed.classify(state, now)
    staleness = feed.staleness(state, now)
    source = "rest" if state.from_rest else "ws"
    frozen = feed.is_frozen(state)
    # A symbol acknowledged a moment ago is "healthy" by staleness but has no price to trade on.
    if state.updates == 0:
        reason: str | None = "no_price"
    elif value != HEALTHY:
        reason = STATE_NAMES[value]
    elif frozen:
        reason = "frozen"
    elif max_staleness is not None and staleness > max_staleness:
        reason = "max_staleness"
    elif required_source is not None and required_source != source:
        reason = "source"  # ?source=ws and the price is the REST fallback's (or the reverse)
    else:
        reason = None
    price = state.price
    degraded, stale, critical = feed.limits(state)
    interval = feed.expected_interval(state)
    return SymbolView(
        feed=feed.name,
        symbol=state.symbol,
        state=STATE_NAMES[value],
        state_value=value,
        staleness_seconds=staleness,
        fresh=reason is None,
        reason=reason,
        frozen=frozen,
        max_staleness_seconds=max_staleness,
        price=price if price == price else None,
        last_update=_time_or_none(state.last_update),
        last_event=_event_time(state),
        update_count=state.updates,
        acknowledged=state.acknowledged,
        sequence_gaps=state.gaps,
        thresholds=Thresholds(degraded, stale, critical),
        adaptive=interval is not None,
        expected_interval_seconds=interval,
        source=source,
        rest_timestamp=_time_or_none(state.last_update) if source == "rest" else None,
        required_source=required_source,
    )


def down_reason(feed: FeedBook) -> tuple[str, Optional[float]]:
    """Why a feed is down and since when: its most recent disconnect, or "never connected" with
    the last connection error since the feed started. ("", None) while a connection is up."""
    if feed.is_up():
        return "", None
    down = [c for c in feed.connections.values() if c.down_reason]
    if down:
        latest = max(down, key=lambda c: c.down_since)
        return latest.down_reason, latest.down_since or None
    detail = f": {feed.last_error}" if feed.last_error else ""
    return f"never connected{detail}", feed.started_at


def snapshot(book: Book, now: float, version: str, limit: int = 1000) -> dict:
    """The status page's frame: per feed its health, state counts and up to ``limit`` symbols.

    Symbols are rows ``[symbol, state_value, staleness_seconds, price_or_null, updates,
    last_update_or_null]`` (arrays, not objects: a 1000-row frame stays small). Past ``limit``
    the stalest are sent, so the page always shows the symbols that need attention.
    """
    feeds = []
    for feed in book.feeds.values():
        feed.refresh_market(now)
        counts = dict.fromkeys(STATES, 0)
        rows = []
        for s in feed.symbols.values():
            value = feed.classify(s, now)
            counts[value] += 1
            price = s.price
            rows.append([s.symbol, value, feed.staleness(s, now), price if price == price else None,
                         s.updates, s.last_update or None])
        if len(rows) > limit:
            rows = heapq.nlargest(limit, rows, key=lambda row: row[2])
        reason, since = down_reason(feed)
        feeds.append({
            "name": feed.name,
            "kind": feed.config.kind,
            "up": feed.is_up(),
            "down_reason": reason,         # why it is down ("" while up)
            "down_since": since,           # since when (book time), None while up or unknown
            "last_message": feed.last_message or None,
            "healthy": feed.is_healthy(now),
            "market_open": feed.market_open,
            "connections": [{"name": c.name, "up": c.up, "last_heartbeat": c.last_heartbeat or None,
                             "down_reason": "" if c.up else c.down_reason, "down_since": None if c.up else
                             (c.down_since or None)} for c in feed.connections.values()],
            "counts": {STATE_NAMES[state]: counts[state] for state in STATES},
            "total": len(feed.symbols),
            "symbols": rows,
        })
    return {"version": version, "now": now, "feeds": feeds}
