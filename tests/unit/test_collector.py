"""The Book collector: golden exposition for a fixed book, and the behaviours around it.

Golden file: ``tests/golden/metrics.txt`` is the exact ``BookCollector.render`` output for
``golden_book()``. After an intended change to the output, regenerate it and review the diff::

    FEEDWATCH_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_collector.py

(``tests/integration/test_promtool.py`` lints the same file with ``promtool check metrics``.)
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import collector
from exporter.book import DISCONNECT_REASONS, ERROR_KINDS, LATENCY_BUCKETS, MESSAGE_KINDS, REJECT_REASONS, Book
from exporter.clock import FakeClock
from exporter.collector import (
    EXPORTER_FAMILIES,
    FEED_FAMILIES,
    INSTRUMENT_FAMILIES,
    MARKET_FAMILIES,
    REST_FAMILIES,
    SYMBOL_FAMILIES,
    BookCollector,
    format_value,
)
from exporter.config import load_data
from exporter.exposition import Exposition

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "metrics.txt"
T0 = 1_700_000_000.0  # Tuesday 2023-11-14 17:13 in New York: after the US equities close


def golden_book(clock: FakeClock) -> Book:
    """A book exercising every family: a closed stock market, a busy 24/7 feed, an idle feed,
    and a second venue of BTCUSD (an instrument priced on two feeds, frozen and adaptive)."""
    config = load_data({
        "thresholds": {"degraded": "180s", "stale": "300s", "critical": "1h"},
        "feeds": [
            {"name": "stocks", "kind": "polygon", "url": "wss://socket.polygon.io/stocks", "market": "us-equities",
             "symbols": ["AAPL", "MSFT", "BRK.A"]},
            {"name": "crypto", "kind": "polygon", "url": "wss://crypto.invalid/ws",
             "symbols": ["BTCUSD", "ETHUSD", "SOLUSD", "XRPUSD"], "symbol_thresholds": {"XRPUSD": {"critical": "10m"}},
             "rest": {"enabled": True}},
            {"name": "idle", "kind": "polygon", "url": "wss://idle.invalid/ws"},
            {"name": "venue2", "kind": "polygon", "url": "wss://venue2.invalid/ws", "symbols": ["BTCUSD", "ETHUSD"],
             "thresholds": {"frozen": {"updates": 2, "duration": "60s", "quotes": True},
                            "adaptive": {"enabled": True, "warmup": 1}}},
        ],
        "instruments": {"BTC": {"crypto": "BTCUSD", "venue2": "BTCUSD"}},
    }, environ={})
    book = Book(config.feeds, clock.time(), config.instruments)
    start = clock.time()

    stocks = book.feeds["stocks"]
    stocks.connected("0", start)
    stocks.acknowledge(["AAPL", "MSFT", "BRK.A"], start)
    stocks.frame_received(4096, start + 1)
    stocks.record("AAPL", 189.5, 1_700_000_000_123, start + 1, quote=True)
    stocks.record("MSFT", 370.25, 1_700_000_000_400_000_000, start + 1, quote=True)

    crypto = book.feeds["crypto"]
    crypto.connected("0", start)
    crypto.connected("1", start)
    crypto.acknowledge(["BTCUSD", "ETHUSD", "SOLUSD"], start)
    crypto.record("XRPUSD", 0.61, 0, start, quote=True)
    crypto.record("ETHUSD", 2051.37, 0, start, quote=True)
    crypto.frame_received(65536, start + 700)
    crypto.record("BTCUSD", 37312.4, 1_700_000_699_950, start + 700, quote=True)
    crypto.record("BTCUSD", -1.0, 0, start + 700, quote=True)      # rejected: nonpositive_price
    crypto.record("DOGEUSD", 0.07, 0, start + 700, quote=True)     # rejected: unknown_symbol
    crypto.heartbeat("0", start + 700)
    crypto.error("decode", "undecodable frame")
    crypto.disconnected("1", "heartbeat_timeout")
    crypto.reconnect_attempts = 2
    crypto.check_sequence(crypto.symbols["BTCUSD"], 10)
    crypto.check_sequence(crypto.symbols["BTCUSD"], 14)
    # The REST fallback found SOLUSD's last price, 5 s after the start by the venue's clock (so it
    # stays stale: a REST answer is dated by the venue); one request was rate limited.
    crypto.apply_rest("SOLUSD", 58.25, 58.35, 1_700_000_005_000, start + 710)
    crypto.rest_requests["ok"] = 1
    crypto.rest_requests["rate_limited"] = 1
    crypto.rest_active = True

    crypto.sample_lag(start + 700, 0)       # caught up: the floor is this 50 ms
    crypto.frame_received(65536, start + 701)
    crypto.record("BTCUSD", 37312.4, 1_700_000_700_500, start + 701, quote=True)  # 0.5 s late
    crypto.sample_lag(start + 701, 2048)    # and bytes waiting: 0.45 s behind

    venue2 = book.feeds["venue2"]
    venue2.connected("0", start)
    for at in (start + 600, start + 650, start + 700):   # ETHUSD: one price three times: frozen
        venue2.record("ETHUSD", 2051.0, 0, at, quote=True)
        venue2.record("BTCUSD", 37350.0 + at - start, 0, at, quote=True)
        book.sweep(at)                                    # learns BTCUSD's 50 s interval
    clock.set(start + 720)
    return book


def render(book: Book, clock: FakeClock) -> str:
    return BookCollector(book).render(clock.time())


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample keyed by (name, labels) using prometheus_client's own text parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def key(name: str, **labels: str) -> tuple[str, frozenset]:
    return name, frozenset(labels.items())


def test_golden_output(clock: FakeClock) -> None:
    text = render(golden_book(clock), clock)
    if os.environ.get("FEEDWATCH_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "collector output changed; see this module's docstring to regenerate"


def test_golden_values_mean_what_the_book_says(clock: FakeClock) -> None:
    values = samples(render(golden_book(clock), clock))
    # The stock market is closed at T0: every stock symbol is -1, whatever its age.
    assert values[key("feedwatch_symbol_state", feed="stocks", symbol="AAPL")] == -1
    assert values[key("feedwatch_feed_market_open", feed="stocks")] == 0
    assert values[key("feedwatch_feed_symbols", feed="stocks", state="closed")] == 3
    # 720 s after start: ETHUSD (updated at start) is stale; XRPUSD's own critical is 10 m.
    assert values[key("feedwatch_symbol_state", feed="crypto", symbol="ETHUSD")] == 2
    assert values[key("feedwatch_symbol_state", feed="crypto", symbol="XRPUSD")] == 3
    assert values[key("feedwatch_symbol_staleness_seconds", feed="crypto", symbol="BTCUSD")] == 19.0
    assert values[key("feedwatch_symbol_last_event_timestamp_seconds", feed="crypto", symbol="BTCUSD")] \
        == 1_700_000_700.5
    assert values[key("feedwatch_feed_up", feed="crypto", connection="1")] == 0
    assert values[key("feedwatch_feed_disconnects_total", feed="crypto", reason="heartbeat_timeout")] == 1
    assert values[key("feedwatch_feed_rejected_updates_total", feed="crypto", reason="unknown_symbol")] == 1
    assert values[key("feedwatch_feed_sequence_gaps_total", feed="crypto")] == 1
    assert values[key("feedwatch_feed_reconnect_attempts_total", feed="crypto")] == 2
    assert values[key("feedwatch_feed_acknowledged_symbols", feed="crypto")] == 3
    # Counted by the symbol pass (chunk by chunk), or, when a scrape asks for no symbol family,
    # by a walk of its own: the same figure.
    alone = samples(BookCollector(golden_book(clock)).render(
        clock.time(), Exposition(names=frozenset({"feedwatch_feed_acknowledged_symbols"}))))
    assert alone == {k: v for k, v in values.items() if k[0] == "feedwatch_feed_acknowledged_symbols"}
    assert values[key("feedwatch_feed_subscribed_symbols", feed="crypto")] == 4
    # Latency observations of 50 ms (in the 0.05 bucket) and 500 ms.
    assert values[key("feedwatch_feed_latency_seconds_bucket", feed="crypto", le="0.025")] == 0
    assert values[key("feedwatch_feed_latency_seconds_bucket", feed="crypto", le="0.05")] == 1
    assert values[key("feedwatch_feed_latency_seconds_bucket", feed="crypto", le="0.5")] == 2
    assert values[key("feedwatch_feed_latency_seconds_count", feed="crypto")] == 2
    # A connection's start: its uptime is time() minus this; 0 while it is down.
    assert values[key("feedwatch_feed_connected_since_timestamp_seconds", feed="crypto", connection="0")] == T0
    assert values[key("feedwatch_feed_connected_since_timestamp_seconds", feed="crypto", connection="1")] == 0
    # A feed that never connected: up is present and 0.
    assert values[key("feedwatch_feed_up", feed="idle", connection="0")] == 0
    assert values[key("feedwatch_feed_connected_since_timestamp_seconds", feed="idle", connection="0")] == 0
    assert values[key("feedwatch_feed_healthy", feed="idle")] == 0
    # venue2's ETHUSD repeated one price twice over 100 s: frozen (updates 2, duration 60s).
    assert values[key("feedwatch_symbol_frozen", feed="venue2", symbol="ETHUSD")] == 1
    assert values[key("feedwatch_symbol_frozen", feed="venue2", symbol="BTCUSD")] == 0
    # Its symbols updated every 50 s: learned (warmup 1); the only adaptive feed.
    assert values[key("feedwatch_symbol_expected_interval_seconds", feed="venue2", symbol="BTCUSD")] == \
        pytest.approx(50.0)
    assert {dict(k[1])["feed"] for k in values if k[0] == "feedwatch_symbol_expected_interval_seconds"} == {"venue2"}
    # BTC: 37312.4 on crypto and 38050.0 on venue2, both fresh: each half the gap from the median.
    median = (37312.4 + 38050.0) / 2
    assert values[key("feedwatch_instrument_price_deviation_ratio", instrument="BTC", feed="crypto")] == \
        pytest.approx(37312.4 / median - 1)
    assert values[key("feedwatch_instrument_price_deviation_ratio", instrument="BTC", feed="venue2")] == \
        pytest.approx(38050.0 / median - 1)
    # crypto: 0.5 s latency over a 50 ms floor while 2 KiB wait; venue2 gives no venue time.
    assert values[key("feedwatch_feed_processing_lag_seconds", feed="crypto")] == pytest.approx(0.45)
    assert values[key("feedwatch_feed_receive_backlog_bytes", feed="crypto")] == 2048
    assert key("feedwatch_feed_processing_lag_seconds", feed="venue2") not in values
    assert values[key("feedwatch_feed_receive_backlog_bytes", feed="venue2")] == 0


def test_staleness_and_state_move_with_the_clock(clock: FakeClock) -> None:
    config = load_data({"feeds": [{"name": "f", "kind": "polygon", "url": "wss://x.invalid", "symbols": ["A"]}]},
                       environ={})
    book = Book(config.feeds, clock.time())
    book.feeds["f"].record("A", 10.0, 0, clock.time(), quote=True)
    staleness = key("feedwatch_symbol_staleness_seconds", feed="f", symbol="A")
    state = key("feedwatch_symbol_state", feed="f", symbol="A")
    seen = []
    for step in (0.0, 179.5, 1.0, 120.0, 3300.0):
        clock.advance(step)
        values = samples(render(book, clock))
        seen.append((values[staleness], values[state]))
    assert seen == [(0.0, 0), (179.5, 0), (180.5, 1), (300.5, 2), (3600.5, 3)]


def test_every_known_counter_label_starts_at_zero(clock: FakeClock) -> None:
    config = load_data({"feeds": [{"name": "f", "kind": "polygon", "url": "wss://x.invalid", "symbols": ["A"]}]},
                       environ={})
    values = samples(render(Book(config.feeds, clock.time()), clock))
    expected = (
        [key("feedwatch_feed_disconnects_total", feed="f", reason=r) for r in DISCONNECT_REASONS]
        + [key("feedwatch_feed_messages_total", feed="f", kind=k) for k in MESSAGE_KINDS]
        + [key("feedwatch_feed_errors_total", feed="f", kind=k) for k in ERROR_KINDS]
        + [key("feedwatch_feed_rejected_updates_total", feed="f", reason=r) for r in REJECT_REASONS]
        + [key("feedwatch_feed_latency_seconds_bucket", feed="f", le=format_value(b)) for b in LATENCY_BUCKETS]
        + [key("feedwatch_feed_latency_seconds_bucket", feed="f", le="+Inf"),
           key("feedwatch_feed_latency_seconds_count", feed="f"), key("feedwatch_feed_latency_seconds_sum", feed="f"),
           key("feedwatch_feed_connects_total", feed="f"), key("feedwatch_feed_bytes_total", feed="f"),
           key("feedwatch_feed_reconnect_attempts_total", feed="f"), key("feedwatch_feed_sequence_gaps_total", feed="f"),
           key("feedwatch_symbol_updates_total", feed="f", symbol="A"), key("feedwatch_feed_up", feed="f", connection="0")]
    )
    missing = [k for k in expected if k not in values]
    assert not missing
    assert {k: values[k] for k in expected if values[k] != 0} == {}
    states = {dict(labels)["state"]: v for (name, labels), v in values.items() if name == "feedwatch_feed_symbols"}
    assert states == {"healthy": 1, "degraded": 0, "stale": 0, "critical": 0, "closed": 0}


def test_odd_label_values_are_escaped_and_round_trip(clock: FakeClock) -> None:
    odd = 'we"ird\\sym\nbol'
    config = load_data({"feeds": [{"name": "f", "kind": "polygon", "url": "wss://x.invalid", "symbols": ["A"]}]},
                       environ={})
    book = Book(config.feeds, clock.time())
    feed = book.feeds["f"]
    # The config and the watchlist refuse such a name (config.symbol_problem); the renderer must
    # still escape whatever reaches the book (a plugin, the book used directly).
    feed.add_symbol(odd, clock.time())
    feed.record(odd, 1.5, 0, clock.time(), quote=True)
    feed.connected('c"1', clock.time())
    feed.disconnected('c"1', 'odd "reason"\\')
    text = render(book, clock)
    assert 'symbol="we\\"ird\\\\sym\\nbol"' in text
    values = samples(text)  # the reference parser gets the original strings back
    assert values[key("feedwatch_symbol_price", feed="f", symbol=odd)] == 1.5
    assert values[key("feedwatch_feed_up", feed="f", connection='c"1')] == 0
    assert values[key("feedwatch_feed_disconnects_total", feed="f", reason='odd "reason"\\')] == 1


def test_price_and_event_time_appear_only_once_known(clock: FakeClock) -> None:
    config = load_data({"feeds": [{"name": "f", "kind": "polygon", "url": "wss://x.invalid", "symbols": ["A", "B"]}]},
                       environ={})
    book = Book(config.feeds, clock.time())
    book.feeds["f"].record("A", 2.0, 0, clock.time(), quote=True)  # priced, but the venue gave no time
    names = {(name, dict(labels)["symbol"]) for name, labels in samples(render(book, clock))
             if name.startswith("feedwatch_symbol_")}
    assert ("feedwatch_symbol_price", "A") in names
    assert ("feedwatch_symbol_price", "B") not in names
    assert not {n for n in names if n[0] == "feedwatch_symbol_last_event_timestamp_seconds"}
    assert ("feedwatch_symbol_last_update_timestamp_seconds", "B") in names


def test_removed_symbols_stop_being_rendered(clock: FakeClock) -> None:
    config = load_data({"feeds": [{"name": "f", "kind": "polygon", "url": "wss://x.invalid", "symbols": ["A", "B"]}]},
                       environ={})
    book = Book(config.feeds, clock.time())
    book.feeds["f"].remove_symbol("B")
    text = render(book, clock)
    assert 'symbol="A"' in text and 'symbol="B"' not in text
    assert samples(text)[key("feedwatch_feed_subscribed_symbols", feed="f")] == 1


def test_session_open_is_noticed_at_scrape(clock: FakeClock) -> None:
    """The collector refreshes the market session itself: no sweep is needed between scrapes."""
    config = load_data({"feeds": [{"name": "s", "kind": "polygon", "url": "wss://x.invalid",
                                   "market": "us-equities", "symbols": ["A"]}]}, environ={})
    book = Book(config.feeds, clock.time())  # Tuesday evening: closed
    assert samples(render(book, clock))[key("feedwatch_symbol_state", feed="s", symbol="A")] == -1
    clock.set(1_700_058_600.0 + 10)  # Wednesday 09:30:10 New York
    values = samples(render(book, clock))
    assert values[key("feedwatch_feed_market_open", feed="s")] == 1
    assert values[key("feedwatch_symbol_state", feed="s", symbol="A")] == 0
    # Yesterday's silence does not count: the clock restarts when the open is noticed.
    assert values[key("feedwatch_symbol_staleness_seconds", feed="s", symbol="A")] == 0.0
    clock.advance(200)
    values = samples(render(book, clock))
    assert values[key("feedwatch_symbol_staleness_seconds", feed="s", symbol="A")] == 200.0
    assert values[key("feedwatch_symbol_state", feed="s", symbol="A")] == 1


def test_format_value_follows_the_text_format() -> None:
    assert [format_value(v) for v in (math.nan, math.inf, -math.inf, 0.25, 3, 1e21, True)] == \
        ["NaN", "+Inf", "-Inf", "0.25", "3", "1e+21", "1"]


def test_every_family_is_documented_in_the_docstring_and_docs() -> None:
    docs = (ROOT / "docs" / "metrics.md").read_text()
    for name in (*SYMBOL_FAMILIES, *FEED_FAMILIES, *MARKET_FAMILIES, *INSTRUMENT_FAMILIES, *REST_FAMILIES,
                 *EXPORTER_FAMILIES):
        assert f"# TYPE {name} " in collector.__doc__, name
        assert re.search(rf"`{name}`", docs), f"{name} missing from docs/metrics.md"


def test_market_calendar_end_once_per_market_with_a_table(clock: FakeClock) -> None:
    """One series per market in use that has a holiday table: not for 24/7 feeds, not twice for
    two feeds on one market; a custom market's end is its holidays_until."""
    config = load_data({
        "markets": {"lse": {"timezone": "Europe/London", "sessions": [{"days": ["mon-fri"], "open": "08:00", "close": "16:30"}],
                            "holidays": ["2026-12-25"], "holidays_until": "2027-03-31"},
                    "fx": {"timezone": "UTC", "sessions": [{"days": ["mon-fri"], "open": "00:00", "close": "24:00"}]}},
        "feeds": [{"name": n, "kind": "polygon", "url": "wss://x.invalid/ws", **({"market": m} if m else {})}
                  for n, m in (("a", "us-equities"), ("b", "us-equities"), ("c", "cme-globex"), ("d", None),
                               ("e", "lse"), ("f", "fx"))]}, environ={})
    values = {k: v for k, v in samples(render(Book(config.feeds, clock.time()), clock)).items()
              if k[0] == "feedwatch_market_calendar_end_timestamp_seconds"}
    from exporter.markets import calendar
    import datetime as dt
    from zoneinfo import ZoneInfo

    assert values == {
        key("feedwatch_market_calendar_end_timestamp_seconds", market="us-equities"): calendar("us-equities").end_timestamp,
        key("feedwatch_market_calendar_end_timestamp_seconds", market="cme-globex"): calendar("cme-globex").end_timestamp,
        key("feedwatch_market_calendar_end_timestamp_seconds", market="lse"):
            dt.datetime(2027, 4, 1, tzinfo=ZoneInfo("Europe/London")).timestamp(),
    }


def test_incremental_render_equals_a_fresh_render(clock: FakeClock, monkeypatch) -> None:
    """The collector keeps text per chunk of symbols between scrapes (issue 14): whatever changes
    between two scrapes (updates, the clock moving states, symbols added and removed, thresholds
    reloaded, the market closing), its output is exactly what a fresh collector renders."""
    monkeypatch.setattr(collector, "CHUNK", 3)   # several chunks per feed, some partly filled
    config = load_data({"feeds": [{"name": "c", "kind": "polygon", "url": "wss://c.invalid",
                                   "symbols": [f"S{i}" for i in range(10)]}]}, environ={})
    book = Book(config.feeds, clock.time())
    feed = book.feeds["c"]
    kept = BookCollector(book)

    def same() -> str:
        text = kept.render(clock.time())
        assert text == BookCollector(book).render(clock.time())
        return text

    same()
    for i in range(10):
        feed.record(f"S{i}", 100.0 + i, 1_700_000_000_000 + i, clock.time(), quote=True)
    first = same()
    clock.advance(200)                  # every symbol degraded: the state text changes, not the rest
    assert "feedwatch_symbol_state{" in first and same() != first
    feed.record("S4", 50.5, 0, clock.time(), quote=True)   # one chunk re-rendered
    assert 'feedwatch_symbol_price{feed="c",symbol="S4"} 50.5' in same()
    feed.remove_symbol("S1")             # every later chunk's members shift
    feed.add_symbol("NEW", clock.time())
    text = same()
    assert 'symbol="S1"' not in text and 'symbol="NEW"' in text
    feed.record("S7", 1.0, 0, clock.time(), quote=True)
    feed.record("S7", 2.0, 0, clock.time(), quote=True)
    assert 'feedwatch_symbol_updates_total{feed="c",symbol="S7"} 3' in same()
    clock.advance(4000)                  # critical everywhere
    same()
    book.remove_feed("c")
    assert 'symbol="S0"' not in same()


def test_incremental_render_equals_a_fresh_render_with_detectors(clock: FakeClock, monkeypatch) -> None:
    """The chunk cache against every per-symbol input main's detectors added (issue 14 merged
    with issue 10): random socket updates (repeats making frozen runs), REST fallback updates
    (the source family), sweeps learning intervals (expected interval, and the adaptive limits
    the state reads), sessions closing and opening (the frozen check reads them), thresholds
    reloaded. After every step the kept collector's text is exactly a fresh collector's."""
    import random
    monkeypatch.setattr(collector, "CHUNK", 4)
    symbols = [f"S{i}" for i in range(11)]

    def config(frozen_updates: int):
        return load_data({"feeds": [
            {"name": "c", "kind": "polygon", "url": "wss://c.invalid", "symbols": symbols,
             "rest": {"enabled": True},
             "thresholds": {"frozen": {"updates": frozen_updates, "duration": "20s", "quotes": True},
                            "adaptive": {"enabled": True, "warmup": 2}},
             "symbol_thresholds": {"S5": {"adaptive": {"enabled": False}}}},
            {"name": "eq", "kind": "polygon", "url": "wss://eq.invalid", "market": "us-equities",
             "symbols": symbols[:6], "thresholds": {"frozen": {"updates": 2, "duration": "10s"}}},
        ]}, environ={})

    def meant(text: str) -> None:
        """Each per-symbol detector sample says what the book's own methods say (the fresh
        render shares the chunk code, so this is the check of the code itself)."""
        got = samples(text)
        now = clock.time()
        for f in book.feeds.values():
            for s in f.symbols.values():
                labels = {"feed": f.name, "symbol": s.symbol}
                assert got[key("feedwatch_symbol_state", **labels)] == f.classify(s, now)
                assert got[key("feedwatch_symbol_frozen", **labels)] == f.is_frozen(s)
                interval = f.expected_interval(s)
                assert got.get(key("feedwatch_symbol_expected_interval_seconds", **labels)) == (
                    None if interval is None else pytest.approx(interval))
                if f.config.rest.enabled:
                    assert got[key("feedwatch_symbol_source", source="rest", **labels)] == s.from_rest

    book = Book(config(3).feeds, clock.time())
    kept = BookCollector(book)
    # The session closing is a frozen symbol's only change: no update marks its chunk.
    eq = book.feeds["eq"]
    clock.set(T0 + 60_000)                   # Wednesday 09:53 in New York: open
    book.sweep(clock.time())
    for _ in range(4):                       # trades (eq checks trades only), one price
        eq.record("S0", 20.0, 0, clock.time())
        clock.advance(8)
    text = kept.render(clock.time())
    assert 'feedwatch_symbol_frozen{feed="eq",symbol="S0"} 1\n' in text
    meant(text)
    clock.advance(8 * 3600)                  # 18:17: closed
    text = kept.render(clock.time())
    assert text == BookCollector(book).render(clock.time())
    assert 'feedwatch_symbol_frozen{feed="eq",symbol="S0"} 0\n' in text
    meant(text)
    rng = random.Random(14)
    seen = {"frozen 1": 0, "expected": 0, 'source="rest"} 1': 0, "closed": 0, "open": 0}
    for step in range(300):
        feed = book.feeds[rng.choice(("c", "c", "eq"))]
        name = rng.choice(list(feed.symbols))
        op = rng.random()
        now = clock.time()
        if op < 0.45:    # a socket update, often at the last price: frozen runs
            feed.record(name, rng.choice((10.0, 10.0, 10.0, 11.0)), 0, now, quote=True)
        elif op < 0.65:
            feed.apply_rest(name, 10.0, rng.choice((10.0, 10.5)), 0, now)
        elif op < 0.85:
            book.sweep(now)                  # learns intervals; states move
        elif op < 0.87:
            for f, c in zip(book.feeds.values(), config(rng.choice((2, 3, 0))).feeds):
                f.reconfigure(c, now)
        clock.advance(rng.choice((0.5, 3.0, 7.0, 15.0, 40.0, 4000.0)) if rng.random() < 0.9 else 30000.0)
        text = kept.render(clock.time())
        assert text == BookCollector(book).render(clock.time()), f"step {step}"
        if step % 4 == 0:
            meant(text)
        seen["frozen 1"] += "feedwatch_symbol_frozen{" in text and "} 1\n" in "".join(
            line + "\n" for line in text.splitlines() if line.startswith("feedwatch_symbol_frozen{"))
        seen["expected"] += "feedwatch_symbol_expected_interval_seconds{" in text
        seen['source="rest"} 1'] += 'source="rest"} 1' in text
        seen["closed"] += 'feedwatch_feed_market_open{feed="eq"} 0' in text
        seen["open"] += 'feedwatch_feed_market_open{feed="eq"} 1' in text
    # The walk went through every case it exists for.
    assert all(seen.values()), seen


def test_a_state_the_chunk_pass_cannot_read_takes_the_guarded_way(clock: FakeClock) -> None:
    """A chunk whose values cannot all be gathered (here a state whose receive time slot was left
    unset) goes through the guarded slow path like any chunk whose fast pass fails: its other
    symbols are rendered, the one that cannot be is left out and counted, and the acknowledged
    symbols are still all counted."""
    names = ["S0", "S1", "S2"]
    config = load_data({"feeds": [{"name": "c", "kind": "polygon", "url": "wss://c.invalid", "symbols": names}]},
                       environ={})
    book = Book(config.feeds, clock.time())
    feed = book.feeds["c"]
    feed.acknowledge(names, clock.time())
    for k, name in enumerate(names):
        feed.record(name, 100.0 + k, 1_700_000_000_000 + k, clock.time(), quote=True)
    del feed.symbols["S1"].last_update
    rendering = BookCollector(book)
    text = rendering.render(clock.time())
    assert 'feedwatch_feed_acknowledged_symbols{feed="c"} 3\n' in text
    assert 'feedwatch_symbol_price{feed="c",symbol="S0"} 100.0\n' in text
    assert 'feedwatch_symbol_price{feed="c",symbol="S2"} 102.0\n' in text
    assert 'symbol="S1"' not in text
    assert rendering.errors.counts["book"] == 1


def test_only_the_blocks_that_moved_are_formatted_and_the_text_equals_a_fresh_and_a_slow_render(
        clock: FakeClock, monkeypatch) -> None:
    """Issue 14: the update-driven families are kept per block of ``BLOCK`` symbols and only the
    blocks whose members updated are formatted again. After each change (one symbol of a chunk,
    every symbol, symbols added and removed, values that need the guard or are absent) the kept
    collector's text is byte for byte a fresh collector's and the slow path's (every chunk
    through ``_chunk_slow``: the book's own methods, line by line); the blocks nobody in moved
    keep their very bytes objects."""
    monkeypatch.setattr(collector, "CHUNK", 8)
    monkeypatch.setattr(collector, "BLOCK", 2)   # 4 blocks per chunk, the last chunk partly filled
    names = [f"S{i}" for i in range(19)]
    config = load_data({"feeds": [{"name": "c", "kind": "polygon", "url": "wss://c.invalid", "symbols": names}]},
                       environ={})
    book = Book(config.feeds, clock.time())
    feed = book.feeds["c"]
    kept = BookCollector(book)

    class Slow(BookCollector):
        def _chunk_pass(self, *args, **kwargs):   # every chunk takes the guarded slow path
            raise RuntimeError("slow path")

    def same() -> str:
        text = kept.render(clock.time())
        assert text == BookCollector(book).render(clock.time())
        assert text == Slow(book).render(clock.time())
        return text

    def record(name: str, price: float, k: int) -> None:
        feed.record(name, price, 1_700_000_000_000 + 7 * k, clock.time(), quote=True)

    same()                                       # never priced: no price nor venue time lines
    for k, name in enumerate(names):
        record(name, 100.0 + k / 7, k)
    same()
    clock.advance(1.25)

    def blocks() -> list[list[bytes]]:
        return [list(chunk.price_text) for chunk in kept._chunks["c"]]

    before = blocks()
    record("S9", 55.5, 99)                       # one symbol of the second chunk's first block
    text = same()
    assert 'feedwatch_symbol_price{feed="c",symbol="S9"} 55.5\n' in text
    after = blocks()
    def moved() -> list[tuple[int, int]]:
        return [(c, j) for c, chunk in enumerate(blocks()) for j, block in enumerate(chunk)
                if block is not before[c][j]]

    assert moved() == [(1, 0)]
    before = after
    record("S0", 56.5, 100)                      # three blocks of the first chunk, one of the third
    record("S6", 57.5, 101)
    record("S7", 58.5, 102)
    record("S17", 59.5, 103)
    text = same()
    assert 'feedwatch_symbol_price{feed="c",symbol="S6"} 57.5\n' in text
    assert moved() == [(0, 0), (0, 3), (2, 0)]
    before = blocks()
    feed.symbols["S4"].last_update += 0.5        # a receive time moved with no count (never, by the book)
    record("S1", 60.5, 104)
    same()
    assert moved() == [(0, 0), (0, 2)]
    clock.advance(0.5)
    for k, name in enumerate(names):             # every symbol
        record(name, 200.0 + k / 3, 1000 + k)
    text = same()
    assert all(block is not old for chunk, olds in zip(blocks(), before) for block, old in zip(chunk, olds))
    record("S3", 1.5, 5000)                      # the same symbol twice before a scrape
    record("S3", 2.5, 5001)
    clock.advance(0.25)
    assert 'feedwatch_symbol_updates_total{feed="c",symbol="S3"} 4\n' in same()
    feed.remove_symbol("S2")                     # every later member shifts into other blocks
    feed.add_symbol("NEW", clock.time())
    text = same()
    assert 'symbol="S2"' not in text and 'feedwatch_symbol_state{feed="c",symbol="NEW"} 0\n' in text
    record("NEW", 9.0, 6000)
    feed.record("S12", 3.0, 0, clock.time(), quote=True)   # no venue timestamp: that line absent
    text = same()
    assert 'feedwatch_symbol_last_event_timestamp_seconds{feed="c",symbol="S12"}' not in text
    # Values past the book's checks, planted in one block: only their samples go, counted at
    # every scrape (the block is redone each time), the block's other lines stay.
    s5 = feed.symbols["S5"]
    s5.price, s5.last_event, s5.updates = 10 ** 400, 10 ** 320, s5.updates + 1
    for scrape in (1, 2, 3):
        if scrape == 2:
            record("S0", 8.0, 6500)              # another block of the same chunk moves meanwhile
        text = same()
        assert 'feedwatch_symbol_price{feed="c",symbol="S5"}' not in text
        assert 'feedwatch_symbol_last_event_timestamp_seconds{feed="c",symbol="S5"}' not in text
        assert 'feedwatch_symbol_price{feed="c",symbol="S4"} ' in text
        assert kept.errors.counts["book"] == 2 * scrape
    record("S5", 7.0, 7000)                      # a good update heals it
    text = same()
    assert 'feedwatch_symbol_price{feed="c",symbol="S5"} 7.0\n' in text
    assert kept.errors.counts["book"] == 6 and not any(chunk.bad for chunk in kept._chunks["c"])


def test_a_percent_sign_in_a_label_is_rendered_verbatim(clock: FakeClock) -> None:
    """The per-symbol lines are format strings filled by ``%`` (issue 14): a ``%`` in a label
    value (the config refuses it in symbols, a run-time add does not check for it) is text, in
    every family, the frozen one included (its format string is built only when needed)."""
    config = load_data({"feeds": [{"name": "c", "kind": "polygon", "url": "wss://c.invalid", "symbols": ["OK"],
                                   "thresholds": {"frozen": {"updates": 2, "duration": "1s"}}}]}, environ={})
    book = Book(config.feeds, clock.time())
    feed = book.feeds["c"]
    feed.add_symbol("A%dB", clock.time())
    for i in range(5):                   # one trade price repeated: frozen
        feed.record("A%dB", 10.0, 1_700_000_000_000 + i, clock.time() + i)
    text = BookCollector(book).render(clock.time() + 10)
    lines = [line for line in text.splitlines() if 'symbol="A%dB"' in line]
    assert len(lines) == 7 and 'feedwatch_symbol_frozen{feed="c",symbol="A%dB"} 1' in lines
    assert 'feedwatch_symbol_price{feed="c",symbol="A%dB"} 10.0' in lines
