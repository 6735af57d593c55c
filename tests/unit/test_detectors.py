"""The detectors that catch what staleness alone misses, on a fake clock (no sleeping):

- frozen prices: updates keep arriving at one price (``FeedBook.is_frozen``, the hot path's run);
- adaptive thresholds: each symbol's own rhythm, learned in the sweep (``FeedBook.learn``);
- cross-feed deviation: one instrument on several feeds (``Book.deviations``);
- falling behind: the processing lag (``LagTracker``).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from exporter.book import DEGRADED, HEALTHY, STALE, Book, LagTracker
from exporter.clock import FakeClock
from exporter.collector import BookCollector
from exporter.config import ConfigError, load_data
from exporter.markets import NEW_YORK
from exporter.web.status import symbol_view


@dataclass
class T:
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


def book_of(clock: FakeClock, thresholds: dict[str, Any] | None = None, **feed: Any) -> Book:
    spec = {"name": "stocks", "kind": "polygon", "url": "ws://x", "symbols": ["AAPL", "MSFT"]}
    spec.update(feed)
    config = load_data({"thresholds": thresholds or {}, "feeds": [spec]}, environ={})
    return Book(config.feeds, clock.time())


# --- frozen prices ------------------------------------------------------------------------------

FAST_FROZEN = {"frozen": {"updates": 50, "duration": "2m"}}


def trade_every(feed, clock: FakeClock, symbol: str, prices, step: float) -> None:
    for price in prices:
        feed.apply([T(symbol, price)], clock.advance(step))


def test_one_trade_price_repeated_for_n_updates_and_t_seconds_is_frozen(clock):
    feed = book_of(clock, FAST_FROZEN).feed("stocks")
    aapl = feed.symbols["AAPL"]
    # The first print is held until the second confirms it; the run starts there.
    trade_every(feed, clock, "AAPL", [100.0] * 51, 1.0)
    assert aapl.same == 49 and not feed.is_frozen(aapl)    # 49 repeats: N not reached (and 49 s)
    trade_every(feed, clock, "AAPL", [100.0] * 30, 1.0)   # 79 repeats over 79 s: T not reached
    assert not feed.is_frozen(aapl)
    trade_every(feed, clock, "AAPL", [100.0] * 40, 1.0)   # 119 repeats over 119 s
    assert not feed.is_frozen(aapl)
    trade_every(feed, clock, "AAPL", [100.0], 1.0)        # 120 repeats over 120 s
    assert feed.is_frozen(aapl)
    # Frozen is not fresh: the bot API says so and why, while the state is healthy.
    view = symbol_view(feed, aapl, clock.time())
    assert (view.state, view.fresh, view.frozen, view.reason) == ("healthy", False, True, "frozen")
    # One different price ends it; the next run starts over.
    trade_every(feed, clock, "AAPL", [100.01], 1.0)
    assert not feed.is_frozen(aapl) and aapl.same == 0
    assert symbol_view(feed, aapl, clock.time()).fresh


def test_a_calm_market_with_the_default_check_is_not_frozen(clock):
    """The defaults (300 repeats over 10 minutes, trades only) leave calm markets alone: a quote
    whose mid sits still for a minute, trades bouncing between bid and ask, a few identical
    prints in a row."""
    feed = book_of(clock).feed("stocks")
    aapl, msft = feed.symbols["AAPL"], feed.symbols["MSFT"]
    for i in range(2000):   # 2000 quotes with one unchanged mid over 20 minutes: quotes do not count
        feed.apply([Q("MSFT", 50.0, 50.02)], clock.advance(0.6))
    assert msft.updates == 2000 and not feed.is_frozen(msft)
    for i in range(2000):   # trades bouncing between bid and ask, 20 identical prints now and then
        price = 100.0 if (i // 20) % 2 else 100.01
        feed.apply([T("AAPL", price)], clock.advance(0.6))
    assert not feed.is_frozen(aapl) and aapl.same < 20
    # The defaults themselves: 300 repeats and 10 minutes, trades only.
    frozen = aapl.th.frozen
    assert (frozen.updates, frozen.duration, frozen.quotes) == (300, 600.0, False)


def test_trades_frozen_while_quotes_move_is_frozen(clock):
    """Trades-only by default: moving quotes between the repeated prints do not hide them."""
    feed = book_of(clock, FAST_FROZEN).feed("stocks")
    aapl = feed.symbols["AAPL"]
    for i in range(200):
        feed.apply([Q("AAPL", 99.9 + i % 7 * 0.01, 100.1), T("AAPL", 100.0)], clock.advance(1.0))
    assert feed.is_frozen(aapl)


def test_quote_only_feed_counts_quotes_when_asked(clock):
    feed = book_of(clock, {"frozen": {"updates": 50, "duration": "2m", "quotes": True}}).feed("stocks")
    msft = feed.symbols["MSFT"]
    for _ in range(200):
        feed.apply_one(Q("MSFT", 50.0, 50.02), clock.advance(1.0))
    assert feed.is_frozen(msft)
    feed.apply_one(Q("MSFT", 50.0, 50.04), clock.advance(1.0))
    assert not feed.is_frozen(msft)


def test_frozen_check_off_and_per_symbol(clock):
    feed = book_of(clock, FAST_FROZEN, symbol_thresholds={"MSFT": {"frozen": {"updates": 0}}}).feed("stocks")
    trade_every(feed, clock, "AAPL", [5.0] * 200, 1.0)
    trade_every(feed, clock, "MSFT", [5.0] * 200, 1.0)
    assert feed.is_frozen(feed.symbols["AAPL"]) and not feed.is_frozen(feed.symbols["MSFT"])
    # The per-symbol override changed one key and inherited the rest.
    assert feed.symbols["MSFT"].th.frozen.duration == 120.0


def test_a_run_does_not_count_the_closed_market(clock):
    """Yesterday's last prints and today's first at one price: the run's time counts from the
    session open, and a closed market is never frozen."""
    friday = dt.datetime(2026, 11, 20, 15, 0, tzinfo=NEW_YORK).timestamp()
    clock.set(friday)
    feed = book_of(clock, FAST_FROZEN, market="us-equities").feed("stocks")
    aapl = feed.symbols["AAPL"]
    trade_every(feed, clock, "AAPL", [42.0] * 100, 0.5)     # 99 repeats in 50 s before the weekend
    clock.set(dt.datetime(2026, 11, 21, 12, 0, tzinfo=NEW_YORK).timestamp())
    feed.refresh_market(clock.time())
    assert not feed.is_frozen(aapl)                          # closed
    clock.set(dt.datetime(2026, 11, 23, 9, 30, 0, tzinfo=NEW_YORK).timestamp())
    feed.refresh_market(clock.time())
    trade_every(feed, clock, "AAPL", [42.0] * 60, 1.0)       # 159 repeats, but 60 s of this session
    assert aapl.same >= 50 and not feed.is_frozen(aapl)
    trade_every(feed, clock, "AAPL", [42.0] * 60, 1.0)
    assert feed.is_frozen(aapl)


def test_frozen_is_rendered_for_every_symbol(clock):
    book = book_of(clock, FAST_FROZEN)
    feed = book.feed("stocks")
    trade_every(feed, clock, "AAPL", [7.0] * 200, 1.0)
    text = BookCollector(book).render(clock.time())
    assert 'feedwatch_symbol_frozen{feed="stocks",symbol="AAPL"} 1\n' in text
    assert 'feedwatch_symbol_frozen{feed="stocks",symbol="MSFT"} 0\n' in text


# --- adaptive thresholds ------------------------------------------------------------------------

ADAPTIVE = {"adaptive": {"enabled": True}}


def tick_and_sweep(book: Book, clock: FakeClock, symbol: str, every: float, duration: float) -> None:
    """For ``duration``, ``symbol`` updates every ``every`` seconds (on from its last update) and
    the sweep runs every second, as in the exporter."""
    feed = book.feed("stocks")
    state = feed.symbols[symbol]
    end = clock.time() + duration
    step = min(1.0, every)
    next_update = state.last_update + every
    if next_update < clock.time():  # never updated, or after a pause: from now
        next_update = clock.time()
    next_sweep = clock.time()
    while clock.time() < end:
        while next_update <= clock.time() + 1e-9:
            feed.apply([Q(symbol, 10.0, 10.02)], next_update)
            next_update += every
        if clock.time() >= next_sweep - 1e-9:
            book.sweep(clock.time())
            next_sweep += 1.0
        clock.advance(step)


def test_a_symbol_trading_every_ten_minutes_is_not_flagged_at_three(clock):
    book = book_of(clock, ADAPTIVE)
    feed = book.feed("stocks")
    aapl = feed.symbols["AAPL"]
    # Before it has learned (warm-up: 10 gaps) the configured thresholds apply: degraded at 3 min.
    tick_and_sweep(book, clock, "AAPL", 600.0, 600.0 * 3 + 1)
    assert aapl.learn.__class__ is tuple
    clock.advance(181)
    assert feed.classify(aapl, clock.time()) == DEGRADED
    tick_and_sweep(book, clock, "AAPL", 600.0, 600.0 * 10)
    assert feed.expected_interval(aapl) == pytest.approx(600.0, rel=0.01)
    # Learned: 3 minutes of silence are nothing for this symbol. Stale at 20x its interval,
    # capped by the 30 min ceiling; degraded at half of that; critical stays 1 h.
    last = aapl.last_update
    clock.set(last + 180)
    assert feed.classify(aapl, clock.time()) == HEALTHY
    assert feed.limits(aapl) == (900.0, 1800.0, 3600.0)
    clock.set(last + 1800)
    assert feed.classify(aapl, clock.time()) == STALE


def test_a_symbol_updating_every_100ms_is_flagged_within_seconds_of_going_quiet(clock):
    book = book_of(clock, ADAPTIVE)
    feed = book.feed("stocks")
    msft = feed.symbols["MSFT"]
    tick_and_sweep(book, clock, "MSFT", 0.1, 30.0)
    # The sweep sees one gap per second: the learned interval is about 1 s (its resolution).
    assert feed.expected_interval(msft) == pytest.approx(1.0, rel=0.1)
    degraded, stale, critical = feed.limits(msft)
    assert degraded == pytest.approx(10.0, rel=0.1) and stale == pytest.approx(20.0, rel=0.1)
    quiet = msft.last_update
    clock.set(quiet + 12)
    assert feed.classify(msft, clock.time()) == DEGRADED
    clock.set(quiet + 21)
    assert feed.classify(msft, clock.time()) == STALE
    # The same symbol without adaptive thresholds: still healthy after 21 s (degraded at 180 s).
    static = book_of(clock)
    tick_and_sweep(static, clock, "MSFT", 0.1, 30.0)
    clock.set(static.feed("stocks").symbols["MSFT"].last_update + 21)
    assert static.feed("stocks").classify(static.feed("stocks").symbols["MSFT"], clock.time()) == HEALTHY


def test_floor_and_ceiling_bound_the_learned_thresholds(clock):
    book = book_of(clock, {"adaptive": {"enabled": True, "floor": "30s", "ceiling": "10m", "warmup": 3}})
    feed = book.feed("stocks")
    tick_and_sweep(book, clock, "MSFT", 0.5, 10.0)
    tick_and_sweep(book, clock, "AAPL", 3600.0, 3600.0 * 4)
    # MSFT (about 1 s, the sweep's resolution): stale at the floor, degraded at half of it.
    assert feed.limits(feed.symbols["MSFT"]) == (15.0, 30.0, 3600.0)
    assert feed.limits(feed.symbols["AAPL"]) == (300.0, 600.0, 3600.0)


def test_the_overnight_close_is_not_learned(clock):
    """Gaps that began before the session opened are not learned: the close is not "normal"."""
    friday = dt.datetime(2026, 11, 20, 14, 0, tzinfo=NEW_YORK).timestamp()
    clock.set(friday)
    book = book_of(clock, {"adaptive": {"enabled": True, "warmup": 5}}, market="us-equities")
    feed = book.feed("stocks")
    aapl = feed.symbols["AAPL"]
    tick_and_sweep(book, clock, "AAPL", 60.0, 60.0 * 20)   # every minute until 14:20
    assert feed.expected_interval(aapl) == pytest.approx(60.0, rel=0.01)
    clock.set(dt.datetime(2026, 11, 21, 12, 0, tzinfo=NEW_YORK).timestamp())  # the sweeps see the close
    book.sweep(clock.time())
    clock.set(dt.datetime(2026, 11, 23, 9, 30, 0, tzinfo=NEW_YORK).timestamp())  # Monday open
    book.sweep(clock.time())
    tick_and_sweep(book, clock, "AAPL", 60.0, 60.0 * 3)    # the first updates after the weekend
    assert feed.expected_interval(aapl) == pytest.approx(60.0, rel=0.01)


def test_one_outage_cannot_teach_normal(clock):
    book = book_of(clock, ADAPTIVE)
    feed = book.feed("stocks")
    aapl = feed.symbols["AAPL"]
    tick_and_sweep(book, clock, "AAPL", 10.0, 10.0 * 30)
    clock.advance(3 * 3600)                                   # a three-hour outage, then normal again
    tick_and_sweep(book, clock, "AAPL", 10.0, 10.0 * 2)
    # One gap moves the learned interval by at most 4 ** (1/warmup): about 15 %.
    assert feed.expected_interval(aapl) < 10.0 * 4 ** (1 / 10) * 1.01


def test_adaptive_learning_is_opt_in_and_forgotten_when_switched_off(clock):
    book = book_of(clock, symbol_thresholds={"MSFT": {"adaptive": {"enabled": True}}})
    feed = book.feed("stocks")
    tick_and_sweep(book, clock, "MSFT", 2.0, 60.0)
    tick_and_sweep(book, clock, "AAPL", 2.0, 60.0)
    assert feed.expected_interval(feed.symbols["MSFT"]) == pytest.approx(2.0, rel=0.1)
    assert feed.symbols["AAPL"].learn is None and feed.expected_interval(feed.symbols["AAPL"]) is None
    view = symbol_view(feed, feed.symbols["MSFT"], clock.time())
    assert view.adaptive and view.expected_interval_seconds == pytest.approx(2.0, rel=0.1)
    assert (view.thresholds.degraded, view.thresholds.stale) == (pytest.approx(20.0, rel=0.1), pytest.approx(40.0, rel=0.1))
    config = load_data({"feeds": [{"name": "stocks", "kind": "polygon", "url": "ws://x",
                                   "symbols": ["AAPL", "MSFT"]}]}, environ={})
    feed.reconfigure(config.feeds[0], clock.time())
    assert feed.symbols["MSFT"].learn is None and feed.limits(feed.symbols["MSFT"]) == (180.0, 300.0, 3600.0)


def test_expected_interval_is_exported_only_once_learned(clock):
    book = book_of(clock, ADAPTIVE)
    tick_and_sweep(book, clock, "AAPL", 2.0, 10.0)
    assert "feedwatch_symbol_expected_interval_seconds{" not in BookCollector(book).render(clock.time())
    tick_and_sweep(book, clock, "AAPL", 2.0, 30.0)
    text = BookCollector(book).render(clock.time())
    assert 'feedwatch_symbol_expected_interval_seconds{feed="stocks",symbol="AAPL"} 2.0' in text
    assert 'symbol="MSFT"} ' not in text.split("feedwatch_symbol_expected_interval_seconds gauge")[1]


# --- cross-feed deviation -----------------------------------------------------------------------

def venues(clock: FakeClock, n: int = 3) -> Book:
    names = ["binance", "bybit", "okx"][:n]
    config = load_data({
        "feeds": [{"name": name, "kind": "polygon", "url": "ws://x", "symbols": ["BTCUSDT"]} for name in names],
        "instruments": {"BTCUSDT": {name: "BTCUSDT" for name in names}},
    }, environ={})
    return Book(config.feeds, clock.time(), instruments=config.instruments)


def price_all(book: Book, clock: FakeClock, prices: dict[str, float]) -> None:
    for name, price in prices.items():
        book.feed(name).apply([Q("BTCUSDT", price, price)], clock.time())


def test_the_venue_that_went_astray_stands_out_from_the_median(clock):
    book = venues(clock)
    price_all(book, clock, {"binance": 100.0, "bybit": 105.0, "okx": 100.1})
    found = deviations(book, clock)
    assert found["bybit"] == pytest.approx(105.0 / 100.1 - 1)
    assert found["okx"] == 0.0 and found["binance"] == pytest.approx(100.0 / 100.1 - 1)


def test_two_venues_each_show_half_the_gap(clock):
    book = venues(clock, 2)
    price_all(book, clock, {"binance": 100.0, "bybit": 102.0})
    assert deviations(book, clock) == {"binance": pytest.approx(100.0 / 101.0 - 1), "bybit": pytest.approx(102.0 / 101.0 - 1)}


def deviations(book: Book, clock: FakeClock) -> dict[str, float | None]:
    """feed -> deviation, None where it is NaN (unknown)."""
    return {feed: None if math.isnan(ratio) else ratio for _, feed, ratio in book.deviations(clock.time())}


def test_only_fresh_prices_are_compared_and_the_rest_is_unknown(clock):
    book = venues(clock)
    assert deviations(book, clock) == {"binance": None, "bybit": None, "okx": None}   # no prices yet
    price_all(book, clock, {"binance": 100.0, "bybit": 200.0, "okx": 100.0})
    clock.advance(200)                           # all three degraded: nothing fresh to compare
    assert deviations(book, clock) == {"binance": None, "bybit": None, "okx": None}
    price_all(book, clock, {"binance": 100.0, "okx": 100.2})   # bybit stays degraded: unknown
    assert deviations(book, clock) == {"binance": pytest.approx(100.0 / 100.1 - 1), "bybit": None,
                                       "okx": pytest.approx(100.2 / 100.1 - 1)}
    clock.advance(179)
    price_all(book, clock, {"okx": 100.2})       # binance turns degraded: one fresh price left
    clock.advance(2)
    assert deviations(book, clock) == {"binance": None, "bybit": None, "okx": None}
    text = BookCollector(book).render(clock.time())
    assert 'feedwatch_instrument_price_deviation_ratio{instrument="BTCUSDT",feed="okx"} NaN\n' in text


# --- falling behind -----------------------------------------------------------------------------

def test_no_lag_while_caught_up_and_the_venues_own_delay_is_the_floor():
    lag = LagTracker()
    lag.sample(1000.0, 0, 0.080, 100)          # caught up: 80 ms is the venue's and network's delay
    assert lag.value == 0.0 and lag.floor == 0.080
    lag.sample(1001.0, 4096, 0.085, 200)       # a little data waiting, latency at the floor
    assert lag.value == pytest.approx(0.005)
    lag.sample(1002.0, 0, 2.0, 300)            # the venue is late on its own while we wait idle
    assert lag.value == 0.0


def test_lag_grows_while_behind_and_the_floor_does_not_follow():
    lag = LagTracker()
    lag.sample(0.0, 0, 0.05, 0)
    for second in range(1, 1200):              # twenty minutes behind, 0.5 s more every second
        lag.sample(float(second), 1 << 20, 0.05 + 0.5 * second, second * 1000)
    assert lag.value == pytest.approx(0.5 * 1199) and lag.floor == 0.05
    lag.sample(1200.0, 0, 0.06, 1_300_000)    # caught up again: the old floor expires in time
    assert lag.value == 0.0
    lag.sample(1900.0, 0, 0.07, 1_400_000)    # ten minutes on, only this minute's low remains
    assert lag.floor == pytest.approx(0.07)


def test_a_stuck_reader_adds_the_time_passed_and_no_timestamps_is_unknown():
    lag = LagTracker()
    lag.sample(0.0, 0, math.inf, 0)            # a feed without venue timestamps: unknown
    assert lag.value is None
    lag.sample(1.0, 100, math.inf, 50)
    assert lag.value is None
    lag.sample(2.0, 0, 0.01, 80)
    lag.sample(3.0, 5000, 0.21, 90)
    assert lag.value == pytest.approx(0.2)
    lag.sample(5.0, 9000, math.inf, 90)        # bytes wait, nothing read for two seconds
    assert lag.value == pytest.approx(2.2)
    lag.sample(6.0, 0, math.inf, 200)          # drained, quiet
    assert lag.value == 0.0


def test_feed_samples_its_lowest_latency_since_the_last_sample(clock):
    book = book_of(clock)
    feed = book.feed("stocks")
    now = clock.time()
    feed.apply([Q("AAPL", 10.0, 10.02, int((now - 0.05) * 1000))], now)
    feed.sample_lag(now, 0)
    late = now + 1
    feed.apply([Q("AAPL", 10.0, 10.02, int((late - 3.0) * 1000)), Q("MSFT", 5.0, 5.1, int((late - 9.0) * 1000))], late)
    feed.apply([Q("AAPL", 10.0, 10.02, int((late - 2.5) * 1000))], late)
    feed.sample_lag(late, 1 << 16)
    assert feed.lag.value == pytest.approx(2.45, abs=0.002)   # 2.5 s (the lowest) over the 50 ms floor
    assert feed.latency_min == math.inf                       # reset for the next second


# --- configuration ------------------------------------------------------------------------------

def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_data(data, environ={})
    return info.value.errors


def test_detector_settings_are_validated_with_their_path():
    feed = {"name": "stocks", "kind": "polygon", "url": "ws://x", "symbols": ["AAPL"]}
    assert errors_of({"thresholds": {"frozen": {"updates": -1, "duraton": "1m"},
                                     "adaptive": {"k": 2, "k_degraded": 3, "floor": "1h", "ceiling": "1m",
                                                  "warmup": 0}},
                      "feeds": [dict(feed, symbol_thresholds={"AAPL": {"frozen": {"quotes": True}}})]}) == [
        "thresholds.frozen.duraton: unknown key (did you mean 'duration'?)",
        "thresholds.frozen.updates: must be 0 (off) or more, got -1",
        "thresholds.adaptive: must satisfy 0 < k_degraded <= k (got k_degraded=3, k=2)",
        "thresholds.adaptive: must satisfy 0 < floor <= ceiling (got floor=1h, ceiling=1m)",
        "thresholds.adaptive.warmup: must be from 1 to 1000 gaps, got 0",
        "feeds[0].thresholds.frozen.updates: must be 0 (off) or more, got -1",
        "feeds[0].thresholds.adaptive: must satisfy 0 < k_degraded <= k (got k_degraded=3, k=2)",
        "feeds[0].thresholds.adaptive: must satisfy 0 < floor <= ceiling (got floor=1h, ceiling=1m)",
        "feeds[0].thresholds.adaptive.warmup: must be from 1 to 1000 gaps, got 0",
        "feeds[0].symbol_thresholds.AAPL.frozen.updates: must be 0 (off) or more, got -1",
        "feeds[0].symbol_thresholds.AAPL.adaptive: must satisfy 0 < k_degraded <= k (got k_degraded=3, k=2)",
        "feeds[0].symbol_thresholds.AAPL.adaptive: must satisfy 0 < floor <= ceiling (got floor=1h, ceiling=1m)",
        "feeds[0].symbol_thresholds.AAPL.adaptive.warmup: must be from 1 to 1000 gaps, got 0",
        "feeds[0].symbol_thresholds.AAPL.frozen.quotes: set per feed only (feeds[0].thresholds.frozen.quotes), "
        "not per symbol",
    ]


def test_instruments_name_feeds_and_their_symbols():
    feeds = [{"name": n, "kind": "polygon", "url": "ws://x", "symbols": ["BTCUSDT", "ETHUSDT"]}
             for n in ("binance", "bybit")]
    assert errors_of({"feeds": feeds, "instruments": {
        "BTC": {"binance": "BTCUSDT", "kraken": "XBTUSD"},
        "ETH": {"binance": "ETHUSDT"},
        "ETH2": {"binance": "ETHUSDT", "bybit": "ETHUSD"},
        "BTC2": {"binance": "BTCUSDT", "bybit": "BTCUSDT"},
    }}) == [
        "instruments.BTC.kraken: no feed named 'kraken' (feeds: binance, bybit)",
        "instruments.ETH: name at least two feeds (feed: symbol) to compare, got 1",
        "instruments.ETH2.binance: 'ETHUSDT' on 'binance' already belongs to instrument 'ETH'",
        "instruments.ETH2.bybit: 'ETHUSD' is not in the symbols of feed 'bybit'",
        "instruments.BTC2.binance: 'BTCUSDT' on 'binance' already belongs to instrument 'BTC'",
    ]
    config = load_data({"feeds": feeds, "instruments": {"BTC": {"binance": "BTCUSDT", "bybit": "BTCUSDT"}}},
                       environ={})
    assert config.instruments == {"BTC": {"binance": "BTCUSDT", "bybit": "BTCUSDT"}}


# --- the REST fallback and the detectors ---------------------------------------------------------

def test_rest_prices_neither_repeat_into_frozen_nor_hide_a_move(clock):
    """Polling a quiet symbol returns the same snapshot again and again: that is no repeat. A REST
    price that moved ends a frozen run, and the next socket trade is compared with it."""
    feed = book_of(clock, {"frozen": {"updates": 5, "duration": "10s"}}).feed("stocks")
    aapl = feed.symbols["AAPL"]
    trade_every(feed, clock, "AAPL", [100.0] * 2, 1.0)              # the guard's first print, confirmed
    for _ in range(30):                                            # 30 s of the same REST snapshot
        assert feed.apply_rest("AAPL", 100.0, 100.0, 0, clock.advance(1.0))
    assert aapl.same == 0 and not feed.is_frozen(aapl)
    trade_every(feed, clock, "AAPL", [100.0] * 20, 1.0)            # the socket repeats it: frozen
    assert feed.is_frozen(aapl)
    assert feed.apply_rest("AAPL", 100.5, 100.5, 0, clock.advance(1.0))  # REST sees it move
    assert not feed.is_frozen(aapl) and aapl.same == 0
    trade_every(feed, clock, "AAPL", [100.0], 1.0)                 # a move against the REST price
    assert aapl.same == 0 and aapl.changed == clock.time()


def test_rest_polling_does_not_teach_the_adaptive_interval(clock):
    book = book_of(clock, ADAPTIVE)
    feed = book.feed("stocks")
    aapl = feed.symbols["AAPL"]
    tick_and_sweep(book, clock, "AAPL", 600.0, 600.0 * 12)          # learned: every 10 minutes
    learned = feed.expected_interval(aapl)
    assert learned == pytest.approx(600.0, rel=0.01)
    for _ in range(600):                                            # 10 minutes of REST every second
        feed.apply_rest("AAPL", 100.0, 100.0, 0, clock.advance(1.0))
        book.sweep(clock.time())
    assert aapl.from_rest and feed.expected_interval(aapl) == learned
