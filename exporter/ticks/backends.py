"""Where tick rows go: SQLite, PostgreSQL, ClickHouse over HTTP. Blocking code, one worker thread.

The sink (``sink.py``) calls every method from its single worker thread, so each backend owns
one connection and needs no locking; the event loop never waits on a database. Each backend:

- ``open()`` connects and creates the table when missing (a no-op when already open);
- ``write(rows)`` writes one batch in one transaction (one HTTP request for ClickHouse), and
  raises on any failure, after dropping its connection so the next call reconnects;
- ``close()``.

A batch may be written again after a failure whose commit actually happened (a database killed
between committing and answering): rows are identified by ``(run, seq)``, which SQL backends
ignore when already stored (``ON CONFLICT DO NOTHING``) and ClickHouse's ReplacingMergeTree
collapses at merge time (``SELECT ... FINAL`` for an exact count before that).
"""

from __future__ import annotations

import http.client
import logging
import os
import sqlite3
import urllib.parse
from typing import Any, Protocol

import msgspec

from exporter.ticks.rows import COLUMNS, Row

log = logging.getLogger(__name__)

SQL_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    run TEXT NOT NULL, seq BIGINT NOT NULL, time_ns BIGINT NOT NULL, feed TEXT NOT NULL,
    symbol TEXT NOT NULL, price DOUBLE PRECISION NOT NULL, size DOUBLE PRECISION, source TEXT NOT NULL,
    exchange_time_ns BIGINT, PRIMARY KEY (run, seq))"""
SQL_INDEX = "CREATE INDEX IF NOT EXISTS {table}_symbol_time ON {table} (feed, symbol, time_ns)"

CLICKHOUSE_TABLE = """CREATE TABLE IF NOT EXISTS {database}.{table} (
    run String, seq UInt64, time_ns Int64, feed String, symbol String, price Float64,
    size Nullable(Float64), source String, exchange_time_ns Nullable(Int64))
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDate(toDateTime(intDiv(time_ns, 1000000000))))
ORDER BY (feed, symbol, time_ns, run, seq)"""


def insert_sql(table: str, p: str) -> str:
    return (f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join(p for _ in COLUMNS)}) "
            "ON CONFLICT (run, seq) DO NOTHING")


class Backend(Protocol):
    name: str       # the ``sink`` label of the metrics

    def open(self) -> None: ...
    def write(self, rows: list[Row]) -> None: ...
    def close(self) -> None: ...


class SqliteBackend:
    """A SQLite file of its own (WAL), so the tick volume never holds the journal's write lock."""

    name = "sqlite"

    def __init__(self, path: str, table: str, timeout: float) -> None:
        self.path = path
        self.table = table
        self.timeout = timeout
        self._db: sqlite3.Connection | None = None
        self._insert = insert_sql(table, "?")

    def open(self) -> None:
        if self._db is not None:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=self.timeout)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(SQL_TABLE.format(table=self.table))
            db.execute(SQL_INDEX.format(table=self.table))
        except BaseException:
            db.close()
            raise
        self._db = db

    def write(self, rows: list[Row]) -> None:
        self.open()
        db = self._db
        assert db is not None
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(self._insert, rows)
            db.execute("COMMIT")
        except BaseException:
            self.close()  # a locked or full database: start afresh, never stay inside its transaction
            raise

    def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            db.close()


class PostgresBackend:
    """PostgreSQL through psycopg 3 (blocking API in the worker thread), the journal's driver."""

    name = "postgres"

    def __init__(self, dsn: str, table: str, timeout: float) -> None:
        try:
            import psycopg  # noqa: F401  (a missing driver is a clear error at start)
        except ImportError as exc:
            raise RuntimeError("tick_sink.sink: postgres needs the psycopg driver: pip install 'feedwatch[postgres]'"
                               ) from exc
        self.dsn = dsn
        self.table = table
        self.timeout = timeout
        self._conn: Any = None
        self._insert = insert_sql(table, "%s")

    def open(self) -> None:
        if self._conn is not None and not self._conn.closed:
            return
        import psycopg

        # tcp_user_timeout: a write to a black-holed server fails instead of blocking the thread
        # for the kernel's retransmission time (minutes); statement_timeout bounds the server side.
        ms = int(self.timeout * 1000)
        conn = psycopg.connect(self.dsn, connect_timeout=max(1, int(self.timeout)), autocommit=True,
                               tcp_user_timeout=ms, options=f"-c statement_timeout={ms}")
        try:
            conn.execute(SQL_TABLE.format(table=self.table))
            conn.execute(SQL_INDEX.format(table=self.table))
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def write(self, rows: list[Row]) -> None:
        try:
            self.open()
            with self._conn.transaction():
                with self._conn.cursor() as cursor:
                    cursor.executemany(self._insert, rows)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except Exception as exc:  # a dead server's socket: nothing left to close cleanly
                log.debug("tick sink: closing the PostgreSQL connection: %s", exc)


class TickRecord(msgspec.Struct, gc=False):
    """One row as a JSONEachRow object (field names are the column names)."""

    run: str
    seq: int
    time_ns: int
    feed: str
    symbol: str
    price: float
    size: float | None
    source: str
    exchange_time_ns: int | None


class ClickHouseError(RuntimeError):
    """ClickHouse answered a request with an error (its first line is the message)."""


class ClickHouseBackend:
    """ClickHouse's HTTP interface: ``INSERT ... FORMAT JSONEachRow``, one request per batch.

    Works with 18.16 (Debian's): no DateTime64 (times are Int64 nanoseconds, see rows.py), no
    LowCardinality, no codecs. Credentials go in the X-ClickHouse-User / X-ClickHouse-Key headers,
    never in the URL (which ends up in logs)."""

    name = "clickhouse"

    def __init__(self, url: str, database: str, table: str, user: str, password: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (8443 if parts.scheme == "https" else 8123)
        self.prefix = parts.path.rstrip("/")
        self.database = database
        self.table = table
        self.headers = {"X-ClickHouse-User": user, "X-ClickHouse-Key": password}
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._created = False
        self._encoder = msgspec.json.Encoder()
        self._insert = urllib.parse.urlencode(
            {"query": f"INSERT INTO {database}.{table} FORMAT JSONEachRow", "input_format_skip_unknown_fields": "0"})

    def _request(self, query: str, body: bytes) -> bytes:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout)
        try:
            self._conn.request("POST", f"{self.prefix}/?{query}", body=body, headers=self.headers)
            response = self._conn.getresponse()
            data = response.read()
        except BaseException:
            self.close()
            raise
        if response.status != 200:
            self.close()
            first = data.decode("utf-8", "replace").strip().splitlines()[:1]
            raise ClickHouseError(f"HTTP {response.status}: {first[0][:300] if first else 'no message'}")
        return data

    def open(self) -> None:
        if not self._created:
            self._request("", CLICKHOUSE_TABLE.format(database=self.database, table=self.table).encode())
            self._created = True

    def write(self, rows: list[Row]) -> None:
        self.open()
        self._request(self._insert, self._encoder.encode_lines([TickRecord(*row) for row in rows]))

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()
