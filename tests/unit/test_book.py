"""The book and health model: state classified at read time from an injected clock, no sleeping."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import ClassVar

import pytest

from exporter.book import (
    CLOSED, CRITICAL, DEGRADED, HEALTHY, STALE, TIMESTAMP_CEILING, TIMESTAMP_FLOOR, Book, LATENCY_BUCKETS,
    to_seconds,
)
from exporter.config import load_data
from exporter.markets import NEW_YORK


@dataclass
class T:  # a trade as an adapter's decoded struct looks to the book
    symbol: str
    price: float
    ts: int = 0
    is_quote: ClassVar[bool] = False


@dataclass
class Q:
    symbol: str
    bid: float
    ask: float
    ts: int = 0
    is_quote: ClassVar[bool] = True


def make_book(clock, **feed):
    spec = {"name": "stocks", "kind": "polygon", "url": "ws://x", "symbols": ["AAPL", "MSFT", "PMN"]}
    spec.update(feed)
    config = load_data({"thresholds": {"degraded": "180s", "stale": "5m", "critical": "1h"}, "feeds": [spec]})
    return Book(config.feeds, clock.time())


def prime(feed, symbol, price=100.0):
    """Give a symbol its confirmed baseline (two agreeing prints: two accepted updates)."""
    feed.apply([T(symbol, price), T(symbol, price)], feed.started_at)


def test_state_moves_through_every_threshold(clock):
    feed = make_book(clock).feed("stocks")
    prime(feed, "AAPL")
    aapl = feed.symbols["AAPL"]
    expected = [(0, HEALTHY), (179.9, HEALTHY), (180, DEGRADED), (299.9, DEGRADED), (300, STALE),
                (3599, STALE), (3600, CRITICAL)]
    for offset, state in expected:
        now = aapl.last_update + offset
        assert feed.classify(aapl, now) == state, offset
        assert feed.staleness(aapl, now) == pytest.approx(offset)


def test_update_resets_staleness(clock):
    feed = make_book(clock).feed("stocks")
    prime(feed, "AAPL")
    later = clock.advance(400)
    assert feed.classify(feed.symbols["AAPL"], later) == STALE
    feed.apply([T("AAPL", 101.0)], later)
    assert feed.classify(feed.symbols["AAPL"], later) == HEALTHY
    assert feed.symbols["AAPL"].price == 101.0 and feed.symbols["AAPL"].updates == 3


def test_per_symbol_override_inherits_the_rest(clock):
    feed = make_book(clock, symbol_thresholds={"PMN": {"stale": "15m"}}).feed("stocks")
    pmn, aapl = feed.symbols["PMN"], feed.symbols["AAPL"]
    assert (pmn.th.degraded, pmn.th.stale, pmn.th.critical) == (180, 900, 3600)
    now = clock.advance(600)
    assert feed.classify(pmn, now) == DEGRADED
    assert feed.classify(aapl, now) == STALE


def test_feed_override_applies_to_every_symbol(clock):
    feed = make_book(clock, thresholds={"degraded": "2s", "stale": "4s"}).feed("stocks")
    now = clock.advance(3)
    assert {feed.classify(s, now) for s in feed.symbols.values()} == {DEGRADED}


def test_never_updated_symbol_counts_from_acknowledgement(clock):
    feed = make_book(clock).feed("stocks")
    msft = feed.symbols["MSFT"]
    clock.advance(250)  # subscription took a while to be acknowledged
    feed.acknowledge(["MSFT"], clock.time())
    assert feed.staleness(msft, clock.time()) == 0
    # A later re-acknowledgement (after a reconnect) must not restart the clock again.
    clock.advance(200)
    feed.unacknowledge(["MSFT"])
    feed.acknowledge(["MSFT"], clock.time())
    assert feed.staleness(msft, clock.time()) == 200
    assert feed.classify(msft, clock.time()) == DEGRADED


def test_never_acknowledged_symbol_counts_from_request(clock):
    feed = make_book(clock).feed("stocks")
    assert feed.classify(feed.symbols["MSFT"], clock.advance(301)) == STALE


def test_closed_market_and_session_open_restart(clock):
    # Friday 2026-11-20 15:00 New York: open. Feed set to the regular US session.
    friday = dt.datetime(2026, 11, 20, 15, 0, tzinfo=NEW_YORK).timestamp()
    clock.set(friday)
    feed = make_book(clock, market="us-equities").feed("stocks")
    prime(feed, "AAPL")
    aapl = feed.symbols["AAPL"]
    assert feed.refresh_market(clock.time()) and feed.classify(aapl, clock.time()) == HEALTHY
    # Saturday: closed, whatever the staleness.
    clock.set(friday + 86400)
    feed.refresh_market(clock.time())
    assert feed.classify(aapl, clock.time()) == CLOSED
    # Monday 09:30:10: the session just opened; yesterday's last trade does not make it critical.
    monday_open = dt.datetime(2026, 11, 23, 9, 30, 0, tzinfo=NEW_YORK).timestamp()
    clock.set(monday_open + 10)
    feed.refresh_market(clock.time())
    assert feed.classify(aapl, clock.time()) == HEALTHY
    assert feed.staleness(aapl, clock.time()) == 0  # the session start is observed at the first look
    clock.advance(200)
    assert feed.classify(aapl, clock.time()) == DEGRADED


def test_holiday_is_closed(clock):
    thanksgiving = dt.datetime(2026, 11, 26, 11, 0, tzinfo=NEW_YORK).timestamp()
    clock.set(thanksgiving)
    feed = make_book(clock, market="us-equities").feed("stocks")
    assert feed.market_open is False
    assert feed.state_counts(clock.time())[CLOSED] == 3


def test_state_counts_cover_every_state(clock):
    feed = make_book(clock).feed("stocks")
    prime(feed, "AAPL")
    clock.advance(200)
    counts = feed.state_counts(clock.time())
    assert counts == {HEALTHY: 0, DEGRADED: 3, STALE: 0, CRITICAL: 0, CLOSED: 0}


def test_sweep_reports_each_transition_once(clock):
    book = make_book(clock)
    feed = book.feed("stocks")
    seen = []
    book.listeners.append(seen.append)
    prime(feed, "AAPL")
    assert book.sweep(clock.time()) == []
    clock.advance(181)
    changes = book.sweep(clock.time())
    assert sorted((c.symbol, c.old, c.new) for c in changes) == [
        ("AAPL", HEALTHY, DEGRADED), ("MSFT", HEALTHY, DEGRADED), ("PMN", HEALTHY, DEGRADED)]
    assert seen == changes
    assert book.sweep(clock.time()) == []  # no change, no event
    feed.apply([T("AAPL", 100.5)], clock.time())
    [recovered] = book.sweep(clock.time())
    assert (recovered.symbol, recovered.old, recovered.new) == ("AAPL", DEGRADED, HEALTHY)
    assert "AAPL on stocks: degraded -> healthy" in recovered.describe()


async def test_the_sweep_gives_the_event_loop_back_between_chunks(clock, monkeypatch):
    """The service sweeps every second: over 100k symbols a pass at once is a ~100 ms stall
    (issue 14), so it runs in slices; the loop runs in between, and the result is the same."""
    import asyncio

    from exporter import book as book_module, slices

    monkeypatch.setattr(book_module, "SWEEP_CHUNK", 1)
    monkeypatch.setattr(slices, "SLICE", 0.0)
    book = make_book(clock)
    prime(book.feed("stocks"), "AAPL")
    clock.advance(181)
    sweep = asyncio.ensure_future(slices.run_sliced(book.sweep_steps(clock.time())))
    seen_during = []
    for _ in range(2):
        await asyncio.sleep(0)
        seen_during.append(sweep.done())
    changes = await sweep
    assert seen_during == [False, False]
    assert sorted(c.symbol for c in changes) == ["AAPL", "MSFT", "PMN"]
    assert book.sweep(clock.time()) == []   # the sliced sweep recorded the new states


# --- the garbage-first-print guard ------------------------------------------------------------

def test_first_print_is_held_until_confirmed(clock):
    feed = make_book(clock).feed("stocks")
    feed.apply([T("AAPL", 16.10)], clock.time())
    aapl = feed.symbols["AAPL"]
    assert math.isnan(aapl.price) and aapl.updates == 0 and aapl.ref == 16.10
    feed.apply([T("AAPL", 16.12)], clock.time())
    # Both prints are accepted (the held one retroactively); the newer price is kept.
    assert aapl.price == 16.12 and aapl.updates == 2
    assert feed.rejected["first_print_unconfirmed"] == 0


def test_garbage_first_print_never_becomes_the_baseline(clock):
    feed = make_book(clock).feed("stocks")
    aapl = feed.symbols["AAPL"]
    # $1.64 print on a $16 stock, then the real prints.
    feed.apply([T("AAPL", 1.64), T("AAPL", 16.05), T("AAPL", 16.07)], clock.time())
    assert aapl.price == 16.07 and aapl.updates == 2   # 16.05, confirmed by 16.07, and 16.07
    assert feed.rejected["first_print_unconfirmed"] == 1  # 1.64


def test_first_print_far_from_quote_mid_is_dropped(clock):
    feed = make_book(clock).feed("stocks")
    aapl = feed.symbols["AAPL"]
    feed.apply([Q("AAPL", 15.98, 16.02), T("AAPL", 1.64), T("AAPL", 16.01)], clock.time())
    assert aapl.price == 16.01 and aapl.updates == 2  # the quote and the good print
    assert feed.rejected["first_print_unconfirmed"] == 1
    # Once a print is accepted the guard is off: later prints are taken as they come.
    feed.apply([T("AAPL", 17.5)], clock.time())
    assert aapl.price == 17.5


def test_a_print_held_when_a_quote_arrives_is_counted_as_dropped(clock):
    feed = make_book(clock).feed("stocks")
    aapl = feed.symbols["AAPL"]
    feed.apply([T("AAPL", 16.00), Q("AAPL", 15.98, 16.02), T("AAPL", 16.01)], clock.time())
    assert aapl.updates == 2 and feed.rejected["first_print_unconfirmed"] == 1


@pytest.mark.parametrize("seed", range(20))
def test_every_print_is_counted_exactly_once(clock, seed):
    """Nothing is lost or counted twice by the guard: accepted + rejected + still held = sent."""
    import random

    rng = random.Random(seed)
    feed = make_book(clock).feed("stocks")
    sent = 0
    for _ in range(rng.randint(1, 12)):
        frame = []
        for _ in range(rng.randint(1, 4)):
            price = rng.choice([16.0, 16.02, 1.6, 40.0, 16.05])
            frame.append(Q("AAPL", price - 0.01, price + 0.01) if rng.random() < 0.25 else T("AAPL", price))
        sent += len(frame)
        feed.apply(frame, clock.time())
    aapl = feed.symbols["AAPL"]
    held = 1 if aapl.guard and not math.isnan(aapl.ref) else 0  # a first print held back
    assert aapl.updates + sum(feed.rejected.values()) + held == sent


def test_guard_tolerance_is_configurable(clock):
    feed = make_book(clock, first_print_max_deviation=0.01).feed("stocks")
    feed.apply([Q("AAPL", 99.0, 101.0), T("AAPL", 102.0)], clock.time())
    assert feed.symbols["AAPL"].price == 100.0
    assert feed.rejected["first_print_unconfirmed"] == 1


# --- validation -------------------------------------------------------------------------------

def test_invalid_prices_are_counted_by_reason(clock):
    feed = make_book(clock).feed("stocks")
    prime(feed, "AAPL")
    feed.apply([T("AAPL", 0.0), T("AAPL", -1.0), T("AAPL", math.nan), T("AAPL", math.inf),
                Q("AAPL", 10.0, 9.0), Q("AAPL", math.nan, 9.0), T("NOPE", 5.0), Q("NOPE", 1.0, 2.0)],
               clock.time())
    assert feed.rejected == {"nonpositive_price": 2, "nan_price": 2, "infinite_price": 1,
                             "crossed_quote": 1, "first_print_unconfirmed": 0, "unknown_symbol": 2,
                             "implausible_timestamp": 0}
    assert feed.symbols["AAPL"].price == 100.0 and feed.symbols["AAPL"].updates == 2


def test_one_sided_quote_uses_its_side(clock):
    feed = make_book(clock).feed("stocks")
    feed.apply([Q("AAPL", 0.0, 50.0)], clock.time())
    assert feed.symbols["AAPL"].price == 50.0


def test_record_path_matches_apply(clock):
    feed = make_book(clock).feed("stocks")
    assert feed.record("AAPL", 10.0, 1_700_000_000_000, clock.time()) is False  # held back
    assert feed.record("AAPL", 10.1, 1_700_000_000_000, clock.time()) is True
    assert feed.record("MSFT", 5.0, 0, clock.time(), quote=True) is True  # a mid needs no guard
    assert feed.record("AAPL", -1.0, 0, clock.time()) is False
    assert feed.symbols["AAPL"].event_time == 1_700_000_000.0
    assert feed.rejected["nonpositive_price"] == 1 and feed.messages["trade"] == 3


def test_latency_histogram_observes_oldest_event_per_frame(clock):
    feed = make_book(clock).feed("stocks")
    prime(feed, "AAPL")
    now = 1_700_000_010.0
    feed.apply([T("AAPL", 100.0, 1_700_000_009_900), T("AAPL", 100.0, 1_700_000_009_000)], now)
    assert sum(feed.latency_counts) == 1
    assert feed.latency_sum == pytest.approx(1.0)
    assert feed.latency_counts[LATENCY_BUCKETS.index(1.0)] == 1
    # Exchange clocks ahead of ours count as zero latency, not negative.
    feed.apply([T("AAPL", 100.0, 1_700_000_020_000)], now)
    assert feed.latency_counts[0] == 1


def test_frame_without_exchange_time_observes_no_latency(clock):
    feed = make_book(clock).feed("stocks")
    prime(feed, "AAPL")
    before = sum(feed.latency_counts)
    feed.apply([T("AAPL", 100.0, 0)], clock.time())
    assert sum(feed.latency_counts) == before
    assert feed.symbols["AAPL"].updates == 3


@pytest.mark.parametrize("raw, seconds", [
    (1_700_000_000, 1_700_000_000.0),
    (1_700_000_000_123, 1_700_000_000.123),
    (1_700_000_000_123_456, 1_700_000_000.123456),
    (1_700_000_000_123_456_789, 1_700_000_000.123456789),
    (0, 0.0),
])
def test_to_seconds_tells_units_apart(raw, seconds):
    assert to_seconds(raw) == pytest.approx(seconds, abs=1e-6)


def test_sequence_gaps(clock):
    feed = make_book(clock).feed("stocks")
    aapl = feed.symbols["AAPL"]
    for seq in (10, 11, 12, 15, 16, 16, 14, 20):
        feed.check_sequence(aapl, seq)
    assert aapl.gaps == 2 and feed.sequence_gaps == 2 and aapl.last_seq == 20


# --- connections and stream health ------------------------------------------------------------

def test_connection_bookkeeping_and_health(clock):
    feed = make_book(clock).feed("stocks")
    assert not feed.is_up() and not feed.is_healthy(clock.time())
    feed.connected("0", clock.time())
    conn = feed.connection("0")
    conn.symbols = ("AAPL",)
    feed.acknowledge(["AAPL"], clock.time())
    assert feed.is_up() and feed.connects == 1 and feed.is_healthy(clock.time())
    # No update for 5 minutes: the stream is unhealthy though the socket is up.
    assert not feed.is_healthy(clock.advance(300))
    prime(feed, "AAPL")
    feed.last_update = clock.time()
    assert feed.is_healthy(clock.time())
    for _ in range(10):
        feed.error("decode", "bad frame")
    assert not feed.is_healthy(clock.time()) and feed.errors["decode"] == 10
    feed.frame_ok()
    assert feed.is_healthy(clock.time())
    feed.disconnected("0", "heartbeat_timeout")
    feed.disconnected("0", "heartbeat_timeout")  # already down: counted once
    assert feed.disconnects["heartbeat_timeout"] == 1
    assert not feed.symbols["AAPL"].acknowledged


def test_an_opened_socket_is_counted_but_up_only_once_the_venue_accepts_it(clock):
    feed = make_book(clock).feed("stocks")
    changes = []
    feed.connection_listeners.append(changes.append)
    # A refused login: the socket opened and closed, never accepted. Counted both ways, never up.
    feed.opened("0", clock.time())
    assert not feed.is_up() and feed.connects == 1
    feed.disconnected("0", "auth_failed", clock.advance(1))
    feed.disconnected("0", "auth_failed", clock.time())  # the link reports its end twice: once
    assert feed.disconnects["auth_failed"] == 1 and changes == []
    assert feed.connection("0").down_reason == "auth_failed"   # the status page says why
    # Accepted: up from then, and the opened socket is not counted a second time.
    feed.opened("0", clock.advance(1))
    feed.connected("0", clock.advance(1))
    assert feed.is_up() and feed.connects == 2
    feed.disconnected("0", "network_error", clock.advance(1))
    assert [(c.up, c.reason) for c in changes] == [(True, ""), (False, "network_error")]
    assert feed.disconnects["network_error"] == 1 and not feed.is_up()


def test_symbols_added_and_removed_at_run_time(clock):
    feed = make_book(clock).feed("stocks")
    state = feed.add_symbol("NVDA", clock.time())
    assert feed.add_symbol("NVDA", clock.time()) is state
    assert state.labels == 'feed="stocks",symbol="NVDA"'
    assert feed.remove_symbol("NVDA") and not feed.remove_symbol("NVDA")


def test_label_values_are_escaped(clock):
    feed = make_book(clock, symbols=['we"ird\\sym']).feed("stocks")
    assert feed.symbols['we"ird\\sym'].labels == 'feed="stocks",symbol="we\\"ird\\\\sym"'


@pytest.mark.parametrize("feed", [{}, {"thresholds": {"frozen": {"quotes": True}}}], ids=["trades", "quotes"])
def test_apply_one_matches_apply(clock, feed):
    # apply_one is apply's loop body without the loop (a hot-path specialisation for venues that
    # send one event per frame). Feed the same events both ways and compare every observable.
    events = [T("AAPL", 16.1, 1_700_000_000_000), T("AAPL", 1.64, 1_700_000_000_100),
              T("AAPL", 16.2, 1_700_000_000_200), Q("MSFT", 10.0, 10.2, 1_700_000_000_300),
              Q("MSFT", 10.3, 10.1, 0), Q("MSFT", 0.0, 10.4, 1_700_000_000_400), T("MSFT", 55.0),
              T("MSFT", 10.25, 1_700_000_000_500), T("NOPE", 1.0), Q("NOPE", 1.0, 2.0),
              T("PMN", math.nan), T("PMN", math.inf), T("PMN", -2.0), Q("PMN", math.nan, 1.0),
              T("AAPL", 16.2), T("AAPL", 16.2), Q("MSFT", 10.2, 10.3), Q("MSFT", 10.2, 10.3),  # repeats
              Q("PMN", 5.0, 5.1, 10 ** 320), T("AAPL", 16.3, -1), Q("MSFT", 10.3, 10.4, math.nan),
              Q("MSFT", 10.3, 10.4, 4_102_444_800_000), Q("MSFT", 10.3, 10.4, 1_700_000_000_600_000)]
    one, batch = make_book(clock, **feed).feed("stocks"), make_book(clock, **feed).feed("stocks")
    for i, event in enumerate(events):
        now = clock.time() + i
        one.apply_one(event, now)
        batch.apply([event], now)
    for name in ("rejected", "messages", "latency_counts", "latency_sum", "last_update", "latency_min"):
        assert getattr(one, name) == getattr(batch, name), name
    for symbol in one.symbols:
        a, b = one.symbols[symbol], batch.symbols[symbol]
        for slot in ("last_update", "last_event", "updates", "guard", "acknowledged", "changed", "same"):
            assert getattr(a, slot) == getattr(b, slot), (symbol, slot)
        assert a.price == b.price or (math.isnan(a.price) and math.isnan(b.price))
        assert a.ref == b.ref or (math.isnan(a.ref) and math.isnan(b.ref))
    assert one.symbols["MSFT"].price == pytest.approx(10.35) and one.rejected["crossed_quote"] == 1
    assert one.rejected["implausible_timestamp"] == 4


# --- implausible venue timestamps (issue 9) --------------------------------------------------

NOW = 1_700_000_000.0
IMPLAUSIBLE = {
    "320 digits": 10 ** 320, "5000 digits": 10 ** 5000, "negative": -1_700_000_000_000, "nan": math.nan,
    "inf": math.inf, "-inf": -math.inf, "1e300": 1e300, "1e26": 1e26, "1970 in s": 86_400, "1970 in ms": 86_400_000,
    "1999 in s": TIMESTAMP_FLOOR - 1, "2100 in s": TIMESTAMP_CEILING, "2100 in ms": int(TIMESTAMP_CEILING * 1e3),
    "year 3000 in ns": 32_503_680_000 * 10 ** 9, "between s and ms": 5e11, "between us and ns": 5e16,
}
PLAUSIBLE = {
    "none": 0, "now in s": NOW, "now in ms": int(NOW * 1e3), "now in us": int(NOW * 1e6), "now in ns": int(NOW * 1e9),
    "a year ago in ms": int((NOW - 365 * 86400) * 1e3), "2000-01-01 in s": TIMESTAMP_FLOOR,
    "2099 in ms": int((TIMESTAMP_CEILING - 1) * 1e3), "two hours ahead in s": NOW + 7200,
}


@pytest.mark.parametrize("ts", IMPLAUSIBLE.values(), ids=IMPLAUSIBLE.keys())
@pytest.mark.parametrize("quote", [False, True], ids=["trade", "quote"])
@pytest.mark.parametrize("one", [False, True], ids=["apply", "apply_one"])
def test_implausible_timestamps_are_rejected_never_stored_never_latency(clock, ts, quote, one):
    clock.set(NOW)
    feed = make_book(clock).feed("stocks")
    feed.symbols["AAPL"].guard = False
    item = Q("AAPL", 10.0, 10.2, ts) if quote else T("AAPL", 10.0, ts)
    accepted = feed.apply_one(item, NOW) if one else feed.apply([item], NOW)
    assert accepted in (False, None)
    state = feed.symbols["AAPL"]
    assert (state.updates, state.last_event, state.last_update) == (0, 0, 0.0) and math.isnan(state.price)
    assert feed.rejected["implausible_timestamp"] == 1 and sum(feed.rejected.values()) == 1
    assert sum(feed.latency_counts) == 0 and feed.latency_sum == 0.0 and feed.last_update == 0.0
    [(reason, note)] = feed.take_notes()
    assert reason == "implausible_timestamp" and note.startswith("AAPL: venue timestamp ") and len(note) < 200
    assert feed.notes == []


@pytest.mark.parametrize("ts", PLAUSIBLE.values(), ids=PLAUSIBLE.keys())
def test_plausible_timestamps_are_accepted(clock, ts):
    clock.set(NOW)
    feed = make_book(clock).feed("stocks")
    assert feed.apply_one(Q("AAPL", 10.0, 10.2, ts), NOW) is True
    assert feed.symbols["AAPL"].last_event == ts and feed.rejected["implausible_timestamp"] == 0
    assert sum(feed.latency_counts) == (1 if ts else 0)


def test_a_feed_may_switch_units_and_each_is_checked_in_its_own(clock):
    feed = make_book(clock).feed("stocks")
    for ts, accepted in ((int(NOW * 1e3), True), (int(NOW * 1e9), True), (NOW, True), (int(NOW * 1e6), True),
                         (int(TIMESTAMP_CEILING * 1e6), False), (int(NOW * 1e3), True), (TIMESTAMP_CEILING * 1e3, False)):
        feed.apply([Q("MSFT", 10.0, 10.2, ts)], clock.time())
        assert (feed.symbols["MSFT"].last_event == ts) is accepted, ts
    assert feed.rejected["implausible_timestamp"] == 2


def test_every_rejection_leaves_a_bounded_note(clock):
    feed = make_book(clock).feed("stocks")
    feed.apply([T("AAPL", -1.0)] * 50 + [Q("NOPE", 1.0, 2.0), T("MSFT", math.nan)], clock.time())
    notes = feed.take_notes()
    assert len(notes) == 8 and notes[0] == ("nonpositive_price", "AAPL: price -1.0 is not above 0")
    assert feed.rejected["nonpositive_price"] == 50 and feed.rejected["unknown_symbol"] == 1
    assert feed.take_notes() == []


def test_record_turns_a_price_no_float_can_hold_into_a_rejection(clock):
    feed = make_book(clock).feed("stocks")
    assert feed.record("AAPL", 10 ** 400, 0, clock.time(), quote=True) is False
    assert feed.rejected["infinite_price"] == 1 and math.isnan(feed.symbols["AAPL"].price)


def test_the_mid_of_two_near_max_sides_is_finite(clock):
    feed = make_book(clock).feed("stocks")
    assert feed.apply_one(Q("AAPL", 1.7e308, 1.79e308), clock.time()) is True
    feed.apply([Q("MSFT", 1.7e308, 1.79e308)], clock.time())
    for symbol in ("AAPL", "MSFT"):
        assert feed.symbols[symbol].price == pytest.approx(1.745e308) and math.isfinite(feed.symbols[symbol].price)


@pytest.mark.parametrize("unit", [1.0, 1e3, 1e6, 1e9])
def test_the_unit_table_says_what_to_seconds_does(unit):
    """The collector converts a chunk's stamps at once through TIMESTAMP_UNITS; each stamp alone
    goes through to_seconds: both must read every unit alike, at its edges too."""
    from exporter.book import TIMESTAMP_UNITS
    for seconds in (TIMESTAMP_FLOOR, 1_700_000_000.123, TIMESTAMP_CEILING - 1):
        raw = seconds * unit
        divisor = next(d for low, high, d in TIMESTAMP_UNITS if low < raw <= high)
        assert raw / divisor == to_seconds(raw)
    for low, high, divisor in TIMESTAMP_UNITS:
        for raw in (high, low * 1.0000001 or 1.0):
            if math.isfinite(raw):
                assert raw / divisor == to_seconds(raw)
