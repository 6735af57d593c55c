"""The journal on a real PostgreSQL server (Debian's binaries, a cluster of our own on a free port):
killed with SIGKILL and restarted while incidents keep coming, nothing is lost, nothing is
written twice, and the buffer drains; two replicas share one journal.
"""

from __future__ import annotations

import asyncio

import pytest

from exporter.book import Book
from exporter.clock import FakeClock
from exporter.config import load_data
from exporter.journal.collector import JournalCollector
from exporter.journal.config import JournalConfig
from exporter.journal.journal import Journal
from exporter.journal.postgres import PostgresSink
from exporter.journal.records import Event, Query, new_id
from tests.integration.postgres import PostgresCluster
from tests.waiting import async_wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster():
    with PostgresCluster.running() as pg:
        yield pg


def make_journal(cluster: PostgresCluster, clock: FakeClock, replica: str, **settings) -> tuple[Journal, Book]:
    config = load_data({"feeds": [{"name": f"feed-{replica}", "kind": "polygon", "url": "wss://x.invalid",
                                   "api_key": "k", "symbols": ["AAPL"]}]}, environ={})
    book = Book(config.feeds, clock.time())
    journal_config = JournalConfig(sink="postgres", dsn=cluster.dsn, replica=replica, flush_interval=0.05,
                                   batch_size=40, write_timeout=3.0, **settings)
    journal = Journal(journal_config, PostgresSink(cluster.dsn, 3.0), clock, book)
    book.connection_listeners.append(journal.on_connection)
    return journal, book


def outage_cycle(book: Book, journal: Journal, clock: FakeClock, n: int) -> None:
    """One feed outage (an incident, a disconnect and a connect event) and one reload event."""
    feed = next(iter(book.feeds.values()))
    feed.connected("0", clock.advance(1))
    feed.disconnected("0", "network_error", clock.advance(1))
    journal.record_reload(True, [], f"cycle {n}")


async def test_a_killed_and_restarted_server_loses_nothing_and_the_buffer_drains(cluster):
    clock = FakeClock()
    journal, book = make_journal(cluster, clock, "killed")
    await journal.start()
    produced = 0
    stop = asyncio.Event()

    async def produce() -> None:
        nonlocal produced
        while not stop.is_set():
            outage_cycle(book, journal, clock, produced)
            produced += 1
            await asyncio.sleep(0.004)

    producer = asyncio.create_task(produce())
    try:
        await async_wait_for(lambda: journal.writer.writes_ok >= 5, timeout=30, what="batches written")
        cluster.kill()                                                   # SIGKILL the postmaster
        killed_at = produced
        await async_wait_for(lambda: journal.writer.writes_failed >= 2, timeout=30, what="writes failing")
        await async_wait_for(lambda: produced >= killed_at + 150, timeout=30, what="incidents while down")
        assert journal.writer.depth > 0                                  # kept in memory meanwhile
        incidents, problem = await journal.incidents(Query(limit=5))     # readers say what they miss
        assert problem.startswith("postgres journal unreachable") and len(incidents) == 5
        cluster.start()                                                  # crash recovery, same data
        await async_wait_for(lambda: produced >= killed_at + 300, timeout=30, what="more incidents")
        stop.set()
        await producer
        await async_wait_for(lambda: journal.writer.depth == 0, timeout=60, what="the buffer to drain")

        # Everything, exactly once: one resolved incident per cycle but the last (still open),
        # two connection events and one reload per cycle.
        assert cluster.query("SELECT count(*), count(DISTINCT id), count(resolved_at) FROM feedwatch_incidents "
                             "WHERE replica = 'killed'") == [(produced, produced, produced - 1)]
        reloads = cluster.query("SELECT detail FROM feedwatch_events WHERE replica = 'killed' AND kind = 'reload'")
        assert sorted(int(d.split()[1]) for (d,) in reloads) == list(range(produced))
        assert cluster.query("SELECT kind, count(*) FROM feedwatch_events WHERE replica = 'killed' AND "
                             "kind IN ('connect', 'disconnect') GROUP BY kind ORDER BY kind") == [
            ("connect", produced), ("disconnect", produced)]
        metrics = JournalCollector(journal).render(clock.time())
        assert 'feedwatch_journal_buffer_records{sink="postgres"} 0' in metrics
        assert 'feedwatch_journal_dropped_records_total{sink="postgres"} 0' in metrics
        assert f'feedwatch_journal_writes_total{{sink="postgres",result="error"}} {journal.writer.writes_failed}' \
            in metrics and journal.writer.writes_failed >= 2
        print(f"\npostgres kill/restart: {produced} cycles ({produced - killed_at} after the kill), "
              f"{journal.writer.written} rows written in {journal.writer.writes_ok} batches, "
              f"{journal.writer.writes_failed} failed attempts, buffer drained to 0, nothing dropped")
    finally:
        stop.set()
        await asyncio.gather(producer, return_exceptions=True)
        if not cluster.accepting_safely():
            cluster.start()
        await journal.stop()


async def test_replicas_share_one_journal(cluster):
    clock = FakeClock(1_700_100_000.0)
    (a, book_a), (b, book_b) = make_journal(cluster, clock, "a"), make_journal(cluster, clock, "b")
    await a.start()
    await b.start()
    try:
        outage_cycle(book_a, a, clock, 0)
        outage_cycle(book_b, b, clock, 0)
        assert await a.writer.drained(20) and await b.writer.drained(20)
        for journal in (a, b):
            incidents, problem = await journal.incidents(Query(kind="feed", open=True, since=1_700_100_000.0))
            assert not problem
            assert sorted((i.replica, i.feed) for i in incidents if i.replica in ("a", "b")) == [("a", "feed-a"),
                                                                                                  ("b", "feed-b")]
    finally:
        await a.stop()
        await b.stop()


async def test_a_prune_beside_a_write_on_the_writers_connection_fails_neither(cluster):
    # The hourly prune runs from the journal's tick task, the batches from the writer's task, both
    # on the writer's connection: unserialised, their transactions nested and both failed.
    sink = PostgresSink(cluster.dsn, 5.0)
    await sink.open()
    try:
        for n in range(5):
            events = [Event(id=new_id(), at=1_700_200_000.0 + n, kind="reload", replica="prune") for _ in range(50)]
            results = await asyncio.gather(sink.write([], events), sink.prune(0.0),
                                           sink.incidents(Query(limit=1)), sink.incidents(Query(limit=1)),
                                           return_exceptions=True)
            assert not [r for r in results if isinstance(r, BaseException)], results
        assert cluster.query("SELECT count(*) FROM feedwatch_events WHERE replica = 'prune'") == [(250,)]
    finally:
        await sink.close()


async def test_a_batch_counts_as_written_only_by_its_own_commit(cluster):
    """The loss behind "324 of 325 incidents": a batch started while the writer's connection was
    already inside a transaction (the hourly prune's, before calls were serialised) became a
    savepoint of it. Released, it was counted written; the server killed before the outer
    transaction committed took it away. The sink now refuses a connection that is not idle: the
    batch fails (the writer keeps it and retries) instead of being acknowledged without a commit."""
    sink = PostgresSink(cluster.dsn, 5.0)
    await sink.open()
    try:
        await sink._writer.execute("BEGIN")   # someone else's transaction, still open on the connection
        events = [Event(id=new_id(), at=1_700_300_000.0, kind="reload", replica="nested") for _ in range(3)]
        with pytest.raises(RuntimeError, match="inside another transaction"):
            await sink.write([], events)
        # The connection was dropped with the outer transaction; nothing was acknowledged, and the
        # retry (a fresh connection) writes the batch for real.
        assert cluster.query("SELECT count(*) FROM feedwatch_events WHERE replica = 'nested'") == [(0,)]
        await sink.write([], events)
        assert cluster.query("SELECT count(*) FROM feedwatch_events WHERE replica = 'nested'") == [(3,)]
    finally:
        await sink.close()
