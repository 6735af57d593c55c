"""The Book as Prometheus text exposition, rendered at scrape time straight from plain state.

Why text and not prometheus_client's labelled children: with 10k symbols x 6 series the
library's children cost 600-780 ms per scrape and ~4.6 KB per symbol, while formatting lines from
each symbol's cached label string (``SymbolState.labels``) takes ~40 ms and no memory between
scrapes (figures in bench/README.md). Removed symbols simply stop being rendered.

Ages are computed here from the injected clock (``FeedBook.staleness`` / ``classify``), never
stored by a timer. Every counter a feed can have starts at 0 for every known label value, so
``rate()`` works from the first scrape. Values follow the text format: integers as integers,
floats in shortest round-trip form (per-symbol prices and venue timestamps write an exponent
as ``1e16``, elsewhere ``1e+16``: both parse alike), ``NaN``, ``+Inf``, ``-Inf``; except the
per-symbol receive timestamp and staleness, our own clock's readings, written to the
millisecond (``%.3f``): a float's shortest form takes its 17 digits there and costs 1.6x as
much to format, on 100k symbols every scrape, for precision below Prometheus' own millisecond
timestamps. The per-symbol lines are formatted in C where the extension is built
(``exporter/fill.py``): the same text.

Exactly what ``BookCollector.render`` emits, for a feed ``stocks`` with one connection and one
symbol (each family lists every feed's and symbol's samples; ``...`` marks elided label values)::

    # HELP feedwatch_symbol_last_update_timestamp_seconds Unix time of the last accepted update (receive clock; 0 = never).
    # TYPE feedwatch_symbol_last_update_timestamp_seconds gauge
    feedwatch_symbol_last_update_timestamp_seconds{feed="stocks",symbol="AAPL"} 1700000000.500
    # HELP feedwatch_symbol_last_event_timestamp_seconds Venue (exchange) timestamp of the last accepted update; absent when the venue gives none.
    # TYPE feedwatch_symbol_last_event_timestamp_seconds gauge
    feedwatch_symbol_last_event_timestamp_seconds{feed="stocks",symbol="AAPL"} 1700000000.123
    # HELP feedwatch_symbol_staleness_seconds Seconds since the last accepted update (or the subscription, or the session open), computed at scrape.
    # TYPE feedwatch_symbol_staleness_seconds gauge
    feedwatch_symbol_staleness_seconds{feed="stocks",symbol="AAPL"} 0.420
    # HELP feedwatch_symbol_state Health state: 0 healthy, 1 degraded, 2 stale, 3 critical, -1 closed (outside the market session).
    # TYPE feedwatch_symbol_state gauge
    feedwatch_symbol_state{feed="stocks",symbol="AAPL"} 0
    # HELP feedwatch_symbol_updates_total Accepted price updates.
    # TYPE feedwatch_symbol_updates_total counter
    feedwatch_symbol_updates_total{feed="stocks",symbol="AAPL"} 1234
    # HELP feedwatch_symbol_price Last accepted price (a quote counts as its bid/ask mid); absent until the first.
    # TYPE feedwatch_symbol_price gauge
    feedwatch_symbol_price{feed="stocks",symbol="AAPL"} 189.5
    # HELP feedwatch_symbol_frozen Whether updates keep arriving at one unchanged price (1) or not (0): thresholds.frozen updates in a row over its duration; 0 outside the market session.
    # TYPE feedwatch_symbol_frozen gauge
    feedwatch_symbol_frozen{feed="stocks",symbol="AAPL"} 0
    # HELP feedwatch_symbol_expected_interval_seconds The symbol's learned normal interval between updates (adaptive thresholds); absent until learned.
    # TYPE feedwatch_symbol_expected_interval_seconds gauge
    feedwatch_symbol_expected_interval_seconds{feed="stocks",symbol="AAPL"} 12.5
    # HELP feedwatch_feed_info Always 1; the labels say the feed's adapter (kind) and session calendar (market: always, us-equities, us-equities-extended, cme-globex or one from the config).
    # TYPE feedwatch_feed_info gauge
    feedwatch_feed_info{feed="stocks",kind="polygon",market="us-equities"} 1
    # HELP feedwatch_feed_up Whether the venue accepted the connection, authenticated and subscribed (1), or not (0); a feed never connected shows connection 0, at 0.
    # TYPE feedwatch_feed_up gauge
    feedwatch_feed_up{feed="stocks",connection="0"} 1
    # HELP feedwatch_feed_connects_total Connections opened.
    # TYPE feedwatch_feed_connects_total counter
    feedwatch_feed_connects_total{feed="stocks"} 1
    # HELP feedwatch_feed_disconnects_total Connections lost or closed, by reason.
    # TYPE feedwatch_feed_disconnects_total counter
    feedwatch_feed_disconnects_total{feed="stocks",reason="server_closed"} 0
    ... one sample per reason in book.DISCONNECT_REASONS (and any other seen)
    # HELP feedwatch_feed_messages_total Messages received, by kind.
    # TYPE feedwatch_feed_messages_total counter
    feedwatch_feed_messages_total{feed="stocks",kind="trade"} 1000
    ... one sample per kind in book.MESSAGE_KINDS
    # HELP feedwatch_feed_bytes_total Bytes of frames received.
    # TYPE feedwatch_feed_bytes_total counter
    feedwatch_feed_bytes_total{feed="stocks"} 123456
    # HELP feedwatch_feed_last_message_timestamp_seconds Unix time the last frame arrived (0 = never).
    # TYPE feedwatch_feed_last_message_timestamp_seconds gauge
    feedwatch_feed_last_message_timestamp_seconds{feed="stocks"} 1700000000.5
    # HELP feedwatch_feed_last_heartbeat_timestamp_seconds Unix time the connection last showed life (frame, ping or pong; 0 = never).
    # TYPE feedwatch_feed_last_heartbeat_timestamp_seconds gauge
    feedwatch_feed_last_heartbeat_timestamp_seconds{feed="stocks",connection="0"} 1700000000.5
    # HELP feedwatch_feed_connected_since_timestamp_seconds Unix time the connection's current socket went live; 0 while it is down.
    # TYPE feedwatch_feed_connected_since_timestamp_seconds gauge
    feedwatch_feed_connected_since_timestamp_seconds{feed="stocks",connection="0"} 1699999000.0
    # HELP feedwatch_feed_errors_total Errors, by kind.
    # TYPE feedwatch_feed_errors_total counter
    feedwatch_feed_errors_total{feed="stocks",kind="connect"} 0
    ... one sample per kind in book.ERROR_KINDS
    # HELP feedwatch_feed_rejected_updates_total Updates rejected by the sanity checks, by reason.
    # TYPE feedwatch_feed_rejected_updates_total counter
    feedwatch_feed_rejected_updates_total{feed="stocks",reason="nonpositive_price"} 0
    ... one sample per reason in book.REJECT_REASONS
    # HELP feedwatch_feed_latency_seconds Venue timestamp to receive, observed once per frame for the frame's oldest event.
    # TYPE feedwatch_feed_latency_seconds histogram
    feedwatch_feed_latency_seconds_bucket{feed="stocks",le="0.001"} 0
    ... one bucket per book.LATENCY_BUCKETS, cumulative
    feedwatch_feed_latency_seconds_bucket{feed="stocks",le="+Inf"} 10
    feedwatch_feed_latency_seconds_sum{feed="stocks"} 0.35
    feedwatch_feed_latency_seconds_count{feed="stocks"} 10
    # HELP feedwatch_feed_symbols Symbols per health state (all five states always present).
    # TYPE feedwatch_feed_symbols gauge
    feedwatch_feed_symbols{feed="stocks",state="healthy"} 1
    feedwatch_feed_symbols{feed="stocks",state="degraded"} 0
    feedwatch_feed_symbols{feed="stocks",state="stale"} 0
    feedwatch_feed_symbols{feed="stocks",state="critical"} 0
    feedwatch_feed_symbols{feed="stocks",state="closed"} 0
    # HELP feedwatch_feed_subscribed_symbols Symbols the feed watches (configured or added at run time).
    # TYPE feedwatch_feed_subscribed_symbols gauge
    feedwatch_feed_subscribed_symbols{feed="stocks"} 1
    # HELP feedwatch_feed_acknowledged_symbols Symbols whose subscription the venue has confirmed.
    # TYPE feedwatch_feed_acknowledged_symbols gauge
    feedwatch_feed_acknowledged_symbols{feed="stocks"} 1
    # HELP feedwatch_feed_market_open Whether the feed's market session is open (1) or closed (0).
    # TYPE feedwatch_feed_market_open gauge
    feedwatch_feed_market_open{feed="stocks"} 1
    # HELP feedwatch_feed_healthy Stream health: connected, fewer than N consecutive errors, updates within the window.
    # TYPE feedwatch_feed_healthy gauge
    feedwatch_feed_healthy{feed="stocks"} 1
    # HELP feedwatch_feed_reconnect_attempts_total Reconnection attempts.
    # TYPE feedwatch_feed_reconnect_attempts_total counter
    feedwatch_feed_reconnect_attempts_total{feed="stocks"} 0
    # HELP feedwatch_feed_sequence_gaps_total Gaps seen in per-symbol venue sequence numbers.
    # TYPE feedwatch_feed_sequence_gaps_total counter
    feedwatch_feed_sequence_gaps_total{feed="stocks"} 0
    # HELP feedwatch_feed_symbols_refused_total New symbols refused at run time (trigger files, the watchlist API), by reason: invalid_name, feed_limit, exporter_limit.
    # TYPE feedwatch_feed_symbols_refused_total counter
    feedwatch_feed_symbols_refused_total{feed="stocks",reason="invalid_name"} 0
    feedwatch_feed_symbols_refused_total{feed="stocks",reason="feed_limit"} 0
    feedwatch_feed_symbols_refused_total{feed="stocks",reason="exporter_limit"} 0
    # HELP feedwatch_feed_max_symbols The most symbols this feed may watch (max_symbols).
    # TYPE feedwatch_feed_max_symbols gauge
    feedwatch_feed_max_symbols{feed="stocks"} 5000
    # HELP feedwatch_feed_receive_backlog_bytes Bytes received on the feed's sockets and not yet processed, sampled every second.
    # TYPE feedwatch_feed_receive_backlog_bytes gauge
    feedwatch_feed_receive_backlog_bytes{feed="stocks"} 0
    # HELP feedwatch_feed_processing_lag_seconds How far behind the venue the exporter's processing of the feed is (latency of what it applies above the venue's own delay, while data waits for it); absent without venue timestamps.
    # TYPE feedwatch_feed_processing_lag_seconds gauge
    feedwatch_feed_processing_lag_seconds{feed="stocks"} 0.0
    # HELP feedwatch_market_calendar_end_timestamp_seconds Unix time the market's session calendar (its holiday table) stops covering; after it, holidays read as trading days.
    # TYPE feedwatch_market_calendar_end_timestamp_seconds gauge
    feedwatch_market_calendar_end_timestamp_seconds{market="us-equities"} 2114398800.0
    # HELP feedwatch_instrument_price_deviation_ratio Deviation of a feed's price of an instrument from the median of its fresh prices across feeds (0.01 = 1 % above); NaN while unknown (this price not fresh, or fewer than two are).
    # TYPE feedwatch_instrument_price_deviation_ratio gauge
    feedwatch_instrument_price_deviation_ratio{instrument="BTCUSDT",feed="binance"} 0.0004

    # HELP feedwatch_symbol_source Where the symbol's current price came from: 1 on the source in use (ws: the feed's socket, rest: the REST fallback), 0 on the other. Feeds with rest.enabled only.
    # TYPE feedwatch_symbol_source gauge
    feedwatch_symbol_source{feed="stocks",symbol="AAPL",source="ws"} 1
    feedwatch_symbol_source{feed="stocks",symbol="AAPL",source="rest"} 0
    # HELP feedwatch_feed_rest_requests_total REST fallback requests, by result: ok, http_error, rate_limited, timeout, network_error, decode_error. Feeds with rest.enabled only.
    # TYPE feedwatch_feed_rest_requests_total counter
    feedwatch_feed_rest_requests_total{feed="stocks",result="ok"} 0
    ... one sample per result in book.REST_RESULTS
    # HELP feedwatch_feed_rest_updates_total Prices the REST fallback applied to the book. Feeds with rest.enabled only.
    # TYPE feedwatch_feed_rest_updates_total counter
    feedwatch_feed_rest_updates_total{feed="stocks"} 0
    # HELP feedwatch_feed_rest_symbols Symbols whose current price came from the REST fallback. Feeds with rest.enabled only.
    # TYPE feedwatch_feed_rest_symbols gauge
    feedwatch_feed_rest_symbols{feed="stocks"} 0
    # HELP feedwatch_feed_rest_active Whether the REST fallback is polling now (1: the socket is down, or symbols are stale). Feeds with rest.enabled only.
    # TYPE feedwatch_feed_rest_active gauge
    feedwatch_feed_rest_active{feed="stocks"} 0
    # HELP feedwatch_max_symbols The most symbols the exporter may watch over every feed (max_symbols).
    # TYPE feedwatch_max_symbols gauge
    feedwatch_max_symbols 10000
    # HELP feedwatch_watchlist_trigger_files_total Trigger files read, by result: accepted, malformed, invalid_symbol, unknown_feed (the last three are moved aside).
    # TYPE feedwatch_watchlist_trigger_files_total counter
    feedwatch_watchlist_trigger_files_total{result="accepted"} 0
    ... one sample per result in book.TRIGGER_RESULTS
    # HELP feedwatch_watchlist_api_changes_total Watchlist changes made over the admin API, by action (add, remove) and the credential that signed them (token, hmac).
    # TYPE feedwatch_watchlist_api_changes_total counter
    feedwatch_watchlist_api_changes_total{action="add",credential="token"} 0
    ... one sample per action and credential

(one ``feedwatch_market_calendar_end_timestamp_seconds`` sample per market that a feed uses and
that has a holiday table: none for ``always`` or a custom market without holidays; one
``feedwatch_instrument_price_deviation_ratio`` sample per watched feed and symbol of each
``instruments:`` entry)

The complete output for a fixed book is kept in ``tests/golden/metrics.txt``.

No value can fail a scrape. Edges sanitize, cores trust: the book stores only finite positive
prices and plausible timestamps (``exporter/book.py``), so the renderer formats without checks on
its hot loop. Behind that, a guard: a sample whose value still cannot be rendered (an exception
while formatting it, or an integer beyond a float's range, which Prometheus could not parse) is
left out of that scrape, counted in ``RenderErrors`` under this collector's name (``book``) and
logged once a minute with its series and the error. Staleness and state, which alerts read, are
computed from our own clock and never depend on a venue's value. ``RenderErrors.render`` emits,
after every collector has run (``exporter/web/app.py``, ``exporter/monitor.py``)::

    # HELP feedwatch_render_errors_total Samples left out of /metrics because their value could not be rendered, by collector.
    # TYPE feedwatch_render_errors_total counter
    feedwatch_render_errors_total{collector="book"} 0
    feedwatch_render_errors_total{collector="trading"} 0
"""

from __future__ import annotations

import logging
import math
import time
from bisect import bisect_right
from itertools import chain, compress, repeat
from operator import attrgetter, countOf, eq as _eq, ne as _ne, sub as _sub, truediv as _truediv
from typing import Any, Callable, Generator, Iterable, Sequence

import msgspec

from exporter.book import (
    ACKED,
    CLOSED,
    CRITICAL,
    DEGRADED,
    HEALTHY,
    LATENCY_BUCKETS,
    STALE,
    STATE_NAMES,
    TIMESTAMP_UNITS,
    Book,
    FeedBook,
    SymbolState,
    escape_label,
    to_seconds,
)
from exporter.exposition import DEFAULT, Exposition
from exporter.fill import fill, fill_seconds, gather
from exporter.slices import run_all
from exporter.exposition import text_header as header  # noqa: F401 (the other collectors take it from here)

_INF = math.inf
# A piece of the exposition: the per-symbol families are bytes (formatted as bytes and kept
# between scrapes: nothing to encode again), the rest text.
Part = str | bytes
# A skipped sample of one collector is logged at most once per this many seconds.
RENDER_ERROR_LOG_INTERVAL = 60.0

log = logging.getLogger("feedwatch.collector")

# The state order of ``feedwatch_feed_symbols`` (worst last, closed apart).
STATE_ORDER = (HEALTHY, DEGRADED, STALE, CRITICAL, CLOSED)

# name -> (type, help). One table so docs/metrics.md and the tests can check every family.
SYMBOL_FAMILIES: dict[str, tuple[str, str]] = {
    "feedwatch_symbol_last_update_timestamp_seconds": (
        "gauge", "Unix time of the last accepted update (receive clock; 0 = never)."),
    "feedwatch_symbol_last_event_timestamp_seconds": (
        "gauge", "Venue (exchange) timestamp of the last accepted update; absent when the venue gives none."),
    "feedwatch_symbol_staleness_seconds": (
        "gauge", "Seconds since the last accepted update (or the subscription, or the session open), computed at scrape."),
    "feedwatch_symbol_state": (
        "gauge", "Health state: 0 healthy, 1 degraded, 2 stale, 3 critical, -1 closed (outside the market session)."),
    "feedwatch_symbol_updates_total": (
        "counter", "Accepted price updates."),
    "feedwatch_symbol_price": (
        "gauge", "Last accepted price (a quote counts as its bid/ask mid); absent until the first."),
    "feedwatch_symbol_frozen": (
        "gauge", "Whether updates keep arriving at one unchanged price (1) or not (0): thresholds.frozen "
                 "updates in a row over its duration; 0 outside the market session."),
    "feedwatch_symbol_expected_interval_seconds": (
        "gauge", "The symbol's learned normal interval between updates (adaptive thresholds); absent until learned."),
}
FEED_FAMILIES: dict[str, tuple[str, str]] = {
    # An info metric: rules join it (``* on (job, instance, feed) group_left (market)``) to give
    # alerts the feed's market, which Alertmanager's closed-market mute matches on.
    "feedwatch_feed_info": (
        "gauge", "Always 1; the labels say the feed's adapter (kind) and session calendar "
                 "(market: always, us-equities, us-equities-extended, cme-globex or one from the config)."),
    "feedwatch_feed_up": (
        "gauge", 'Whether the venue accepted the connection, authenticated and subscribed (1), or not (0); a feed never connected shows connection 0, at 0.'),
    "feedwatch_feed_connects_total": ("counter", "Connections opened."),
    "feedwatch_feed_disconnects_total": ("counter", "Connections lost or closed, by reason."),
    "feedwatch_feed_messages_total": ("counter", "Messages received, by kind."),
    "feedwatch_feed_bytes_total": ("counter", "Bytes of frames received."),
    "feedwatch_feed_last_message_timestamp_seconds": ("gauge", "Unix time the last frame arrived (0 = never)."),
    "feedwatch_feed_last_heartbeat_timestamp_seconds": (
        "gauge", "Unix time the connection last showed life (frame, ping or pong; 0 = never)."),
    # A connection's uptime is time() minus this: timestamps first, the age computed by PromQL.
    "feedwatch_feed_connected_since_timestamp_seconds": (
        "gauge", "Unix time the connection's current socket went live; 0 while it is down."),
    "feedwatch_feed_errors_total": ("counter", "Errors, by kind."),
    "feedwatch_feed_rejected_updates_total": ("counter", "Updates rejected by the sanity checks, by reason."),
    "feedwatch_feed_latency_seconds": (
        "histogram", "Venue timestamp to receive, observed once per frame for the frame's oldest event."),
    "feedwatch_feed_symbols": ("gauge", "Symbols per health state (all five states always present)."),
    "feedwatch_feed_subscribed_symbols": ("gauge", "Symbols the feed watches (configured or added at run time)."),
    "feedwatch_feed_acknowledged_symbols": ("gauge", "Symbols whose subscription the venue has confirmed."),
    "feedwatch_feed_market_open": ("gauge", "Whether the feed's market session is open (1) or closed (0)."),
    "feedwatch_feed_healthy": (
        "gauge", "Stream health: connected, fewer than N consecutive errors, updates within the window."),
    "feedwatch_feed_reconnect_attempts_total": ("counter", "Reconnection attempts."),
    "feedwatch_feed_sequence_gaps_total": ("counter", "Gaps seen in per-symbol venue sequence numbers."),
    "feedwatch_feed_symbols_refused_total": (
        "counter", "New symbols refused at run time (trigger files, the watchlist API), by reason: "
                   "invalid_name, feed_limit, exporter_limit."),
    "feedwatch_feed_max_symbols": ("gauge", "The most symbols this feed may watch (max_symbols)."),
    "feedwatch_feed_receive_backlog_bytes": (
        "gauge", "Bytes received on the feed's sockets and not yet processed, sampled every second."),
    # Falling behind (book.LagTracker says exactly how it is measured).
    "feedwatch_feed_processing_lag_seconds": (
        "gauge", "How far behind the venue the exporter's processing of the feed is (latency of what it "
                 "applies above the venue's own delay, while data waits for it); absent without venue timestamps."),
}

# The REST fallback's series: only for feeds with rest.enabled (elsewhere the source is always
# the socket, and two series per symbol would be pure cost).
REST_FAMILIES: dict[str, tuple[str, str]] = {
    "feedwatch_symbol_source": (
        "gauge", "Where the symbol's current price came from: 1 on the source in use (ws: the feed's socket, "
                 "rest: the REST fallback), 0 on the other. Feeds with rest.enabled only."),
    "feedwatch_feed_rest_requests_total": (
        "counter", "REST fallback requests, by result: ok, http_error, rate_limited, timeout, network_error, "
                   "decode_error. Feeds with rest.enabled only."),
    "feedwatch_feed_rest_updates_total": (
        "counter", "Prices the REST fallback applied to the book. Feeds with rest.enabled only."),
    "feedwatch_feed_rest_symbols": (
        "gauge", "Symbols whose current price came from the REST fallback. Feeds with rest.enabled only."),
    "feedwatch_feed_rest_active": (
        "gauge", "Whether the REST fallback is polling now (1: the socket is down, or symbols are stale). "
                 "Feeds with rest.enabled only."),
}

EXPORTER_FAMILIES: dict[str, tuple[str, str]] = {
    "feedwatch_max_symbols": ("gauge", "The most symbols the exporter may watch over every feed (max_symbols)."),
    "feedwatch_watchlist_trigger_files_total": (
        "counter", "Trigger files read, by result: accepted, malformed, invalid_symbol, unknown_feed "
                   "(the last three are moved aside)."),
    "feedwatch_watchlist_api_changes_total": (
        "counter", "Watchlist changes made over the admin API, by action (add, remove) and the credential "
                   "that signed them (token, hmac)."),
}

MARKET_FAMILIES: dict[str, tuple[str, str]] = {
    # Timestamps first: rules compute the time left (``... - time()``); the exporter warns in
    # its log at start-up too (exporter/service.py).
    "feedwatch_market_calendar_end_timestamp_seconds": (
        "gauge", "Unix time the market's session calendar (its holiday table) stops covering; "
                 "after it, holidays read as trading days."),
}

INSTRUMENT_FAMILIES: dict[str, tuple[str, str]] = {
    # Computed at scrape time from the fresh prices of the instruments: config (Book.deviations).
    "feedwatch_instrument_price_deviation_ratio": (
        "gauge", "Deviation of a feed's price of an instrument from the median of its fresh prices across "
                 "feeds (0.01 = 1 % above); NaN while unknown (this price not fresh, or fewer than two are)."),
}


def format_value(value: float) -> str:
    """A sample value in the text format: ``NaN``, ``+Inf``, ``-Inf``, else shortest round-trip.

    Raises (OverflowError, ValueError) for an integer no float can hold: its digits would be
    text Prometheus cannot parse, failing the whole scrape, so the caller skips the sample.
    """
    if value != value:
        return "NaN"
    if value == _INF:
        return "+Inf"
    if value == -_INF:
        return "-Inf"
    if isinstance(value, bool):
        return "1" if value else "0"
    text = repr(value)
    if len(text) > 24 and isinstance(value, int):
        float(value)  # OverflowError past ~1.8e308
    return text


RENDER_ERRORS_HELP = "Samples left out of /metrics because their value could not be rendered, by collector."


class RenderErrors:
    """Samples the collectors had to leave out of a scrape, counted per collector.

    The guard behind "edges sanitize, cores trust": a value that reached a collector and cannot
    be rendered costs its own sample, never the scrape (a 500 would hide every other series).
    Each collector ``register``s its name (so its count starts at 0); ``skipped`` counts and logs,
    once per ``RENDER_ERROR_LOG_INTERVAL`` per collector, with the series and the error.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._logged: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def register(self, collector: str) -> None:
        self.counts.setdefault(collector, 0)

    def skipped(self, collector: str, series: str, exc: BaseException) -> None:
        self.counts[collector] = self.counts.get(collector, 0) + 1
        now = time.monotonic()
        last = self._logged.get(collector)
        if last is not None and now - last < RENDER_ERROR_LOG_INTERVAL:
            self._held[collector] = self._held.get(collector, 0) + 1
            return
        self._logged[collector] = now
        held = self._held.pop(collector, 0)
        more = f" ({held} more since the last report)" if held else ""
        log.error("collector %s: left %s out of /metrics: its value cannot be rendered (%r)%s; "
                  "counted in feedwatch_render_errors_total", collector, series, exc, more,
                  extra={"collector": collector, "series": series, **({"suppressed": held} if held else {})})

    def render(self) -> str:
        name = "feedwatch_render_errors_total"
        return header(name, "counter", RENDER_ERRORS_HELP) + "".join(
            f'{name}{{collector="{escape_label(collector)}"}} {count}\n' for collector, count in self.counts.items())


_BUCKET_LE = tuple(format_value(b) for b in LATENCY_BUCKETS) + ("+Inf",)


# Symbols per chunk of the per-symbol pass: the unit of caching (see BookCollector) and of
# yielding to the event loop (``steps``). 512 symbols take ~0.2-1 ms to render.
CHUNK = 512
# Symbols per block: the unit a chunk's update-driven families (receive and venue timestamps,
# update count, price, frozen) are re-formatted in. A random 1 % of symbols updated touches
# every chunk but few of its blocks: only those are formatted again (issue 14: 1 % updated cost
# more than all updated while the whole chunk was redone). 32 measured best of 8, 16 and 32 over
# the three cases of ``bench.rendergrind`` (smaller blocks: fewer symbols formatted at 1 %, more
# calls and parts for every other case).
BLOCK = 32
_thresholds_of = attrgetter("th")
_learn_of = attrgetter("learn")
_acks_of = attrgetter("acks")   # SymbolState.acknowledged is acks == ACKED, counted in C
# What every chunk's pass reads of every member, gathered in one pass over them (``gather``):
# the acknowledgement, the receive time and the update count (and with a REST fallback, its mark).
_EVERY_PASS = ("acks", "last_update", "updates")
_EVERY_PASS_REST = _EVERY_PASS + ("rest_mark",)
# What the blocks to format again read of their members: the venue stamp and the price (and the
# frozen run, where the frozen check needs the longest).
_REFRESHED = ("last_event", "price")
_REFRESHED_SAME = _REFRESHED + ("same",)
_since_of = attrgetter("since")
_encode_json = msgspec.json.Encoder().encode


def _event_texts(events: tuple) -> tuple[bytes, ...] | None:
    """The venue timestamps' texts in seconds, or None where the fast path does not hold: every
    value present and of one unit (``book.to_seconds``'s division done for all at once). An
    absent value (0) fails every unit's ``low > floor``: no separate search for it."""
    if events and set(map(type, events)) <= {int, float}:
        low, high = min(events), max(events)
        for floor, ceiling, divisor in TIMESTAMP_UNITS:
            if low > floor and high <= ceiling:
                try:
                    return _float_texts(list(map(_truediv, events, repeat(divisor))))
                except Exception:  # noqa: BLE001 - one slipped past the checks: line by line
                    return None
    return None


def _price_texts(prices: tuple) -> tuple[bytes, ...] | None:
    """The prices' texts, or None where the fast path does not hold: every value a finite float
    (a sum of finite floats minus itself is 0; NaN and inf make it NaN)."""
    if set(map(type, prices)) == {float}:
        total = sum(prices)
        if total - total == 0.0:
            return _float_texts(prices)
    return None


def _float_texts(values: tuple | list) -> tuple[bytes, ...]:
    """Finite floats in shortest round-trip form, like ``repr`` but 3-4x cheaper: msgspec's JSON
    encoder formats the whole list in C (``1e16`` where ``repr`` writes ``1e+16``: both parse
    alike; NaN and infinities must be kept out, JSON has no text for them)."""
    return tuple(_encode_json(values)[1:-1].split(b","))


class _Chunk:
    """What one chunk of a feed's symbols rendered last time, to redo only what changed.

    ``layout``: the members the format strings were built for. Per family, format strings of the
    lines (``%.3f``, ``%d``, ``%s`` where the value goes) that one ``fill`` (``fmt % values``,
    compiled: ``exporter/fill.py``) fills with a tuple of the members' values, instead of an
    f-string per line. Staleness and state (computed at every scrape) have one per chunk. The
    families that change only with an update have one per block of ``BLOCK`` members, and their text
    is kept per block: a block where no member's ``updates`` (or receive time) moved keeps its text,
    the others are formatted again (``BookCollector._refresh``). A block whose values cannot all
    take the fast path (a symbol never priced, a value past the book's checks) is formatted line by
    line, each sample guarded; one that left a sample out is in ``bad`` and redone at every scrape,
    so every scrape counts it again."""

    __slots__ = ("layout", "spans", "fmt_updated", "fmt_event", "fmt_staleness", "fmt_state", "fmt_updates",
                 "fmt_price", "fmt_frozen", "frozen_zero", "sources_ws",
                 "last_updates", "states", "counts", "updates_seen", "feed_key", "ths", "uniform", "learns", "bad",
                 "sources_seen",
                 "updated", "event", "state_text", "updates", "price_text", "frozen", "expected", "sources",
                 "rest_count")

    def __init__(self) -> None:
        self.layout: list[SymbolState] = []
        self.spans: list[slice] = []   # each block's members: layout[span]
        self.fmt_staleness = self.fmt_state = self.sources_ws = b""
        self.fmt_updated: list[bytes] = []   # per block, like the texts below
        self.fmt_event: list[bytes] = []
        self.fmt_updates: list[bytes] = []
        self.fmt_price: list[bytes] = []
        self.fmt_frozen: list[bytes] = []    # built on first use (``frozen_format``)
        self.frozen_zero: list[bytes] = []
        self.forget()

    def forget(self) -> None:
        """Redo every family at the next render (members moved, or a slow pass ran)."""
        # Tuples, not lists: a tuple of floats and ints leaves the cyclic GC's lists after its
        # first collection, so 100k symbols' values add nothing to a full (gen 2) pass.
        self.last_updates: tuple[object, ...] | None = None
        self.states: tuple[int, ...] | None = None
        self.counts: tuple[int, ...] = ()
        self.updates_seen: tuple[object, ...] | None = None
        self.feed_key: tuple[object, ...] = ()
        self.ths: tuple[object, ...] | None = None
        self.uniform = False
        self.learns: tuple[object, ...] | None = None
        self.bad: set[int] = set()   # blocks that left a sample out: redone at every scrape
        self.sources_seen: tuple[bool, ...] | None = None
        blocks = len(self.spans)
        # Per block (``spans``): the update-driven families' text.
        self.updated: list[bytes] = [b""] * blocks
        self.event: list[bytes] = [b""] * blocks
        self.updates: list[bytes] = [b""] * blocks
        self.price_text: list[bytes] = [b""] * blocks
        self.frozen: list[bytes] = [b""] * blocks
        self.state_text = self.expected = self.sources = b""
        self.rest_count = 0

    def lay_out(self, members: list[SymbolState]) -> None:
        """The format strings for these members (labels escaped for ``%``). Those rarely needed
        are built on first use (``frozen_format``, ``sources_all_ws``): at 100k symbols each
        format string is ~4 MB kept between scrapes."""
        labels = [s.labels.replace("%", "%%") for s in members]
        n = len(members)
        self.spans = [slice(a, min(a + BLOCK, n)) for a in range(0, n, BLOCK)]

        def lines(name: str, spec: str) -> list[str]:
            return [f"{name}{{{label}}} {spec}\n" for label in labels]

        def blocks(name: str, spec: str) -> list[bytes]:
            text = lines(name, spec)
            return ["".join(text[span]).encode() for span in self.spans]

        self.fmt_updated = blocks("feedwatch_symbol_last_update_timestamp_seconds", "%.3f")
        self.fmt_event = blocks("feedwatch_symbol_last_event_timestamp_seconds", "%s")
        self.fmt_staleness = "".join(lines("feedwatch_symbol_staleness_seconds", "%.3f")).encode()
        self.fmt_state = "".join(lines("feedwatch_symbol_state", "%d")).encode()
        self.fmt_updates = blocks("feedwatch_symbol_updates_total", "%d")
        self.fmt_price = blocks("feedwatch_symbol_price", "%s")
        self.fmt_frozen = []
        self.sources_ws = b""
        zero = [f"feedwatch_symbol_frozen{{{s.labels}}} 0\n" for s in members]
        self.frozen_zero = ["".join(zero[span]).encode() for span in self.spans]
        self.layout = members
        self.forget()

    def frozen_format(self, block: int) -> bytes:
        if not self.fmt_frozen:
            text = [f"feedwatch_symbol_frozen{{{s.labels.replace('%', '%%')}}} %d\n" for s in self.layout]
            self.fmt_frozen = ["".join(text[span]).encode() for span in self.spans]
        return self.fmt_frozen[block]

    def sources_all_ws(self) -> bytes:
        """The source family when no member's price came from the REST fallback."""
        if not self.sources_ws:
            self.sources_ws = "".join([f'feedwatch_symbol_source{{{s.labels},source="ws"}} 1\n'
                                       f'feedwatch_symbol_source{{{s.labels},source="rest"}} 0\n'
                                       for s in self.layout]).encode()
        return self.sources_ws


class BookCollector:
    """Renders a ``Book`` (see the module docstring for the exact lines).

    Incremental, per chunk of ``CHUNK`` symbols and per family (see ``_Chunk``): each family's
    values are gathered in C and compared with the last scrape's; only what moved is formatted
    again, by one ``fill`` of a format string (``fmt % values`` in C, ``exporter/fill.py``; venue
    timestamps that are ints of seconds or milliseconds by ``fill_seconds``, prices and other stamps
    through msgspec's float encoder). The families that change only with an update (timestamps,
    count, price, frozen) are kept per block of ``BLOCK`` symbols and formatted again only in the
    blocks where a member's ``updates`` moved (``_refresh``; the REST source per chunk); learned
    intervals where the sweep moved one (read only in feeds with adaptive thresholds); everything is
    redone where the thresholds (a reload: ``FeedBook.thresholds_generation``) or the feed's session
    changed. Staleness changes with every scrape and is always formatted fresh. The per-symbol text
    is bytes (nothing to encode at a scrape).
    ``steps`` renders in chunks so a server can yield to the event loop between them
    (``exporter/web/app.py``); ``render`` runs them all at once and returns text.
    """

    def __init__(self, book: Book, errors: RenderErrors | None = None) -> None:
        self.book = book
        # Shared with the other collectors of the same /metrics (see RenderErrors).
        self.errors = errors if errors is not None else RenderErrors()
        self.errors.register("book")
        self._chunks: dict[str, list[_Chunk]] = {}   # feed name -> its chunks, in symbol order
        self._ages: tuple[float, ...] = ()   # the chunk in hand's staleness values (``_chunk_pass``)

    def render(self, now: float, ask: Exposition = DEFAULT) -> str:
        """Every family in the text format, or what ``ask`` (a scrape's ``Accept`` and ``name[]``)
        asked for: headers written in its format, only its families; the per-symbol pass, the
        expensive part, runs only if one of its families is wanted."""
        return "".join([part if part.__class__ is str else part.decode()  # type: ignore[union-attr]
                        for part in run_all(self.steps(now, ask))])

    def steps(self, now: float, ask: Exposition = DEFAULT) -> Generator[None, None, list[Part]]:
        """``render`` as a generator: yields after each chunk of symbols, returns the text's parts.

        The book may change between two steps (the feeds keep running): each feed's symbols
        are taken as a list first, so added or removed symbols show from the next scrape."""
        feeds = list(self.book.feeds.values())
        for feed in feeds:
            feed.refresh_market(now)  # a session that just opened restarts the symbol clocks
        rest_feeds = [f for f in feeds if f.config.rest.enabled]
        out: list[Part] = []
        counts: list[dict[int, int]] = []
        sources: list[bytes] | None = None
        rest_counts: dict[str, int] = {}   # feed -> symbols priced by the REST fallback (the symbol pass)
        acked: dict[str, int] = {}   # feed -> acknowledged symbols, counted by the symbol pass
        want_sources = bool(rest_feeds) and ask.wants("feedwatch_symbol_source", REST_FAMILIES[
            "feedwatch_symbol_source"][0])
        if want_sources or ask.wants("feedwatch_feed_symbols", "gauge") or any(
                ask.wants(name, kind) for name, (kind, _) in SYMBOL_FAMILIES.items()):
            sources = []
            counts = yield from self._render_symbols(feeds, now, out, ask, sources, rest_counts, acked)
        self._render_feeds(feeds, now, counts, out, ask, acked)
        self._render_markets(feeds, out, ask)
        self._render_instruments(now, out, ask)
        self._render_rest(rest_feeds, sources, rest_counts, out, ask)
        self._render_exporter(out, ask)
        return out

    def _render_instruments(self, now: float, out: list[Part], ask: Exposition) -> None:
        name = "feedwatch_instrument_price_deviation_ratio"
        if not ask.wants(name, INSTRUMENT_FAMILIES[name][0]):
            return
        out.append(ask.header(name, *INSTRUMENT_FAMILIES[name]))
        for instrument, feed, ratio in self.book.deviations(now):
            out.append(f'{name}{{instrument="{escape_label(instrument)}",feed="{escape_label(feed)}"}} '
                       f'{format_value(ratio)}\n')

    def _render_rest(self, feeds: list[FeedBook], sources: list[bytes] | None, rest_counts: dict[str, int],
                     out: list[Part], ask: Exposition) -> None:
        """The REST fallback's series, for the feeds that have it (none: nothing at all). The
        per-symbol source lines come from the chunked pass (``sources``)."""
        if not feeds:
            return
        name = "feedwatch_symbol_source"
        if ask.wants(name, REST_FAMILIES[name][0]) and sources is not None:
            out.append(ask.header(name, *REST_FAMILIES[name]))
            out.extend(sources)
        name = "feedwatch_feed_rest_requests_total"
        if ask.wants(name, REST_FAMILIES[name][0]):
            out.append(ask.header(name, *REST_FAMILIES[name]))
            for feed in feeds:
                out.extend(f'{name}{{{feed.labels},result="{escape_label(result)}"}} {count}\n'
                           for result, count in feed.rest_requests.items())
        for name, value in (("feedwatch_feed_rest_updates_total", lambda f: f.rest_updates),
                            ("feedwatch_feed_rest_symbols", lambda f: self._rest_symbols(f, rest_counts)),
                            ("feedwatch_feed_rest_active", lambda f: 1 if f.rest_active else 0)):
            if ask.wants(name, REST_FAMILIES[name][0]):
                out.append(ask.header(name, *REST_FAMILIES[name]))
                out.extend(f"{name}{{{feed.labels}}} {value(feed)}\n" for feed in feeds)

    @staticmethod
    def _rest_symbols(feed: FeedBook, rest_counts: dict[str, int]) -> int:
        """``feedwatch_feed_rest_symbols``: counted by this render's per-symbol pass (a walk over
        every symbol only when the scrape asked for none of its families)."""
        count = rest_counts.get(feed.name)
        return count if count is not None else sum(1 for s in feed.symbols.values() if s.from_rest)

    def _render_markets(self, feeds: list[FeedBook], out: list[Part], ask: Exposition) -> None:
        name = "feedwatch_market_calendar_end_timestamp_seconds"
        if not ask.wants(name, MARKET_FAMILIES[name][0]):
            return
        out.append(ask.header(name, *MARKET_FAMILIES[name]))
        seen: set[str] = set()
        for feed in feeds:
            cal = feed.calendar
            end = cal.end_timestamp
            if end is None or cal.name in seen:
                continue
            seen.add(cal.name)
            out.append(f'{name}{{market="{escape_label(cal.name)}"}} {format_value(end)}\n')

    # --- per symbol: one pass over every symbol fills eight families (and the REST source) ------

    def _render_symbols(self, feeds: list[FeedBook], now: float, out: list[Part], ask: Exposition,
                        sources: list[bytes], rest_counts: dict[str, int], acked: dict[str, int]
                        ) -> Generator[None, None, list[dict[int, int]]]:
        # Each family's text, chunk by chunk (joined once at the end, with its header), in
        # SYMBOL_FAMILIES order.
        families: tuple[list[bytes], ...] = ([], [], [], [], [], [], [], [])
        updated, event, staleness, states, updates, prices, frozen, expected = families
        all_counts: list[dict[int, int]] = []
        chunks_by_feed: dict[str, list[_Chunk]] = {}
        # The one family formatted afresh for every symbol at every scrape: skipped when not asked
        # for (``name[]``), the way to derive it in PromQL from the timestamps instead.
        want_staleness = ask.wants("feedwatch_symbol_staleness_seconds", "gauge")
        for feed in feeds:
            counts = dict.fromkeys(STATE_ORDER, 0)
            members_all = list(feed.symbols.values())
            old = self._chunks.get(feed.name, [])
            chunks: list[_Chunk] = []
            rest = feed.config.rest.enabled
            rest_count = 0
            acks = 0
            every_pass = _EVERY_PASS_REST if rest else _EVERY_PASS
            for i in range(0, len(members_all), CHUNK):
                members = members_all[i:i + CHUNK]
                k = i // CHUNK
                chunk = old[k] if k < len(old) else _Chunk()
                chunks.append(chunk)
                columns = None
                try:
                    # Read in one pass while the chunk's symbols are in the CPU's cache: the
                    # acknowledgements counted here (a separate walk over 100,000 scattered
                    # symbols for this one gauge took ~11 ms per scrape), the rest for the pass.
                    columns = gather(members, every_pass)
                    if chunk.layout != members:
                        chunk.lay_out(members)
                    self._chunk_pass(feed, chunk, members, columns, now, counts, want_staleness, rest)
                except Exception:  # the guard: per symbol, with each sample's own check
                    acks += (countOf(map(_acks_of, members), ACKED) if columns is None
                             else columns[0].count(ACKED))
                    self._chunk_slow(feed, members, now, counts, families, sources if rest else None)
                    chunk.layout = []
                    if rest:
                        rest_count += sum(1 for s in members if s.rest_mark == s.updates)   # from_rest
                    yield
                    continue
                acks += columns[0].count(ACKED)
                updated.extend(chunk.updated)   # per block
                event.extend(chunk.event)
                if want_staleness:
                    staleness.append(fill(chunk.fmt_staleness, self._ages))
                states.append(chunk.state_text)
                updates.extend(chunk.updates)
                prices.extend(chunk.price_text)
                frozen.extend(chunk.frozen)
                expected.append(chunk.expected)
                if rest:
                    sources.append(chunk.sources)
                    rest_count += chunk.rest_count
                yield
            chunks_by_feed[feed.name] = chunks
            all_counts.append(counts)
            acked[feed.name] = acks
            if rest:
                rest_counts[feed.name] = rest_count
        self._chunks = chunks_by_feed   # removed feeds' chunks go
        for (name, (kind, help_text)), lines in zip(SYMBOL_FAMILIES.items(), families):
            if not ask.wants(name, kind):
                continue
            out.append(ask.header(name, kind, help_text).encode())   # bytes like its lines: one join
            out.extend(lines)
        return all_counts

    def _chunk_pass(self, feed: FeedBook, chunk: _Chunk, members: list[SymbolState], columns: tuple,
                    now: float, counts: dict[int, int], want_staleness: bool, rest: bool) -> None:
        """Bring one chunk's families up to date: each family's values are gathered in C
        (``gather``: ``columns`` holds the members' ``_EVERY_PASS`` values) and compared with the
        last render's; only a family whose values moved is formatted again, by one ``fill`` of
        its format string. Ages (for staleness, kept in ``self._ages``) and states are computed
        for every symbol at every scrape, as ``FeedBook.staleness`` and ``classify`` do, without
        a Python loop in the common case."""
        n = len(members)
        last_updates, updates = columns[1], columns[2]
        # --- ages and states (FeedBook.reference_time, staleness, classify)
        refs = last_updates
        low = min(refs)
        if low == 0.0:   # never updated: the subscription (or acknowledgement) is the reference
            refs = tuple([u or s for u, s in zip(last_updates, map(_since_of, members))])
            low = min(refs)
        start = feed.session_start
        if low < start:
            refs = tuple([ref if ref > start else start for ref in refs])
        ages = tuple(map(_sub, repeat(now, n), refs))
        if want_staleness:
            self._ages = ages if min(ages) >= 0.0 else tuple([age if age > 0.0 else 0.0 for age in ages])
        # Learned intervals exist only in a feed where some symbol's thresholds are adaptive
        # (``FeedBook.adaptive``; a reload switching it off clears them): elsewhere not read.
        adaptive = feed.adaptive
        learns = tuple(map(_learn_of, members)) if adaptive else ()
        # What is_frozen and sources read, and the thresholds' generation: the members' ``th``
        # are gathered again only when a reload gave new ones (or the members changed).
        feed_key = (feed.market_open, feed.session_start, rest, feed.thresholds_generation)
        if feed_key != chunk.feed_key or chunk.ths is None:
            chunk.forget()
            ths = tuple(map(_thresholds_of, members))
            chunk.feed_key, chunk.ths = feed_key, ths
            chunk.uniform = ths.count(ths[0]) == n   # one thresholds object for the chunk: the common case
        ths = chunk.ths
        th = ths[0]
        uniform = chunk.uniform
        if not feed.market_open:
            state_list: tuple[int, ...] = (CLOSED,) * n
        elif adaptive and float in set(map(type, learns)):
            # Some symbol's interval is learned (adaptive thresholds): its limits are its own.
            limits = feed.limits
            classified = []
            for age, s in zip(ages, members):
                degraded, stale, critical = limits(s)
                classified.append(HEALTHY if age < degraded else DEGRADED if age < stale
                                  else STALE if age < critical else CRITICAL)
            state_list = tuple(classified)
        elif uniform and th.degraded <= th.stale <= th.critical:
            # HEALTHY 0 below degraded, DEGRADED 1 below stale, ...: how many limits the age reached.
            state_list = tuple(map(bisect_right, repeat((th.degraded, th.stale, th.critical), n), ages))
        else:
            state_list = tuple([HEALTHY if age < t.degraded else DEGRADED if age < t.stale  # type: ignore[attr-defined]
                                else STALE if age < t.critical else CRITICAL  # type: ignore[attr-defined]
                                for age, t in zip(ages, ths)])
        if state_list != chunk.states:
            chunk.states = state_list
            chunk.state_text = fill(chunk.fmt_state, state_list)
            chunk.counts = tuple(state_list.count(state) for state in STATE_ORDER)
        for state, count in zip(STATE_ORDER, chunk.counts):
            counts[state] += count
        # --- the families that change with an update. A symbol's ``updates`` only grows, and
        # grows with every write of its price, timestamps, frozen run or REST mark: only the
        # blocks where a member's count (or receive time) moved are formatted again.
        if learns != chunk.learns:
            chunk.expected, ok = self._expected(members, learns)
            chunk.learns = learns if ok else None
        seen, seen_updated = chunk.updates_seen, chunk.last_updates
        spans = chunk.spans
        blocks = len(spans)
        if seen is None or seen_updated is None:
            dirty: Sequence[int] = range(blocks)
        elif updates == seen and last_updates == seen_updated:
            if not chunk.bad:
                return
            dirty = sorted(chunk.bad)
        else:   # the blocks whose counts moved (compared in C); the others' receive times too
            dirty = list(compress(range(blocks), map(_ne, map(updates.__getitem__, spans),
                                                     map(seen.__getitem__, spans))))
            if len(dirty) < blocks:
                dirty = sorted(chunk.bad.union(dirty, compress(range(blocks), map(
                    _ne, map(last_updates.__getitem__, spans), map(seen_updated.__getitem__, spans)))))
        chunk.updates_seen, chunk.last_updates = updates, last_updates
        if dirty:
            self._refresh(feed, chunk, members, dirty, updates, last_updates, uniform, th)
        if rest:   # --- REST source (SymbolState.from_rest), for the whole chunk
            from_rest = tuple(map(_eq, columns[3], updates))
            if from_rest != chunk.sources_seen:
                chunk.sources_seen = from_rest
                chunk.rest_count = from_rest.count(True)
                chunk.sources = chunk.sources_all_ws() if not chunk.rest_count else "".join([
                    f'feedwatch_symbol_source{{{s.labels},source="ws"}} {0 if r else 1}\n'
                    f'feedwatch_symbol_source{{{s.labels},source="rest"}} {1 if r else 0}\n'
                    for s, r in zip(members, from_rest)]).encode()

    def _refresh(self, feed: FeedBook, chunk: _Chunk, members: list[SymbolState], dirty: Sequence[int],
                 updates: tuple, last_updates: tuple, uniform: bool, th: Any) -> None:
        """Format the ``dirty`` blocks' update-driven families again. Their members' values are
        gathered, checked and (floats) encoded at once, then each block is filled by one ``fill``
        per family, the blocks mapped in C; a family whose values cannot all take the fast path
        goes line by line, per block (``_guarded_lines``)."""
        if len(dirty) == len(chunk.spans):   # every block: the chunk's values as they are
            every = True
            picked = members
            updated_values, update_counts = last_updates, updates
            spans = chunk.spans
            fmt_updated, fmt_updates, fmt_event, fmt_price = (
                chunk.fmt_updated, chunk.fmt_updates, chunk.fmt_event, chunk.fmt_price)
        else:   # a few blocks: their members' values one after the other
            every = False
            picked_spans = [chunk.spans[j] for j in dirty]
            picked = list(chain.from_iterable(map(members.__getitem__, picked_spans)))
            updated_values = tuple(chain.from_iterable(map(last_updates.__getitem__, picked_spans)))
            update_counts = tuple(chain.from_iterable(map(updates.__getitem__, picked_spans)))
            spans, at = [], 0
            for span in picked_spans:   # where each picked block lies among the picked values
                spans.append(slice(at, at + span.stop - span.start))
                at += span.stop - span.start
            fmt_updated, fmt_updates, fmt_event, fmt_price = (
                [fmts[j] for j in dirty] for fmts in (chunk.fmt_updated, chunk.fmt_updates, chunk.fmt_event,
                                                      chunk.fmt_price))
        # The frozen run too where the frozen check below needs the longest (FeedBook.is_frozen).
        want_same = feed.market_open and uniform and th.frozen.updates
        refreshed = gather(picked, _REFRESHED_SAME if want_same else _REFRESHED)
        events, prices = refreshed[0], refreshed[1]
        # Venue stamps that are ints of seconds or milliseconds (every venue module's; a generic
        # feed's may be float seconds) are written in C straight from the raw stamps
        # (``fill_seconds``; an absent one, 0, leaves its line out). If any block holds another
        # value (microseconds, a float), or without the extension: the division and msgspec's
        # text below for them all, the same text.
        event_blocks = list(map(fill_seconds, fmt_event, map(events.__getitem__, spans))) if fill_seconds else None
        if event_blocks is not None and None in event_blocks:
            event_blocks = None
        event_texts = _event_texts(events) if event_blocks is None else None
        price_texts = _price_texts(prices)
        texts = [list(map(fill, fmt_updated, map(updated_values.__getitem__, spans))),
                 list(map(fill, fmt_updates, map(update_counts.__getitem__, spans)))]
        bad: set[int] = set()
        for blocks, values, fmts, valid, name, present, text in (
                (event_blocks, event_texts, fmt_event, events, "feedwatch_symbol_last_event_timestamp_seconds",
                 bool, lambda raw: format_value(to_seconds(raw))),   # absent (0) until the venue gave one
                (None, price_texts, fmt_price, prices, "feedwatch_symbol_price",
                 lambda price: price == price, format_value)):      # NaN: never priced, no sample
            if blocks is not None:
                texts.append(blocks)
                continue
            if values is not None:
                texts.append(list(map(fill, fmts, map(values.__getitem__, spans))))
                continue
            lines = []
            for j, span in zip(dirty, spans):   # the fallback: line by line, each sample guarded
                block, ok = self._guarded_lines(name, members[chunk.spans[j]], valid[span], present, text)
                lines.append(block)
                if not ok:
                    bad.add(j)
            texts.append(lines)
        # --- detectors: frozen (FeedBook.is_frozen: updates, thresholds and the session, which
        # forget the chunk when they change)
        if (not feed.market_open or (uniform and not th.frozen.updates)
                or (want_same and max(refreshed[2]) < th.frozen.updates)):
            texts.append([chunk.frozen_zero[j] for j in dirty])   # nobody repeated enough
        else:
            is_frozen = feed.is_frozen
            texts.append([fill(chunk.frozen_format(j), tuple([
                1 if s.same >= s.th.frozen.updates and is_frozen(s) else 0 for s in members[chunk.spans[j]]]))
                for j in dirty])
        families = (chunk.updated, chunk.updates, chunk.event, chunk.price_text, chunk.frozen)
        if every:
            for family, new in zip(families, texts):
                family[:] = new
            chunk.bad = bad
        else:
            for family, new in zip(families, texts):
                for j, block in zip(dirty, new):
                    family[j] = block
            chunk.bad = (chunk.bad - set(dirty)) | bad

    def _expected(self, members: list[SymbolState], learns: tuple) -> tuple[bytes, bool]:
        """The learned intervals' lines (``FeedBook.expected_interval``), for members that have one."""
        if float not in set(map(type, learns)):
            return b"", True
        return self._guarded_lines("feedwatch_symbol_expected_interval_seconds", members, learns,
                                   lambda learned: learned.__class__ is float,
                                   lambda learned: format_value(math.exp(learned)))

    def _guarded_lines(self, name: str, members: list[SymbolState], values: Sequence[object],
                       present: Callable[[object], bool], text: Callable[[Any], str]) -> tuple[bytes, bool]:
        """``name``'s lines one by one, for the members whose value is ``present``, each guarded: a
        value ``text`` cannot format is left out and counted (``RenderErrors``). The fast paths'
        fallback; returns the lines and whether none was left out."""
        lines = []
        ok = True
        for s, value in zip(members, values):
            if present(value):
                try:
                    lines.append(f"{name}{{{s.labels}}} {text(value)}\n")
                except Exception as exc:
                    self.errors.skipped("book", f"{name}{{{s.labels}}}", exc)
                    ok = False
        return "".join(lines).encode(), ok

    def _chunk_slow(self, feed: FeedBook, members: list[SymbolState], now: float, counts: dict[int, int],
                    families: tuple[list[str], ...], sources_out: list[Part] | None) -> None:
        """A chunk where the fast pass raised: every symbol through the book's own methods, each
        sample guarded (what cannot be rendered is left out and counted), nothing cached."""
        updated, event, staleness, states, updates, prices, frozen, expected = ([] for _ in range(8))
        sources: list[str] = []
        for s in members:
            labels = s.labels
            try:
                state = feed.classify(s, now)
                age = feed.staleness(s, now)
                is_frozen = feed.is_frozen(s)
                from_rest = s.from_rest
            except Exception as exc:
                self.errors.skipped("book", f"every series of {{{labels}}}", exc)
                continue
            counts[state] += 1
            updated.append(f"feedwatch_symbol_last_update_timestamp_seconds{{{labels}}} {s.last_update:.3f}\n")
            if s.last_event:
                try:
                    event.append(f"feedwatch_symbol_last_event_timestamp_seconds{{{labels}}} {s.event_time!r}\n")
                except Exception as exc:
                    self.errors.skipped("book", f"feedwatch_symbol_last_event_timestamp_seconds{{{labels}}}", exc)
            staleness.append(f"feedwatch_symbol_staleness_seconds{{{labels}}} {age:.3f}\n")
            states.append(f"feedwatch_symbol_state{{{labels}}} {state}\n")
            updates.append(f"feedwatch_symbol_updates_total{{{labels}}} {s.updates}\n")
            price = s.price
            if price == price:
                try:
                    prices.append(f"feedwatch_symbol_price{{{labels}}} {format_value(price)}\n")
                except Exception as exc:
                    self.errors.skipped("book", f"feedwatch_symbol_price{{{labels}}}", exc)
            frozen.append(f"feedwatch_symbol_frozen{{{labels}}} {1 if is_frozen else 0}\n")
            interval = feed.expected_interval(s)
            if interval is not None:
                try:
                    expected.append(f"feedwatch_symbol_expected_interval_seconds{{{labels}}} "
                                    f"{format_value(interval)}\n")
                except Exception as exc:
                    self.errors.skipped("book", f"feedwatch_symbol_expected_interval_seconds{{{labels}}}", exc)
            r = 1 if from_rest else 0
            sources.append(f'feedwatch_symbol_source{{{labels},source="ws"}} {1 - r}\n'
                           f'feedwatch_symbol_source{{{labels},source="rest"}} {r}\n')
        for family, lines in zip(families, (updated, event, staleness, states, updates, prices, frozen, expected)):
            family.append("".join(lines).encode())
        if sources_out is not None:
            sources_out.append("".join(sources).encode())

    # --- per feed -----------------------------------------------------------------------------

    def _render_feeds(self, feeds: list[FeedBook], now: float, counts: list[dict[int, int]],
                      out: list[Part], ask: Exposition, acked: dict[str, int]) -> None:
        def family(name: str, lines: Callable[[FeedBook, int], Iterable[str]]) -> None:
            kind, help_text = FEED_FAMILIES[name]
            if not ask.wants(name, kind):
                return
            out.append(ask.header(name, kind, help_text))
            for i, feed in enumerate(feeds):
                try:
                    out.extend(list(lines(feed, i)))  # whole or not at all
                except Exception as exc:
                    self.errors.skipped("book", f"{name}{{{feed.labels}}}", exc)

        def simple(name: str, value: Callable[[FeedBook], float]) -> None:
            family(name, lambda feed, _: (f"{name}{{{feed.labels}}} {format_value(value(feed))}\n",))

        def by_label(name: str, label: str, values: Callable[[FeedBook], dict[str, int]]) -> None:
            family(name, lambda feed, _: (
                f'{name}{{{feed.labels},{label}="{escape_label(key)}"}} {format_value(count)}\n'
                for key, count in values(feed).items()))

        family("feedwatch_feed_info", lambda feed, _: (
            f'feedwatch_feed_info{{{feed.labels},kind="{escape_label(feed.config.kind)}",'
            f'market="{escape_label(feed.calendar.name)}"}} 1\n',))
        family("feedwatch_feed_up", lambda feed, _: (
            f"feedwatch_feed_up{{{conn.labels}}} {1 if conn.up else 0}\n"
            for conn in feed.connections.values()) if feed.connections else (
            f'feedwatch_feed_up{{{feed.labels},connection="0"}} 0\n',))
        simple("feedwatch_feed_connects_total", lambda feed: feed.connects)
        by_label("feedwatch_feed_disconnects_total", "reason", lambda feed: feed.disconnects)
        by_label("feedwatch_feed_messages_total", "kind", lambda feed: feed.messages)
        simple("feedwatch_feed_bytes_total", lambda feed: feed.bytes)
        simple("feedwatch_feed_last_message_timestamp_seconds", lambda feed: feed.last_message)
        family("feedwatch_feed_last_heartbeat_timestamp_seconds", lambda feed, _: (
            f"feedwatch_feed_last_heartbeat_timestamp_seconds{{{conn.labels}}} {format_value(conn.last_heartbeat)}\n"
            for conn in feed.connections.values()) if feed.connections else (
            f'feedwatch_feed_last_heartbeat_timestamp_seconds{{{feed.labels},connection="0"}} 0.0\n',))
        family("feedwatch_feed_connected_since_timestamp_seconds", lambda feed, _: (
            f"feedwatch_feed_connected_since_timestamp_seconds{{{conn.labels}}} "
            f"{format_value(conn.connected_at if conn.up else 0.0)}\n"
            for conn in feed.connections.values()) if feed.connections else (
            f'feedwatch_feed_connected_since_timestamp_seconds{{{feed.labels},connection="0"}} 0.0\n',))
        by_label("feedwatch_feed_errors_total", "kind", lambda feed: feed.errors)
        by_label("feedwatch_feed_rejected_updates_total", "reason", lambda feed: feed.rejected)
        family("feedwatch_feed_latency_seconds", lambda feed, _: _histogram_lines(feed))
        family("feedwatch_feed_symbols", lambda feed, i: (
            f'feedwatch_feed_symbols{{{feed.labels},state="{STATE_NAMES[state]}"}} {counts[i][state]}\n'
            for state in STATE_ORDER))
        simple("feedwatch_feed_subscribed_symbols", lambda feed: len(feed.symbols))
        simple("feedwatch_feed_acknowledged_symbols",   # from the symbol pass when it ran
               lambda feed: acked[feed.name] if feed.name in acked
               else countOf(map(_acks_of, feed.symbols.values()), ACKED))
        simple("feedwatch_feed_market_open", lambda feed: 1 if feed.market_open else 0)
        simple("feedwatch_feed_healthy", lambda feed: 1 if feed.is_healthy(now) else 0)
        simple("feedwatch_feed_reconnect_attempts_total", lambda feed: feed.reconnect_attempts)
        simple("feedwatch_feed_sequence_gaps_total", lambda feed: feed.sequence_gaps)
        by_label("feedwatch_feed_symbols_refused_total", "reason", lambda feed: feed.refused)
        simple("feedwatch_feed_max_symbols", lambda feed: feed.config.max_symbols)
        simple("feedwatch_feed_receive_backlog_bytes", lambda feed: feed.lag.backlog)
        family("feedwatch_feed_processing_lag_seconds", lambda feed, _: (
            f"feedwatch_feed_processing_lag_seconds{{{feed.labels}}} {format_value(feed.lag.value)}\n",)
            if feed.lag.value is not None else ())

    def _render_exporter(self, out: list[Part], ask: Exposition) -> None:
        """Exporter-wide: the symbol cap and the run-time watchlist's counters."""
        book = self.book
        name = "feedwatch_max_symbols"
        if ask.wants(name, EXPORTER_FAMILIES[name][0]):
            out.append(ask.header(name, *EXPORTER_FAMILIES[name]))
            out.append(f"{name} {book.max_symbols}\n")
        name = "feedwatch_watchlist_trigger_files_total"
        if ask.wants(name, EXPORTER_FAMILIES[name][0]):
            out.append(ask.header(name, *EXPORTER_FAMILIES[name]))
            out.extend(f'{name}{{result="{result}"}} {count}\n' for result, count in book.trigger_files.items())
        name = "feedwatch_watchlist_api_changes_total"
        if ask.wants(name, EXPORTER_FAMILIES[name][0]):
            out.append(ask.header(name, *EXPORTER_FAMILIES[name]))
            out.extend(f'{name}{{action="{action}",credential="{credential}"}} {count}\n'
                       for (action, credential), count in book.watchlist_changes.items())


def histogram_lines(name: str, labels: str, bucket_le: Sequence[str], counts: Sequence[int],
                    total_sum: float) -> list[str]:
    """A histogram's samples from per-bucket (not cumulative) counts; ``bucket_le`` ends in +Inf."""
    lines = []
    total = 0
    for le, count in zip(bucket_le, counts):
        total += count
        lines.append(f'{name}_bucket{{{labels},le="{le}"}} {total}\n')
    lines.append(f"{name}_sum{{{labels}}} {format_value(total_sum)}\n")
    lines.append(f"{name}_count{{{labels}}} {total}\n")
    return lines


def _histogram_lines(feed: FeedBook) -> list[str]:
    return histogram_lines("feedwatch_feed_latency_seconds", feed.labels, _BUCKET_LE,
                           feed.latency_counts, feed.latency_sum)
