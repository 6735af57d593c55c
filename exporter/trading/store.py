"""Where the trading tracker's state survives a restart: a small SQLite file (stdlib sqlite3).

A restart must not reset the peak equity, the day's P&L or the losing streak (that would
silently clear a risk alert), and a bot replaying its events after reconnecting to a restarted
exporter must not have them counted twice. So per batch of events, in one transaction:

- ``claim(account, id, ts)`` inserts the event id (``INSERT OR IGNORE``); False means a replay;
- ``save(account, state)`` replaces the account's state (a JSON object of plain numbers);
- ``commit()`` makes both durable together, or neither.

Tables::

    meta(key TEXT PRIMARY KEY, value TEXT)                      -- schema_version = 1
    account_state(account TEXT PRIMARY KEY, state TEXT, updated REAL)
    seen_event(account TEXT, id TEXT, ts REAL, PRIMARY KEY (account, id)) WITHOUT ROWID

Event ids older than the tracker's ``dedup_window`` are pruned (events that old are refused as
``expired`` anyway, so forgetting their ids cannot let a replay through).

``MemoryStore`` has the same interface and keeps nothing on disk (tests, the in-process monitor,
and configurations without ``state_file``).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from typing import Any, Protocol

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


class Store(Protocol):
    def load(self) -> dict[str, dict[str, Any]]: ...
    def begin(self) -> None: ...
    def claim(self, account: str, event_id: str, ts: float) -> bool: ...
    def save(self, account: str, state: dict[str, Any]) -> None: ...
    def commit(self) -> None: ...
    def prune(self, before: float) -> None: ...
    def close(self) -> None: ...


class MemoryStore:
    """The store interface without a disk: state lives as long as the process."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.states: dict[str, dict[str, Any]] = {}

    def load(self) -> dict[str, dict[str, Any]]:
        return {name: json.loads(text) for name, text in self.states.items()}

    def begin(self) -> None:
        pass

    def claim(self, account: str, event_id: str, ts: float) -> bool:
        key = (account, event_id)
        if key in self.seen:
            return False
        self.seen[key] = ts
        return True

    def save(self, account: str, state: dict[str, Any]) -> None:
        self.states[account] = json.dumps(state)

    def commit(self) -> None:
        pass

    def prune(self, before: float) -> None:
        self.seen = {key: ts for key, ts in self.seen.items() if ts >= before}

    def close(self) -> None:
        pass


class SqliteStore:
    """The store interface on a SQLite file (WAL journal: readers never block the writer)."""

    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        # isolation_level=None: transactions are explicit (begin/commit), one per batch.
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a process crash; a power cut may lose the last
        # few, never corrupting the file. An event stream can afford that, a per-event fsync not.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=2000")
        self._migrate()
        self.in_transaction = False

    def _migrate(self) -> None:
        db = self.db
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: state file schema {version} is newer than this feedwatch "
                               f"understands ({SCHEMA_VERSION}); upgrade feedwatch or use another state_file")
        if version < 1:
            db.execute("BEGIN")
            db.execute("CREATE TABLE IF NOT EXISTS account_state "
                       "(account TEXT PRIMARY KEY, state TEXT NOT NULL, updated REAL NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS seen_event "
                       "(account TEXT NOT NULL, id TEXT NOT NULL, ts REAL NOT NULL, "
                       "PRIMARY KEY (account, id)) WITHOUT ROWID")
            db.execute("CREATE INDEX IF NOT EXISTS seen_event_ts ON seen_event (ts)")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            db.execute("COMMIT")

    def load(self) -> dict[str, dict[str, Any]]:
        states = {}
        for account, text in self.db.execute("SELECT account, state FROM account_state"):
            try:
                states[account] = json.loads(text)
            except ValueError:
                log.error("trading state of account %r in %s is unreadable; starting it afresh", account, self.path)
        return states

    def begin(self) -> None:
        if not self.in_transaction:
            self.db.execute("BEGIN")
            self.in_transaction = True

    def claim(self, account: str, event_id: str, ts: float) -> bool:
        cursor = self.db.execute("INSERT OR IGNORE INTO seen_event (account, id, ts) VALUES (?, ?, ?)",
                                 (account, event_id, ts))
        return cursor.rowcount == 1

    def save(self, account: str, state: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO account_state (account, state, updated) VALUES (?, ?, ?)",
                        (account, json.dumps(state), time.time()))

    def commit(self) -> None:
        if not self.in_transaction:
            return
        self.in_transaction = False
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error:
            self.db.execute("ROLLBACK")
            raise

    def prune(self, before: float) -> None:
        self.db.execute("DELETE FROM seen_event WHERE ts < ?", (before,))

    def close(self) -> None:
        if self.in_transaction:
            self.commit()
        self.db.close()


def open_store(path: str | None) -> Store:
    """A SqliteStore at ``path``, or a MemoryStore (with a warning) when no file is configured."""
    if not path:
        log.warning("trading.state_file is not set: trading state (peaks, day P&L, losing streak) "
                    "will be lost on restart")
        return MemoryStore()
    return SqliteStore(path)
