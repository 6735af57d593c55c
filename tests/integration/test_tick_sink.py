"""The tick sink against real databases: SQLite files, a PostgreSQL cluster and a ClickHouse server
of our own (Debian's binaries on free loopback ports), each killed or locked mid-stream.

Prices go through ``FeedBook.apply`` (the hot path) onto the tape while a producer task keeps the
event loop busy; the tests check that every accepted price arrives exactly once after an outage
(identity ``(run, seq)``), that what the bounded buffer could not hold is counted as dropped and
nothing else is missing, and that a database that hangs never holds ingest up.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from typing import ClassVar

import pytest

from exporter.book import Book, TickTape
from exporter.clock import FakeClock
from exporter.config import load_data
from exporter.service import Service
from exporter.ticks.backends import ClickHouseBackend, PostgresBackend, SqliteBackend
from exporter.ticks.collector import TickSinkCollector
from exporter.ticks.config import TickSinkConfig
from exporter.ticks.sink import TickSink
from tests.integration.clickhouse import ClickHouseServer
from tests.integration.postgres import PostgresCluster
from tests.waiting import async_wait_for

pytestmark = pytest.mark.integration

SYMBOLS = [f"S{i}" for i in range(40)]
PER_FRAME = 20


@dataclass
class Q:
    symbol: str
    bid: float
    ask: float
    ts: int = 0
    is_quote: ClassVar[bool] = True


class Stream:
    """A feed's book with a tape, and a producer task applying frames of quotes to it."""

    def __init__(self, buffer_limit: int = 1_000_000) -> None:
        self.clock = FakeClock(1_700_000_000.0)
        config = load_data({"feeds": [{"name": "ticks", "kind": "polygon", "url": "ws://x.invalid", "api_key": "k",
                                       "symbols": SYMBOLS}]}, environ={})
        self.book = Book(config.feeds, self.clock.time())
        self.feed = self.book.feeds["ticks"]
        self.tape = TickTape(buffer_limit)
        self.book.attach_tape(self.tape)
        self.frames = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def accepted(self) -> int:
        return sum(state.updates for state in self.feed.symbols.values())

    def frame(self) -> None:
        n = self.frames
        self.frames += 1
        now = self.clock.advance(0.001)
        self.feed.apply([Q(SYMBOLS[(n * PER_FRAME + i) % len(SYMBOLS)], 100.0 + i, 100.5 + i,
                           1_700_000_000_000 + n) for i in range(PER_FRAME)], now)

    def start(self) -> None:
        async def produce() -> None:
            while not self._stop.is_set():
                self.frame()
                await asyncio.sleep(0.002)
        self._task = asyncio.create_task(produce())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


def sink_config(**settings) -> TickSinkConfig:
    defaults = dict(flush_interval=0.05, batch_size=500, write_timeout=2.0)
    defaults.update(settings)
    return TickSinkConfig(**defaults)


# --- SQLite ------------------------------------------------------------------------------------


def sqlite_rows(path) -> tuple[int, int, int, int]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*), count(DISTINCT run || '/' || seq), min(seq), max(seq) "
                          "FROM feedwatch_ticks").fetchone()


async def test_sqlite_locked_mid_stream_loses_nothing_and_drains(tmp_path):
    path = str(tmp_path / "ticks.sqlite")
    stream = Stream()
    sink = TickSink(sink_config(write_timeout=0.3), SqliteBackend(path, "feedwatch_ticks", 0.3), stream.tape,
                    stream.clock)
    await sink.start()
    stream.start()
    locker = None
    try:
        await async_wait_for(lambda: sink.writes_ok >= 3, timeout=30, what="batches written")
        # Another process holds the write lock (a backup, a long reader in rollback mode): writes fail.
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        failed_at = sink.writes_failed
        await async_wait_for(lambda: sink.writes_failed >= failed_at + 2, timeout=30, what="writes failing")
        await async_wait_for(lambda: sink.depth > 1000, timeout=30, what="rows held while locked")
        locker.execute("ROLLBACK")
        await stream.stop()
        await async_wait_for(lambda: sink.depth == 0, timeout=60, what="the buffer to drain")
        accepted = stream.accepted
        assert sqlite_rows(path) == (accepted, accepted, 1, accepted)
        assert sink.written == accepted and sink.dropped == 0
        metrics = TickSinkCollector(sink).render(stream.clock.time())
        assert f'feedwatch_tick_sink_rows_total{{sink="sqlite",result="written"}} {accepted}' in metrics
        assert 'feedwatch_tick_sink_buffer_rows{sink="sqlite"} 0' in metrics
    finally:
        if locker is not None:
            locker.close()
        await stream.stop()
        await sink.stop()


async def test_a_full_buffer_drops_new_rows_and_counts_every_one(tmp_path):
    path = str(tmp_path / "ticks.sqlite")
    stream = Stream(buffer_limit=1000)
    config = sink_config(write_timeout=0.3, buffer_limit=1000, batch_size=200)
    sink = TickSink(config, SqliteBackend(path, "feedwatch_ticks", 0.3), stream.tape, stream.clock)
    await sink.start()
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        stream.start()
        await async_wait_for(lambda: sink.dropped > 2000, timeout=60, what="rows dropped while locked")
        # Bounded: what is held never passes the limit by more than one frame.
        assert sink.depth <= config.buffer_limit + PER_FRAME
        locker.execute("ROLLBACK")
        await stream.stop()
        await async_wait_for(lambda: sink.depth == 0, timeout=60, what="the buffer to drain")
        stored = sqlite_rows(path)[0]
        assert stored == sink.written and stored + sink.dropped == stream.accepted  # lost, but never silently
        assert f'feedwatch_tick_sink_rows_total{{sink="sqlite",result="dropped"}} {sink.dropped}' \
            in TickSinkCollector(sink).render(0.0)
    finally:
        locker.close()
        await stream.stop()
        await sink.stop()


async def test_the_service_writes_ticks_beside_the_journal_and_flushes_at_stop(tmp_path):
    config_data = {
        "feeds": [{"name": "stocks", "kind": "polygon", "url": "ws://127.0.0.1:9/unreachable", "api_key": "k",
                   "symbols": ["AAPL"]}],
        "journal": {"path": str(tmp_path / "journal.sqlite")},
        "tick_sink": {"flush_interval": "1h"},       # only the stop's last flush writes
    }
    config = load_data(config_data, environ={})
    service = Service(config)
    changed = load_data({**config_data, "tick_sink": {"flush_interval": "2s"}}, environ={})
    assert service.check(changed) == ["tick_sink: changing this section takes a restart (the reload changed nothing)"]
    await service.start()
    try:
        service.book.feeds["stocks"].apply([Q("AAPL", 10.0, 10.2), Q("AAPL", 10.1, 10.3)], service.clock.time())
    finally:
        await service.stop()
    assert sqlite_rows(tmp_path / "ticks.sqlite") == (2, 2, 1, 2)
    assert 'feedwatch_tick_sink_rows_total{sink="sqlite",result="written"} 2' in \
        "".join(r(0.0) for r in service.renderers)


# --- PostgreSQL --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    with PostgresCluster.running() as pg:
        yield pg


async def test_postgres_killed_and_restarted_mid_stream_loses_nothing(cluster):
    stream = Stream()
    sink = TickSink(sink_config(), PostgresBackend(cluster.dsn, "feedwatch_ticks", 2.0), stream.tape, stream.clock)
    await sink.start()
    stream.start()
    try:
        await async_wait_for(lambda: sink.writes_ok >= 3, timeout=30, what="batches written")
        cluster.kill()                                                    # SIGKILL the postmaster
        failed_at, frames_at = sink.writes_failed, stream.frames
        await async_wait_for(lambda: sink.writes_failed >= failed_at + 2, timeout=30, what="writes failing")
        await async_wait_for(lambda: stream.frames >= frames_at + 100, timeout=30, what="prices while down")
        assert sink.depth > 0
        cluster.start()                                                   # crash recovery, same data
        await async_wait_for(lambda: sink.writes_ok >= 6 and sink.writing is False, timeout=60,
                             what="writes again")
        await stream.stop()
        await async_wait_for(lambda: sink.depth == 0, timeout=60, what="the buffer to drain")
        accepted = stream.accepted
        assert cluster.query("SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM feedwatch_ticks "
                             "WHERE run = %s", (sink.run_id,)) == [(accepted, accepted, 1, accepted)]
        assert sink.dropped == 0 and sink.written >= accepted
    finally:
        await stream.stop()
        if not cluster.accepting_safely():
            cluster.start()
        await sink.stop()


# --- ClickHouse --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clickhouse():
    with ClickHouseServer.running() as server:
        yield server


def clickhouse_sink(stream: Stream, url: str, **settings) -> TickSink:
    config = sink_config(**settings)
    return TickSink(config, ClickHouseBackend(url, "default", "feedwatch_ticks", "default", "", config.write_timeout),
                    stream.tape, stream.clock)


async def test_clickhouse_killed_and_restarted_mid_stream_loses_nothing(clickhouse):
    stream = Stream()
    sink = clickhouse_sink(stream, clickhouse.url)
    await sink.start()
    stream.start()
    try:
        await async_wait_for(lambda: sink.writes_ok >= 3, timeout=30, what="batches written")
        clickhouse.kill()
        failed_at, frames_at = sink.writes_failed, stream.frames
        await async_wait_for(lambda: sink.writes_failed >= failed_at + 2, timeout=30, what="writes failing")
        await async_wait_for(lambda: stream.frames >= frames_at + 100, timeout=30, what="prices while down")
        assert sink.depth > 0
        clickhouse.start()
        await stream.stop()
        await async_wait_for(lambda: sink.depth == 0, timeout=90, what="the buffer to drain")
        accepted = stream.accepted
        # A batch whose answer was lost with the server may be stored twice until merged: FINAL collapses it.
        counted = clickhouse.query(f"SELECT count(), uniqExact(seq), min(seq), max(seq) FROM feedwatch_ticks FINAL "
                                   f"WHERE run = '{sink.run_id}' FORMAT TSV").split()
        assert [int(v) for v in counted] == [accepted, accepted, 1, accepted]
        sample = clickhouse.query(f"SELECT feed, source, size, exchange_time_ns, time_ns > 1700000000000000000 "
                                  f"FROM feedwatch_ticks WHERE run = '{sink.run_id}' AND seq = 1 FORMAT TSV")
        assert sample == "ticks\tquote\t\\N\t1700000000000000000\t1\n"    # size NULL for a quote; ms -> ns
        assert sink.dropped == 0
    finally:
        await stream.stop()
        if not clickhouse.accepting_safely():
            clickhouse.start()
        await sink.stop()


async def test_a_hung_database_never_holds_ingest_up():
    """A ClickHouse that accepts connections and never answers (a hung server, a black-holed
    network): the write waits in the worker thread until write_timeout while the event loop keeps
    applying frames; the buffer stays bounded and what it cannot hold is counted."""
    hung: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stream = Stream(buffer_limit=2000)
    sink = clickhouse_sink(stream, f"http://127.0.0.1:{port}", write_timeout=3.0, buffer_limit=2000)
    await sink.start()
    stream.start()
    try:
        await async_wait_for(lambda: sink.writing, timeout=30, what="a write in the worker thread")
        frames_at = stream.frames
        # Ingest goes on while that write hangs (the same write: no failure counted yet).
        await async_wait_for(lambda: stream.frames >= frames_at + 100, timeout=30, what="frames during the write")
        assert sink.writing and sink.writes_failed == 0 and sink.writes_ok == 0
        await async_wait_for(lambda: sink.dropped > 0, timeout=60, what="the bounded buffer to drop")
        assert sink.depth <= 2000 + PER_FRAME
        await async_wait_for(lambda: sink.writes_failed >= 1, timeout=30, what="the write to time out")
    finally:
        await stream.stop()
        for writer in hung:
            writer.close()
        server.close()
        await sink.stop()
    assert sink.dropped + sink.written == stream.accepted     # nothing unaccounted for, even at stop
