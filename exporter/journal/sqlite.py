"""The SQLite sink: the default journal, a file beside the trading state (stdlib sqlite3).

sqlite3 calls block, so every one runs in a single worker thread that owns the connection; the
event loop only awaits the result and never waits on the disk. The thread is a daemon
(``feeds.threads.Worker``): a call stuck on a dead disk cannot hold up the process's exit, and
``Journal.stop`` gives up on it at its deadline. WAL mode lets ``feedwatch
incidents -c`` (another process) read while the exporter writes. A file with a newer schema than
this feedwatch knows is refused with its path, never rewritten.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Callable, TypeVar

from exporter.journal.records import Event, Incident, Query
from exporter.feeds.threads import Worker
from exporter.journal.sinks import (
    PRUNE_EVENTS,
    PRUNE_INCIDENTS,
    SCHEMA_VERSION,
    event_from_row,
    event_row,
    incident_from_row,
    incident_row,
    insert_event_sql,
    migrate,
    select_events_sql,
    select_incidents_sql,
    upsert_incident_sql,
)

T = TypeVar("T")

_UPSERT = upsert_incident_sql("?")
_INSERT_EVENT = insert_event_sql("?")


class SqliteSink:
    name = "sqlite"
    persistent = True

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread = Worker("feedwatch-journal-sqlite")
        self._db: sqlite3.Connection | None = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._thread.run(fn, *args)

    # --- in the worker thread --------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA busy_timeout=2000")
                db.execute("BEGIN IMMEDIATE")
                migrate(lambda sql, args: db.execute(sql, args), lambda: self._version(db), self.path)
                db.execute("INSERT OR IGNORE INTO feedwatch_journal_meta VALUES ('schema_version', ?)",
                           (str(SCHEMA_VERSION),))
                db.execute("COMMIT")
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    @staticmethod
    def _version(db: sqlite3.Connection) -> int | None:
        row = db.execute("SELECT value FROM feedwatch_journal_meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else None

    def _write(self, incidents: list[Incident], events: list[Event]) -> None:
        db = self._connect()
        db.execute("BEGIN")
        try:
            db.executemany(_UPSERT, [incident_row(i) for i in incidents])
            db.executemany(_INSERT_EVENT, [event_row(e) for e in events])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _incidents(self, query: Query) -> list[Incident]:
        sql, params = select_incidents_sql(query, "?")
        return [incident_from_row(row) for row in self._connect().execute(sql, params)]

    def _events(self, since: float | None, incident: str | None, limit: int) -> list[Event]:
        sql, params = select_events_sql("?", since, incident, limit)
        return [event_from_row(row) for row in self._connect().execute(sql, params)]

    def _prune(self, before: float) -> None:
        db = self._connect()
        db.execute("BEGIN")
        try:
            db.execute(PRUNE_INCIDENTS.format(p="?"), (before,))
            db.execute(PRUNE_EVENTS.format(p="?"), (before,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a locked or full database must not leave the connection stuck in it
                db.execute("ROLLBACK")
            raise

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- the sink interface ----------------------------------------------------------------------

    async def open(self) -> None:
        await self._call(self._connect)

    async def write(self, incidents: list[Incident], events: list[Event]) -> None:
        await self._call(self._write, incidents, events)

    async def incidents(self, query: Query) -> list[Incident]:
        return await self._call(self._incidents, query)

    async def events(self, since: float | None = None, incident: str | None = None,
                     limit: int = 1000) -> list[Event]:
        return await self._call(self._events, since, incident, limit)

    async def prune(self, before: float) -> None:
        await self._call(self._prune, before)

    async def close(self) -> None:
        try:
            await self._call(self._close)
        finally:
            self._thread.shutdown()
