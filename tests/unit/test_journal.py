"""The incident journal on its default sink, SQLite: incidents from what the book and the tracker
report, the bounded buffer while the database refuses writes, adoption after a restart.

The database "going away" is real: another connection holds SQLite's exclusive lock, so every
write of the journal fails with "database is locked" until the lock is released.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading

import pytest

from exporter.book import Book
from exporter.clock import FakeClock
from exporter.config import load_data
from exporter.feeds.recorder import Recorder
from exporter.journal import journal as journal_module
from exporter.journal import recordings as recordings_module
from exporter.journal.config import JournalConfig
from exporter.journal.journal import Journal
from exporter.journal.records import Event, Query
from exporter.journal.sqlite import SqliteSink
from exporter.journal.writer import Writer
from exporter.trading.tracker import Tracker
from tests.waiting import async_wait_for


def book_for(clock: FakeClock) -> Book:
    config = load_data({"feeds": [{"name": "stocks", "kind": "polygon", "url": "wss://x.invalid", "api_key": "k",
                                   "symbols": ["AAPL", "MSFT"]}]}, environ={})
    book = Book(config.feeds, clock.time())
    feed = book.feeds["stocks"]
    feed.connected("0", clock.time())
    for symbol in ("AAPL", "MSFT"):
        feed.record(symbol, 100.0, 0, clock.time(), quote=True)
    return book


def journal_for(path, clock, book=None, **settings) -> Journal:
    config = JournalConfig(path=str(path), replica="test", flush_interval=0.02, write_timeout=5.0, **settings)
    journal = Journal(config, SqliteSink(str(path)), clock, book)
    if book is not None:
        book.listeners.append(journal.on_transition)
        book.connection_listeners.append(journal.on_connection)
    return journal


def rows(path, table: str, columns: str = "*") -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT {columns} FROM {table}").fetchall()


async def test_a_symbol_incident_opens_escalates_and_resolves_with_its_whole_silence(tmp_path, clock):
    book = book_for(clock)
    journal = journal_for(tmp_path / "journal.sqlite", clock, book)
    await journal.start()
    try:
        feed = book.feeds["stocks"]
        silent_since = clock.time()
        clock.advance(200)
        feed.record("MSFT", 101.0, 0, clock.time(), quote=True)
        book.sweep(clock.time())                      # AAPL: healthy -> degraded (200 s > 180 s)
        clock.advance(150)
        feed.record("MSFT", 101.0, 0, clock.time(), quote=True)
        book.sweep(clock.time())                      # stale (350 s)
        clock.advance(10)
        feed.record("AAPL", 100.5, 0, clock.time(), quote=True)  # the update that ends the silence
        clock.advance(0.7)
        book.sweep(clock.time())                      # healthy again
        assert await journal.writer.drained(10)

        (incident,) = await journal.sink.incidents(Query(symbol="AAPL"))
        assert (incident.kind, incident.feed, incident.level, incident.worst_level) == ("symbol", "stocks", "stale", "stale")
        assert incident.silent_since == pytest.approx(silent_since)
        assert incident.opened_at == pytest.approx(silent_since + 200)
        assert incident.resolved_at == pytest.approx(silent_since + 360.7)
        # The whole silence: the resolving update's time minus when it began, not the sweep's.
        assert incident.worst_value == pytest.approx(360.0)
        assert "updated again" in incident.reason
        assert not await journal.sink.incidents(Query(symbol="MSFT"))
        transitions = [(e.symbol, e.detail, e.count) for e in reversed(await journal.sink.events())
                       if e.kind == "transition"]
        assert transitions == [("AAPL", "healthy -> degraded", 1), ("AAPL", "degraded -> stale", 1),
                               ("AAPL", "stale -> healthy", 2)]
    finally:
        await journal.stop()


async def test_feed_incidents_open_on_unplanned_disconnects_only(tmp_path, clock):
    book = book_for(clock)
    journal = journal_for(tmp_path / "journal.sqlite", clock, book)
    await journal.start()
    try:
        feed = book.feeds["stocks"]
        feed.disconnected("0", "rollover", clock.time())      # planned: an event, no incident
        feed.connected("0", clock.advance(0.1))
        feed.disconnected("0", "heartbeat_timeout", clock.advance(5))
        feed.connected("0", clock.advance(42))
        assert await journal.writer.drained(10)
        (incident,) = await journal.sink.incidents(Query(kind="feed"))
        assert incident.feed == "stocks" and incident.reason.startswith("heartbeat_timeout")
        assert incident.resolved_at - incident.opened_at == pytest.approx(42)
        assert incident.worst_value == pytest.approx(42)
        log = [(e.kind, e.detail) for e in reversed(await journal.sink.events()) if e.kind in ("connect", "disconnect")]
        assert log == [("disconnect", "rollover"), ("connect", ""), ("disconnect", "heartbeat_timeout"), ("connect", "")]
    finally:
        await journal.stop()


def tracker_for(clock: FakeClock) -> Tracker:
    section = load_data({"trading": {"accounts": [{"name": "main"}],
                                     "limits": {"drawdown_daily": 0.05, "consecutive_losses": 3}}}).trading
    return Tracker(section, clock.time())


def send(tracker: Tracker, clock: FakeClock, kind: str, n: int, **fields) -> None:
    event = {"type": kind, "account": "main", "id": f"{kind}-{n}", "ts": clock.time(), **fields}
    assert tracker.ingest_json(json.dumps([event]), clock.time()).accepted == 1


async def test_trading_breaches_and_safety_switches_are_incidents(tmp_path, clock):
    tracker = tracker_for(clock)
    journal = journal_for(tmp_path / "journal.sqlite", clock)
    journal.tracker = tracker
    tracker.listeners.append(journal.on_trading)
    await journal.start()
    try:
        send(tracker, clock, "equity", 1, equity=10_000)
        clock.advance(60)
        send(tracker, clock, "equity", 2, equity=9_400)           # 6 % below the day's peak
        clock.advance(60)
        send(tracker, clock, "safety", 3, kill_switch=True, reason="operator stop")
        clock.advance(60)
        send(tracker, clock, "safety", 4, kill_switch=False, reason="resumed")
        send(tracker, clock, "equity", 5, equity=9_900)           # 1 %: back within the limit
        assert await journal.writer.drained(10)
        incidents = {i.level: i for i in await journal.sink.incidents(Query(kind="trading"))}
        assert set(incidents) == {"drawdown_daily", "kill_switch"}
        drawdown = incidents["drawdown_daily"]
        assert drawdown.worst_value == pytest.approx(0.06) and drawdown.reason == "6.00 % >= limit 5.00 %"
        assert drawdown.resolved_at == pytest.approx(clock.time())
        kill = incidents["kill_switch"]
        assert kill.reason == "operator stop" and kill.resolved_at - kill.opened_at == pytest.approx(60)
        kinds = [(e.kind, e.state, e.detail) for e in reversed(await journal.sink.events())]
        assert ("kill_switch", "active", "operator stop") in kinds and ("kill_switch", "inactive", "resumed") in kinds
        assert [k for k, _, _ in kinds if k in ("breach", "recovered")] == ["breach", "recovered"]
    finally:
        await journal.stop()


async def test_reloads_are_journaled(tmp_path, clock):
    journal = journal_for(tmp_path / "journal.sqlite", clock)
    await journal.start()
    try:
        journal.record_reload(True)
        clock.advance(1)
        journal.record_reload(False, ["feeds[0].url: required key is missing", "listen: bad"])
        assert await journal.writer.drained(10)
        events = [(e.kind, e.state, e.count, e.detail) for e in reversed(await journal.sink.events())]
        assert events == [("reload", "ok", 0, ""),
                          ("reload", "failed", 2, "feeds[0].url: required key is missing; listen: bad")]
    finally:
        await journal.stop()


class Locked:
    """Another connection holding SQLite's exclusive lock: every write of the journal fails."""

    def __init__(self, path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA busy_timeout=0")
        self.db.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.db.execute("COMMIT")
        self.db.close()


async def test_while_the_database_refuses_writes_rows_wait_bounded_and_drain_when_it_returns(tmp_path, clock):
    path = tmp_path / "journal.sqlite"
    journal = journal_for(path, clock, buffer_limit=30, batch_size=10)
    await journal.start()                 # creates the file and its tables
    lock = Locked(path)
    try:
        for n in range(50):
            journal.record_reload(True, [], f"reload {n}")
            await asyncio.sleep(0)
        await async_wait_for(lambda: journal.writer.writes_failed >= 2, timeout=30, what="failed writes")
        # Bounded: the 20 oldest were dropped and counted, the 30 newest wait.
        assert journal.writer.dropped == 20 and journal.writer.depth == 30
        assert rows(path, "feedwatch_events", "count(*)") == [(0,)]
        lock.release()
        await async_wait_for(lambda: journal.writer.depth == 0, timeout=30, what="the buffer to drain")
        details = sorted(int(d.split()[1]) for (d,) in rows(path, "feedwatch_events", "detail"))
        assert details == list(range(20, 50))  # nothing twice, nothing of the kept ones lost
        assert journal.writer.written == 30
    finally:
        if lock.db is not None:
            try:
                lock.release()
            except sqlite3.ProgrammingError:
                pass
        await journal.stop()


async def test_refused_writes_are_logged_once_a_minute_with_their_context(tmp_path, clock, caplog, skip_ahead):
    """The database refusing writes: the first failure is logged with the sink, the error, the rows
    waiting and the limit; repeats within the minute are only counted, and said with the next
    report; the first success after them is said once, and starts the count afresh."""
    path = tmp_path / "journal.sqlite"
    sink = SqliteSink(str(path))
    await sink.open()
    sink._db.execute("PRAGMA busy_timeout=20")        # refused at once, not after the sink's 2 s
    writer = Writer(sink, clock, buffer_limit=1000)
    caplog.set_level(logging.INFO, logger="exporter.journal.writer")
    lock = Locked(path)
    try:
        for n in range(2):
            writer.put(Event(id=f"e{n}", at=clock.time(), kind="reload", detail=f"reload {n}"))
            assert not await writer.flush()           # the second within the minute: counted only
        skip_ahead(61)
        assert not await writer.flush()
        assert not await writer.flush()               # counted, then forgotten by the recovery
        lock.release()
        assert await writer.flush()
        lock = Locked(path)
        skip_ahead(61)
        writer.put(Event(id="e2", at=clock.time(), kind="reload", detail="reload 2"))
        assert not await writer.flush()
    finally:
        lock.release()
        await sink.close()
    refused = "journal: cannot write to sqlite: OperationalError: database is locked; {} row(s) kept in memory " \
              "(limit 1000), retrying"
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", refused.format(1)),
        ("WARNING", refused.format(2) + " (1 more failure(s) since the last report)"),
        ("INFO", "journal: writing to sqlite again (0 row(s) still waiting)"),
        ("WARNING", refused.format(1)),
    ]


async def test_a_stuck_writer_cannot_hang_the_journal_stop(tmp_path, clock, monkeypatch, caplog):
    """A disk that stops answering: the database write and the incident's recording both hang for
    good. Stopping still ends (each wait has a deadline), says what it left behind, and counts the
    abandoned recording as failed; nothing waits for the stuck threads."""
    book = book_for(clock)
    config = JournalConfig(path=str(tmp_path / "journal.sqlite"), replica="test", flush_interval=0.02,
                           write_timeout=600.0)   # the writer itself would wait for ages
    sink = SqliteSink(config.path)
    recorder = Recorder(None, [book.feeds["stocks"].config], clock)
    recorder.ring("stocks").frames.append((clock.time(), b'[{"ev":"Q","sym":"AAPL"}]'))
    journal = Journal(config, sink, clock, book, recorder=recorder, recordings_dir=str(tmp_path / "recordings"))
    book.listeners.append(journal.on_transition)
    await journal.start()
    release = threading.Event()
    entered: list[str] = []

    def stuck(what: str):
        def hang(*args) -> None:
            entered.append(what)
            release.wait()          # a write that never returns (released at the end of the test)
        return hang

    monkeypatch.setattr(sink, "_write", stuck("database"))
    monkeypatch.setattr(recordings_module, "write_recording", stuck("recording"))
    caplog.set_level(logging.WARNING, logger="exporter.journal")
    try:
        clock.advance(200)
        book.sweep(clock.time())          # AAPL and MSFT degraded: incidents, rows, a recording
        await async_wait_for(lambda: sorted(entered) == ["database", "recording"], timeout=10,
                             what="both writes under way and stuck")
        try:
            await asyncio.wait_for(journal.stop(drain_timeout=0.2), 30)
        except asyncio.TimeoutError:
            pytest.fail("Journal.stop hung on a stuck writer")
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("1 incident recording(s) still being written" in w for w in warnings), warnings
        assert any("row(s) could not be written to sqlite before stopping" in w for w in warnings), warnings
        assert any("sqlite did not close within 0.2s" in w for w in warnings), warnings
        assert journal.recordings.failed == 1 and journal.recordings.saved == 0
    finally:
        release.set()


async def test_adoption_leaves_the_incidents_of_this_run_alone(tmp_path, clock, monkeypatch):
    """Adoption takes over what a previous run left open. It ran whenever the database first
    answered, and took this run's own incidents for leftovers too: one written open, resolved
    since, its resolution still waiting (the database refusing writes), was "resolved" again as
    "feedwatch restarted", at the wrong time."""
    monkeypatch.setattr(journal_module, "TICK", 3600.0)   # this test plays the tick's adoption itself
    book = book_for(clock)
    path = tmp_path / "journal.sqlite"
    journal = journal_for(path, clock, book)
    await journal.start()
    try:
        feed = book.feeds["stocks"]
        feed.disconnected("0", "network_error", clock.advance(1))   # a feed incident, written open
        assert await journal.writer.drained(10)
        lock = Locked(path)                                           # writes fail from here; reads work
        try:
            feed.connected("0", clock.advance(30))                    # resolved; the row waits
            await journal._adopt(clock.advance(5))                    # the database answers a read
        finally:
            lock.release()
        assert await journal.writer.drained(10)
        (incident,) = await journal.sink.incidents(Query(kind="feed"))
        assert incident.reason == "network_error; connected again (connection 0)"
        assert incident.resolved_at - incident.opened_at == pytest.approx(30)
    finally:
        await journal.stop()


async def test_a_newer_incident_version_replaces_the_one_waiting(tmp_path, clock):
    book = book_for(clock)
    path = tmp_path / "journal.sqlite"
    journal = journal_for(path, clock, book)
    await journal.start()
    lock = Locked(path)
    try:
        for step in (200, 150, 3300):        # degraded, stale, critical while nothing can be written
            clock.advance(step)
            book.sweep(clock.time())
        incidents_waiting = [r for r in journal.writer.pending.values() if hasattr(r, "worst_level")]
        assert len(incidents_waiting) == 2   # AAPL's and MSFT's, each in its newest version only
        assert {r.level for r in incidents_waiting} == {"critical"}
    finally:
        lock.release()
    assert await journal.writer.drained(30)
    levels = rows(path, "feedwatch_incidents", "symbol, level, worst_level")
    assert sorted(levels) == [("AAPL", "critical", "critical"), ("MSFT", "critical", "critical")]
    await journal.stop()


async def test_a_restart_resolves_open_symbol_incidents_and_continues_trading_ones(tmp_path, clock):
    path = tmp_path / "journal.sqlite"
    book = book_for(clock)
    tracker = tracker_for(clock)
    first = journal_for(path, clock, book)
    first.tracker = tracker
    tracker.listeners.append(first.on_trading)
    await first.start()
    send(tracker, clock, "safety", 1, kill_switch=True, reason="operator stop")
    clock.advance(200)
    book.sweep(clock.time())
    assert len(first.open) == 3  # AAPL, MSFT, the kill switch
    await first.stop()
    kill_id = next(i.id for i in first.open.values() if i.kind == "trading")

    clock.advance(30)
    second = journal_for(path, clock, book_for(clock))
    second.tracker = tracker                  # the kill switch is still on after the restart
    await second.start()
    try:
        await async_wait_for(lambda: second._adopted, timeout=20, what="the open incidents taken over")
        assert await second.writer.drained(10)
        incidents = await second.sink.incidents(Query())
        by_kind = {}
        for incident in incidents:
            by_kind.setdefault(incident.kind, []).append(incident)
        assert all(i.resolved_at == pytest.approx(clock.time()) and i.reason.endswith("feedwatch restarted")
                   for i in by_kind["symbol"])
        (continued,) = [i for i in by_kind["trading"] if i.resolved_at is None]
        assert continued.id == kill_id and second.open[("trading", "main", "kill_switch")].id == kill_id
    finally:
        await second.stop()


async def test_retention_deletes_old_resolved_incidents_and_events_but_keeps_open_ones(tmp_path, clock):
    book = book_for(clock)
    journal = journal_for(tmp_path / "journal.sqlite", clock, book, retention=3600.0)
    await journal.start()
    try:
        feed = book.feeds["stocks"]
        feed.disconnected("0", "network_error", clock.advance(1))   # resolved long ago
        feed.connected("0", clock.advance(10))
        clock.advance(7200)
        feed.disconnected("0", "network_error", clock.advance(1))   # still open
        assert await journal.writer.drained(10)
        await journal.sink.prune(clock.time() - journal.config.retention)
        (left,) = await journal.sink.incidents(Query())
        assert left.resolved_at is None
        assert [e.kind for e in await journal.sink.events()] == ["disconnect"]
    finally:
        await journal.stop()


async def test_a_failed_prune_leaves_the_database_usable(tmp_path, clock):
    path = tmp_path / "journal.sqlite"
    sink = SqliteSink(str(path))
    await sink.open()
    lock = Locked(path)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await sink.prune(clock.time())
    lock.release()
    from exporter.journal.records import Event

    await sink.write([], [Event(id="e1", at=clock.time(), kind="reload")])  # not "within a transaction"
    assert [e.id for e in await sink.events()] == ["e1"]
    await sink.close()
