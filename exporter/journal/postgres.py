"""The PostgreSQL sink: one journal shared by several exporter replicas (psycopg 3, async).

Why psycopg 3 rather than asyncpg: the journal writes a batch a second at most, so driver speed
is not what matters (both write a 500-row batch in a few milliseconds on loopback; the figures are
in docs/configuration.md); psycopg 3 has the same API for async and blocking use (the exporter
and ``feedwatch incidents -c``), ships binary wheels (``pip install 'feedwatch[postgres]'``),
speaks libpq connection strings and environment variables (PGPASSWORD, PGSSLMODE, a service
file) the way operators already configure PostgreSQL clients, and its ``executemany`` pipelines
a batch in one round trip.

Two connections, opened lazily and dropped on any error (the next call reconnects): one for the
writer's transactions, one for readers, so an API read never lands inside a write transaction.
Each connection is used by one call at a time (a lock per connection): the hourly prune runs on
the writer's connection from another task than the writer, and two ``conn.transaction()`` blocks
of two tasks on one connection nest instead of running one after the other (psycopg then fails
both with ``OutOfOrderTransactionNesting`` and the dropped connection, or, worse, the inner batch
is a savepoint that counts as written and is lost with the outer transaction when the server dies
before it commits). Every call also checks that its connection is idle (``_check_idle``): a batch
is acknowledged by its own COMMIT or not at all. Every call is bounded by ``write_timeout``. The tables are created on first connect (the same
DDL as SQLite, ``sinks.SCHEMA``); a newer schema is refused.
"""

from __future__ import annotations

import asyncio
from typing import Any

from exporter.journal.records import Event, Incident, Query
from exporter.journal.sinks import (
    PRUNE_EVENTS,
    PRUNE_INCIDENTS,
    SCHEMA,
    SCHEMA_VERSION,
    JournalSchemaError,
    event_from_row,
    event_row,
    incident_from_row,
    incident_row,
    insert_event_sql,
    select_events_sql,
    select_incidents_sql,
    upsert_incident_sql,
)

_UPSERT = upsert_incident_sql("%s")
_INSERT_EVENT = insert_event_sql("%s")
# Serialises schema creation across replicas starting at once (CREATE ... IF NOT EXISTS races).
_MIGRATION_LOCK = 7_311_426_001


def _check_idle(conn: Any) -> None:
    """Refuse a connection that is inside a transaction: there ``conn.transaction()`` would be a
    savepoint, released without a commit of its own, so a batch would count as written and still
    be lost with the outer transaction (a server killed before it commits). The connection is
    dropped by the caller; the writer keeps the batch and retries on a fresh one."""
    from psycopg.pq import TransactionStatus

    status = conn.info.transaction_status
    if status != TransactionStatus.IDLE:
        raise RuntimeError(f"postgres journal: the connection is inside another transaction ({status.name}); "
                           "dropped, not written through a savepoint")


class PostgresSink:
    name = "postgres"
    persistent = True

    def __init__(self, dsn: str, timeout: float = 10.0) -> None:
        try:
            import psycopg  # noqa: F401  (checked here so a missing driver is a clear error at start)
        except ImportError as exc:
            raise RuntimeError("journal.sink: postgres needs the psycopg driver: pip install 'feedwatch[postgres]'"
                               ) from exc
        self.dsn = dsn
        self.timeout = timeout
        self._writer: Any = None
        self._reader: Any = None
        self._locks = {"_writer": asyncio.Lock(), "_reader": asyncio.Lock()}
        self._migrated = False

    async def _connect(self) -> Any:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(self.dsn, connect_timeout=max(1, int(self.timeout)),
                                                     autocommit=True)
        try:
            if not self._migrated:
                await self._migrate(conn)
                self._migrated = True
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _migrate(self, conn: Any) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await conn.execute(SCHEMA[0])
            cursor = await conn.execute("SELECT value FROM feedwatch_journal_meta WHERE key = 'schema_version'")
            row = await cursor.fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise JournalSchemaError(f"PostgreSQL journal: schema {version} is newer than this feedwatch "
                                         f"understands ({SCHEMA_VERSION}); upgrade feedwatch")
            for statement in SCHEMA[1:]:
                await conn.execute(statement)
            await conn.execute("INSERT INTO feedwatch_journal_meta VALUES ('schema_version', %s) "
                               "ON CONFLICT (key) DO NOTHING", (str(SCHEMA_VERSION),))

    async def _with(self, role: str, work) -> Any:
        """Run ``work(conn)`` on the writer or reader connection; drop the connection on failure."""
        async with self._locks[role]:
            return await self._with_locked(role, work)

    async def _with_locked(self, role: str, work) -> Any:
        conn = getattr(self, role)
        try:
            if conn is None or conn.closed:
                conn = await asyncio.wait_for(self._connect(), self.timeout)
                setattr(self, role, conn)
            _check_idle(conn)
            return await asyncio.wait_for(work(conn), self.timeout)
        except BaseException:
            setattr(self, role, None)
            if conn is not None:
                try:
                    await asyncio.wait_for(conn.close(), 1.0)
                except BaseException:
                    pass
            raise

    async def open(self) -> None:
        async def nothing(conn: Any) -> None:
            return None

        await self._with("_writer", nothing)

    async def write(self, incidents: list[Incident], events: list[Event]) -> None:
        async def work(conn: Any) -> None:
            async with conn.transaction():
                async with conn.cursor() as cursor:
                    if incidents:
                        await cursor.executemany(_UPSERT, [incident_row(i) for i in incidents])
                    if events:
                        await cursor.executemany(_INSERT_EVENT, [event_row(e) for e in events])

        await self._with("_writer", work)

    async def incidents(self, query: Query) -> list[Incident]:
        sql, params = select_incidents_sql(query, "%s")

        async def work(conn: Any) -> list[Incident]:
            cursor = await conn.execute(sql, params)
            return [incident_from_row(row) for row in await cursor.fetchall()]

        return await self._with("_reader", work)

    async def events(self, since: float | None = None, incident: str | None = None,
                     limit: int = 1000) -> list[Event]:
        sql, params = select_events_sql("%s", since, incident, limit)

        async def work(conn: Any) -> list[Event]:
            cursor = await conn.execute(sql, params)
            return [event_from_row(row) for row in await cursor.fetchall()]

        return await self._with("_reader", work)

    async def prune(self, before: float) -> None:
        async def work(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute(PRUNE_INCIDENTS.format(p="%s"), (before,))
                await conn.execute(PRUNE_EVENTS.format(p="%s"), (before,))

        await self._with("_writer", work)

    async def close(self) -> None:
        for role in ("_writer", "_reader"):
            conn = getattr(self, role)
            setattr(self, role, None)
            if conn is not None:
                try:
                    await asyncio.wait_for(conn.close(), 2.0)
                except BaseException:
                    pass
