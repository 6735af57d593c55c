"""The tick sink's pure parts: the book's tape (what is appended, the bound, drops), row conversion,
the ``tick_sink:`` section and where rows go, and the metrics (checked by promtool)."""

from __future__ import annotations

import logging
import math
import sqlite3
import subprocess
from dataclasses import dataclass
from typing import ClassVar

import pytest

from exporter.book import TAPE_SLOTS, Book, TickTape
from exporter.clock import FakeClock
from exporter.config import ConfigError, load_data
from exporter.feeds.binance import BinanceAdapter
from exporter.feeds.bybit import BybitAdapter
from exporter.feeds.polygon import PolygonAdapter
from exporter.journal.config import JournalConfig
from exporter.ticks.collector import TickSinkCollector
from exporter.ticks.backends import SqliteBackend
from exporter.ticks.config import TickSinkConfig, resolve
from exporter.ticks.rows import clean_size, prepare, to_ns
from exporter.ticks.sink import TickSink

T0 = 1_700_000_000.0


@dataclass
class T:
    symbol: str
    price: float
    ts: int = 0
    is_quote: ClassVar[bool] = False   # no ``size`` attribute: a plugin venue's trade may have none


@dataclass
class Q:
    symbol: str
    bid: float
    ask: float
    ts: int = 0
    is_quote: ClassVar[bool] = True


def make_book(kind: str = "polygon", symbols=("AAPL", "MSFT"), **extra) -> Book:
    spec = {"name": "stocks", "kind": kind, "url": "ws://x", "symbols": list(symbols), **extra}
    if kind == "polygon":
        spec["api_key"] = "k"
    return Book(load_data({"feeds": [spec]}, environ={}).feeds, T0)


def rows_of(tape: TickTape) -> list[tuple]:
    """The tape's rows as the sink writes them, without run and seq: (time_ns, feed, symbol,
    price, size, source, exchange_time_ns)."""
    return [row[2:] for row in prepare(tape.frames, "run", 1)]


def entries(tape: TickTape) -> list[tuple]:
    """The tape's entries, one per frame: (feed, receive time, items or one update, fixes)."""
    flat = tape.frames
    return [tuple(flat[i:i + TAPE_SLOTS]) for i in range(0, len(flat), TAPE_SLOTS)]


def ns(seconds: float) -> int:
    return round(seconds * 1e9)


def test_frames_go_on_the_tape_by_reference_with_only_the_accepted_updates_in_rows():
    book = make_book()
    tape = TickTape(100)
    book.attach_tape(tape)
    feed = book.feeds["stocks"]
    frame = [Q("AAPL", 10.0, 10.2, 1_700_000_000_123), Q("AAPL", 11.0, 10.0),      # crossed: rejected
             Q("NOPE", 1.0, 2.0), T("MSFT", -1.0), T("MSFT", 50.0, 1_700_000_000_124),
             T("MSFT", 50.0, 0), Q("AAPL", 0.0, 10.4),                            # one-sided: its ask
             Q("AAPL", 10.0, 10.2, 99)]                                           # implausible time: rejected
    feed.apply(frame, T0 + 1)
    # The hot path copied nothing: the frame's own list is on the tape, with the slow branches'
    # corrections (the rejected and held updates, the one price that is not its update's own).
    assert len(entries(tape)) == 1 and entries(tape)[0][2] is frame
    assert entries(tape)[0][3] == {id(frame[i]): None for i in (1, 2, 3, 4, 7)} | {id(frame[6]): 10.4}
    assert rows_of(tape) == [
        (ns(T0 + 1), "stocks", "AAPL", (10.0 + 10.2) * 0.5, None, "quote", 1_700_000_000_123_000_000),
        # MSFT's first print is held by the first-print guard (not accepted); the second confirms it.
        (ns(T0 + 1), "stocks", "MSFT", 50.0, None, "trade", None),
        (ns(T0 + 1), "stocks", "AAPL", 10.4, None, "quote", None),
    ]
    assert feed.symbols["AAPL"].price == 10.4
    # The held print counts as accepted once confirmed (updates), but only its price was kept, not
    # its time or size: it is the one accepted update the tape does not carry (one per symbol at most).
    accepted = sum(s.updates for s in feed.symbols.values())
    assert tape.rows == len(rows_of(tape)) == accepted - 1 and tape.dropped == 0
    # apply_one (single-event venues) and record (the in-process Monitor) put frames of one.
    one = Q("AAPL", 10.0, 10.4)
    assert feed.apply_one(one, T0 + 2)
    assert entries(tape)[-1] == ("stocks", T0 + 2, one, None) and entries(tape)[-1][2] is one
    assert feed.record("AAPL", 10.3, 0, T0 + 3, quote=True)
    assert feed.apply_one(Q("AAPL", 0.0, 10.5), T0 + 4)                    # one-sided: corrected
    assert feed.apply_one(Q("AAPL", 0.0, -1.0), T0 + 5) is False           # rejected: not on the tape
    assert rows_of(tape)[-3:] == [(ns(T0 + 2), "stocks", "AAPL", (10.0 + 10.4) * 0.5, None, "quote", None),
                                  (ns(T0 + 3), "stocks", "AAPL", 10.3, None, "quote", None),
                                  (ns(T0 + 4), "stocks", "AAPL", 10.5, None, "quote", None)]
    assert tape.rows == len(rows_of(tape)) == sum(s.updates for s in feed.symbols.values()) - 1


def test_rows_carry_the_price_the_book_accepted_whatever_the_frame_held():
    """Random frames mixing every kind of update the book refuses or corrects: the tape's rows are
    exactly the accepted updates (as counted by the book and the tape), each at the book's price."""
    import random

    rnd = random.Random(13)
    symbols = [f"S{i}" for i in range(8)]
    book = make_book(symbols=symbols)
    tape = TickTape(10 ** 6)
    book.attach_tape(tape)
    feed = book.feeds["stocks"]

    def update():
        symbol = rnd.choice(symbols + ["NOPE"])
        ts = rnd.choice([0, 1_700_000_000_000 + rnd.randrange(10 ** 6), 7, 10 ** 30])
        price = rnd.choice([rnd.uniform(1, 100), 0.0, -1.0, math.nan, math.inf, 1e308])
        if rnd.random() < 0.5:
            return T(symbol, price, ts)
        other = rnd.choice([price, price * 1.001, 0.0, math.nan, 1e308, price * 0.9])
        return Q(symbol, price, other, ts)

    for n in range(400):
        frame = [update() for _ in range(rnd.randrange(1, 12))]
        before = len(rows_of(tape))
        updates = sum(s.updates for s in feed.symbols.values())
        if rnd.random() < 0.3 and len(frame) == 1:
            feed.apply_one(frame[0], T0 + n)
        else:
            feed.apply(frame, T0 + n)
        rows = rows_of(tape)
        assert len(rows) == tape.rows
        new = rows[before:]
        # Every accepted update made one row (bar a confirmed held first print: counted twice by
        # the book, one row), and each symbol's last row has the price the book now holds.
        assert len(new) <= sum(s.updates for s in feed.symbols.values()) - updates <= len(new) + len(frame)
        last = {row[2]: row[3] for row in new}
        for symbol, price in last.items():
            assert feed.symbols[symbol].price == price, (n, symbol)
        assert all(0.0 < row[3] < math.inf for row in new)
    assert tape.rows > 200 and tape.dropped == 0


def test_trade_sizes_are_decoded_only_for_a_sink_and_reach_the_rows_cleaned():
    clock = FakeClock(T0)
    frame = (b'[{"ev":"Q","sym":"AAPL","bp":9.9,"ap":10.1,"bs":3,"as":4,"t":1700000000000000001},'
             b'{"ev":"T","sym":"AAPL","p":10.0,"s":100,"t":1700000000000000002},'
             b'{"ev":"T","sym":"AAPL","p":10.0,"s":"junk","t":1700000000000000003}]')
    # Without a sink the hot path decodes what the book needs and no more: no sizes.
    book = make_book()
    feed = book.feeds["stocks"]
    seen: list = []
    apply = feed.apply
    feed.apply = lambda items, now: (seen.extend(items), apply(items, now))  # type: ignore[method-assign]
    PolygonAdapter(feed.config, feed, "0").handle(frame, clock.time())
    assert [hasattr(item, "size") for item in seen] == [False, False, False] and feed.symbols["AAPL"].updates == 3

    book = make_book()
    tape = TickTape(100)
    book.attach_tape(tape)
    adapter = PolygonAdapter(book.feeds["stocks"].config, book.feeds["stocks"], "0")
    adapter.handle(frame, clock.time())
    assert [item.size for item in entries(tape)[0][2][1:]] == [100, "junk"]   # as sent
    assert [(r[2], r[4], r[6]) for r in rows_of(tape)] == [
        ("AAPL", None, 1700000000000000001), ("AAPL", 100.0, 1700000000000000002), ("AAPL", None, 1700000000000000003)]
    # A bad size never costs the price: both trades were accepted; the size is cleaned on the way out.
    assert book.feeds["stocks"].symbols["AAPL"].updates == 3
    # A frame with a status takes the general path: sizes there too.
    adapter.handle(b'[{"ev":"status","status":"success","message":"x"},{"ev":"T","sym":"AAPL","p":10.0,"s":7,'
                   b'"t":1700000000000000004}]', clock.time())
    assert rows_of(tape)[-1][4] == 7.0

    def binance(tape):
        book = make_book("binance", symbols=("BNBBTC",))
        if tape is not None:
            book.attach_tape(tape)
        feed = book.feeds["stocks"]
        adapter = BinanceAdapter(feed.config, feed, "0")
        for trade_id in (1, 2, 3, 5):
            adapter.handle('{"stream":"bnbbtc@trade","data":{"e":"trade","E":1672515782136,"s":"BNBBTC","t":%d,'
                           '"p":"0.001","q":"100.5","T":1672515782136,"m":true,"M":true}}' % trade_id, clock.time())
        return feed
    feed = binance(None)
    assert feed.symbols["BNBBTC"].updates == 4 and feed.sequence_gaps == 1   # ids checked without a sink ...
    tape = TickTape(10)
    feed = binance(tape)
    assert feed.symbols["BNBBTC"].updates == 4 and feed.sequence_gaps == 1   # ... and with one
    assert type(entries(tape)[0][2]).__name__ == "SizedTrade"
    assert [r[4] for r in rows_of(tape)] == [100.5, 100.5, 100.5]   # the first print, held, is not on the tape

    bybit = make_book("bybit", symbols=("BTCUSDT",))
    tape = TickTape(10)
    bybit.attach_tape(tape)
    feed = bybit.feeds["stocks"]
    adapter = BybitAdapter(feed.config, feed, "0")
    for price in ("16578.50", "16578.60"):
        adapter.handle('{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,'
                       '"s":"BTCUSDT","S":"Buy","v":"0.001","p":"%s","L":"PlusTick","i":"x","BT":false}]}' % price,
                       clock.time())
    assert [(r[3], r[4]) for r in rows_of(tape)] == [(16578.6, 0.001)]


def test_every_venue_hands_the_tape_updates_that_later_frames_leave_alone():
    """The tape keeps each frame's updates by reference until the sink takes them (seconds), so
    no adapter may reuse or change them: rows taken after more frames are the rows as accepted."""
    def polygon(i):
        return (b'[{"ev":"Q","sym":"X","bp":%d.0,"ap":%d.5,"t":170000000000000000%d},'
                b'{"ev":"T","sym":"X","p":%d.25,"s":%d,"t":170000000000000000%d}]' % (i, i, i, i, i, i))

    def binance(i):
        return ('{"stream":"x@trade","data":{"e":"trade","E":1672515782136,"s":"X","t":%d,"p":"%d.25","q":"%d",'
                '"T":167251578213%d,"m":true,"M":true}}' % (i, i, i, i))

    def bybit_trade(i):
        return ('{"topic":"publicTrade.X","type":"snapshot","ts":1672304486868,"data":[{"T":167230448686%d,'
                '"s":"X","S":"Buy","v":"%d","p":"%d.25","L":"PlusTick","i":"x","BT":false}]}' % (i, i, i))

    def bybit_ticker(i):   # deltas merged into the adapter's per-symbol state: a fresh update each
        return ('{"topic":"tickers.X","type":"%s","ts":167230448686%d,"data":{"symbol":"X","bid1Price":"%d",'
                '"ask1Price":"%d.5","lastPrice":"%d"}}' % ("snapshot" if i == 1 else "delta", i, i, i, i))

    def generic(i):
        return '{"data":[{"symbol":"X","bid":%d,"ask":%d.5}]}' % (i, i)

    from exporter.feeds.generic import GenericAdapter
    cases = [("polygon", {}, PolygonAdapter, polygon), ("binance", {}, BinanceAdapter, binance),
             ("bybit", {"channels": ["publicTrade"]}, BybitAdapter, bybit_trade),
             ("bybit", {"channels": ["tickers"]}, BybitAdapter, bybit_ticker),
             ("generic", {"records": "data", "fields": {"symbol": "symbol", "bid": "bid", "ask": "ask"}},
              GenericAdapter, generic)]
    for kind, options, adapter_class, make_frame in cases:
        book = make_book(kind, symbols=("X",), **options)
        tape = TickTape(100)
        book.attach_tape(tape)
        feed = book.feeds["stocks"]
        adapter = adapter_class(feed.config, feed, "0")
        seen = []
        for i in range(1, 6):
            adapter.handle(make_frame(i), T0 + i)
            seen.append(rows_of(tape))
        assert len(seen[-1]) >= 3, (kind, seen[-1])
        for earlier in seen:
            assert seen[-1][:len(earlier)] == earlier, kind


def test_the_tape_is_bounded_and_counts_what_it_drops():
    book = make_book()
    tape = TickTape(3)
    book.attach_tape(tape)
    feed = book.feeds["stocks"]
    feed.apply([Q("AAPL", 1.0, 1.0), Q("AAPL", 2.0, 2.0)], T0)          # 2 rows: room left
    feed.apply([Q("AAPL", 3.0, 3.0), Q("AAPL", 4.0, 4.0)], T0)          # room when it came: 4 rows
    # Full: of these three, the two accepted are counted as dropped (not the unknown symbol).
    feed.apply([Q("AAPL", 5.0, 5.0), Q("NOPE", 1.0, 1.0), Q("MSFT", 6.0, 6.0)], T0)
    assert feed.apply_one(Q("AAPL", 7.0, 7.0), T0)                       # accepted (the book is updated) ...
    assert tape.rows == 4 and len(rows_of(tape)) == 4 and tape.dropped == 3   # ... but dropped from the tape
    assert feed.symbols["AAPL"].price == 7.0
    frames, rows = tape.take(held_rows=0)
    assert len(frames) == 2 * TAPE_SLOTS and rows == 4 and tape.frames == [] and tape.depth == 0
    # Rows the sink still holds count against the bound: 4 rows held leaves no room on the tape.
    assert tape.limit == 0
    feed.apply([Q("AAPL", 8.0, 8.0)], T0)
    assert tape.dropped == 4
    tape.release(1)                                                      # the sink wrote all but one row
    feed.apply([Q("AAPL", 9.0, 9.0), Q("AAPL", -9.0, -9.0)], T0)
    assert tape.depth == 1 and tape.dropped == 4


def test_feeds_added_later_use_the_tape():
    book = make_book()
    tape = TickTape(10)
    book.attach_tape(tape)
    added = book.add_feed(load_data({"feeds": [{"name": "more", "kind": "polygon", "url": "ws://x", "api_key": "k",
                                                "symbols": ["X"]}]}, environ={}).feeds[0], T0)
    added.apply([Q("X", 1.0, 1.0)], T0)
    assert rows_of(tape) == [(ns(T0), "more", "X", 1.0, None, "quote", None)]


def test_rest_fallback_prices_are_written_with_source_rest_and_count_against_the_bound():
    book = make_book()
    tape = TickTape(2)
    book.attach_tape(tape)
    feed = book.feeds["stocks"]
    assert feed.apply_rest("AAPL", 100.0, 100.2, 1_700_000_000_000_000_000, T0 + 1)   # NBBO: the mid, venue ns
    assert feed.apply_rest("MSFT", 50.0, 50.0, 0, T0 + 2)                             # a last trade, no stamp
    assert not feed.apply_rest("MSFT", 51.0, 51.0, 0, T0 + 2)    # no newer than the book's: not applied, no row
    assert rows_of(tape) == [(ns(T0 + 1), "stocks", "AAPL", 100.1, None, "rest", 1_700_000_000_000_000_000),
                             (ns(T0 + 2), "stocks", "MSFT", 50.0, None, "rest", None)]
    assert feed.apply_rest("AAPL", 101.0, 101.0, 0, T0 + 3)       # applied, but the tape is full: counted
    assert tape.rows == 2 and tape.dropped == 1


@pytest.mark.parametrize("ts, ns", [
    (0, None),
    (1_700_000_000, 1_700_000_000_000_000_000),
    (1_700_000_000.25, 1_700_000_000_250_000_000),
    (1_700_000_000_123, 1_700_000_000_123_000_000),
    (1_700_000_000_123_456, 1_700_000_000_123_456_000),
    (1_700_000_000_123_456_789, 1_700_000_000_123_456_789),   # exact: a float would round it
])
def test_timestamps_become_exact_nanoseconds(ts, ns):
    assert to_ns(ts) == ns


@pytest.mark.parametrize("size, clean", [
    (100, 100.0), ("100.5", 100.5), ("0.001", 0.001), (0, 0.0), (None, None), ("junk", None),
    (-1, None), (math.nan, None), (math.inf, None), ("1" * 400, None), (10 ** 400, None), ([1], None), ({}, None),
])
def test_sizes_are_cleaned(size, clean):
    assert clean_size(size) == clean


def test_rows_are_numbered_typed_and_in_order():
    a, b, c, d = Q("A", 10.0, 11.0), T("B", 2.0, 1_700_000_000_001), T("C", 3.0), Q("D", 0.0, 4.0)
    b.size = "3"                                     # as a venue's quoted decimal
    frames = ["f", T0 + 0.5, [a, b], None, "g", T0 + 1, (c, d), {id(c): None, id(d): 4.0}]
    assert prepare(frames, "run1", 7) == [
        ("run1", 7, 1_700_000_000_500_000_000, "f", "A", 10.5, None, "quote", None),
        ("run1", 8, 1_700_000_000_500_000_000, "f", "B", 2.0, 3.0, "trade", 1_700_000_000_001_000_000),
        ("run1", 9, 1_700_000_001_000_000_000, "g", "D", 4.0, None, "quote", None),
    ]
    # Rows of one symbol share its string, however many decoded copies the frames held.
    rows = prepare(["f", T0, [Q("".join("AB"), 1.0, 1.0), Q("".join("AB"), 2.0, 2.0)], None], "r", 1)
    assert rows[0][4] is rows[1][4]


def test_the_section_checks_its_keys_with_their_paths(tmp_path):
    base = {"feeds": [{"name": "s", "kind": "polygon", "url": "ws://x", "api_key": "k", "symbols": ["A"]}]}
    assert load_data(base, environ={}).tick_sink is None       # absent: no sink, no tape
    config = load_data({**base, "tick_sink": {}}, environ={}).tick_sink
    assert config == TickSinkConfig() and config.flush_interval == 2.0 and config.sink == "journal"
    with pytest.raises(ConfigError) as err:
        load_data({**base, "tick_sink": {"sink": "mysql", "table": "ticks; DROP TABLE x", "batch_size": 0,
                                         "buffer_limit": 10, "flush_intervall": "1s", "path": "x.sqlite",
                                         "url": "clickhouse:8123", "password_file": str(tmp_path / "missing")}},
                  environ={})
    text = str(err.value)
    for expected in ("tick_sink.sink:", "tick_sink.table: expected a plain SQL name", "tick_sink.batch_size: must be",
                     "tick_sink.flush_intervall: unknown key", "tick_sink.password_file: cannot read"):
        assert expected in text, text
    with pytest.raises(ConfigError) as err:
        load_data({**base, "tick_sink": {"sink": "clickhouse", "url": "clickhouse:8123", "path": "x.sqlite",
                                         "batch_size": 100, "buffer_limit": 10}}, environ={})
    for expected in ("tick_sink.url: expected the ClickHouse HTTP interface", "tick_sink.path: a SQLite file",
                     "tick_sink.buffer_limit: must be at least batch_size"):
        assert expected in str(err.value), str(err.value)


def test_rows_go_to_the_journals_database_by_default(tmp_path):
    journal_file = str(tmp_path / "state" / "journal.sqlite")
    assert resolve(TickSinkConfig(), JournalConfig(), journal_file) == ("sqlite", str(tmp_path / "state" / "ticks.sqlite"))
    pg = JournalConfig(sink="postgres", dsn="host=db")
    assert resolve(TickSinkConfig(), pg, None) == ("postgres", "host=db")
    assert resolve(TickSinkConfig(sink="clickhouse", url="http://ch:8123"), pg, None) == ("clickhouse", "http://ch:8123")
    assert resolve(TickSinkConfig(path="/x/t.sqlite"), JournalConfig(), None) == ("sqlite", "/x/t.sqlite")
    with pytest.raises(ValueError, match="tick_sink.path"):
        resolve(TickSinkConfig(), JournalConfig(), None)          # the journal keeps memory only
    with pytest.raises(ValueError, match="tick_sink.dsn"):
        resolve(TickSinkConfig(sink="postgres"), JournalConfig(), journal_file)


async def test_refused_writes_are_logged_once_a_minute_with_their_context(tmp_path, caplog, skip_ahead):
    """A database refusing writes (another connection holds SQLite's lock): the first failure is
    logged with the backend, the error, the rows held and the limit; repeats within the minute are
    only counted, and said with the next report; the first success after them is said once, and
    starts the count afresh."""
    book = make_book()
    tape = TickTape(1000)
    book.attach_tape(tape)
    path = tmp_path / "ticks.sqlite"
    backend = SqliteBackend(str(path), "feedwatch_ticks", 0.02)      # refused at once
    backend.open()
    backend.close()
    sink = TickSink(TickSinkConfig(buffer_limit=1000, batch_size=100), backend, tape, FakeClock(T0))
    caplog.set_level(logging.INFO, logger="exporter.ticks.sink")
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        for n in range(2):
            book.feeds["stocks"].apply([Q("AAPL", 10.0 + n, 10.2 + n)], T0 + n)
            assert not await sink.flush()             # the second within the minute: counted only
        skip_ahead(61)
        assert not await sink.flush()
        assert not await sink.flush()                 # counted, then forgotten by the recovery
        lock.execute("COMMIT")
        assert await sink.flush()
        lock.execute("BEGIN EXCLUSIVE")
        skip_ahead(61)
        book.feeds["stocks"].apply([Q("AAPL", 12.0, 12.2)], T0 + 2)
        assert not await sink.flush()
    finally:
        if lock.in_transaction:
            lock.execute("COMMIT")
        lock.close()
        await sink.stop()
    refused = "tick sink: cannot write to sqlite: OperationalError: database is locked; {} row(s) held in memory " \
              "(limit 1000), retrying"
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", refused.format(1)),
        ("WARNING", refused.format(2) + " (1 more failure(s) since the last report)"),
        ("INFO", "tick sink: writing to sqlite again (1 row(s) still held)"),  # after the first of two batches
        ("WARNING", refused.format(1)),
    ]


class _Backend:
    name = "sqlite"


def test_metrics_are_what_the_docstring_shows_and_promtool_accepts():
    sink = TickSink(TickSinkConfig(), _Backend(), TickTape(10), FakeClock(T0))  # type: ignore[arg-type]
    sink.written, sink.writes_ok, sink.writes_failed = 1250, 3, 1
    sink.tape.dropped = 2
    sink._observe(0.02)
    text = TickSinkCollector(sink).render(T0)
    for line in ('feedwatch_tick_sink_rows_total{sink="sqlite",result="written"} 1250',
                 'feedwatch_tick_sink_rows_total{sink="sqlite",result="dropped"} 2',
                 'feedwatch_tick_sink_batches_total{sink="sqlite",result="error"} 1',
                 'feedwatch_tick_sink_batch_duration_seconds_bucket{sink="sqlite",le="0.025"} 1',
                 'feedwatch_tick_sink_batch_duration_seconds_bucket{sink="sqlite",le="+Inf"} 1',
                 'feedwatch_tick_sink_buffer_rows{sink="sqlite"} 0',
                 'feedwatch_tick_sink_buffer_limit_rows{sink="sqlite"} 500000',
                 'feedwatch_tick_sink_last_write_success_timestamp_seconds{sink="sqlite"} 0'):
        assert line in text, line
    import exporter.ticks.collector as module
    for name in module.FAMILIES:
        assert f"# TYPE {name} " in module.__doc__, name
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
