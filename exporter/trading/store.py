"""Where the trading tracker's state survives a restart: a small SQLite file (stdlib sqlite3).

A restart must not reset the peak equity, the day's P&L or the losing streak (that would
silently clear a risk alert), and a bot replaying its events after reconnecting to a restarted
exporter must not have them counted twice. So per batch of events, in one transaction:

- ``claim(account, id, ts)`` inserts the event id (``INSERT OR IGNORE``); False means a replay;
- ``save(account, state)`` replaces the account's state (a JSON object of plain numbers);
- ``commit()`` makes both durable together, or neither (``rollback()`` drops both).

Every failure to write raises ``StoreError`` (disk full, read-only file system, file removed):
the caller keeps its memory where the file is, so nothing is applied or counted twice.

Tables::

    meta(key TEXT PRIMARY KEY, value TEXT)                      -- schema_version = 1
    account_state(account TEXT PRIMARY KEY, state TEXT, updated REAL)
    seen_event(account TEXT, id TEXT, ts REAL, PRIMARY KEY (account, id)) WITHOUT ROWID

Event ids older than the tracker's ``dedup_window`` are pruned (events that old are refused as
``expired`` anyway, so forgetting their ids cannot let a replay through).

**Durability.** ``journal_mode=DELETE`` with ``synchronous=FULL``: a commit is in the one file
(fsynced) before it is acknowledged. WAL mode kept recent commits in a ``-wal`` file beside it;
losing that file (a container whose state file alone is bind-mounted keeps the ``-wal`` in its
own layer; a copy of the file alone) silently took the state back to an older one. The price is
the fsyncs of each batch's commit, paid on the event loop: measured on this project's VM (ext4)
19 ms median per commit, against 3 ms for WAL with synchronous=FULL and 0.05 ms for WAL with
NORMAL. Trading events come a few per second in one batch per frame or request, so this is
affordable; a bot sending many small frames should batch them.

**Never silently reset.** Beside the file, ``<state_file>.backup`` is a complete copy written
atomically (SQLite's backup API into a temporary file, fsync, rename): when the store is first
created, then at most every ``backup_interval`` after a commit, and on close. It is both a copy
to restore and the proof that state existed: a state file that is missing while its backup
exists, empty (0 bytes), not a SQLite database, corrupt (``PRAGMA quick_check``), not a
feedwatch file, from a newer feedwatch, or holding an unreadable account state, is refused with
``StateFileError``, whose message names the file, the problem and the two ways out: restore the
backup (or another copy), or start once with ``feedwatch run --reset-trading-state``
(``open_store(..., reset=True)``), which moves the damaged files aside (never deletes them) and
starts empty. Removing the state file *and* its backup is the one way to start afresh silently
on purpose (a new file is then logged at WARNING). ``diagnose(path)`` runs the same checks
read-only for ``feedwatch check-config``.

``MemoryStore`` has the same interface and keeps nothing on disk (tests, the in-process monitor,
and configurations without ``state_file``).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
import urllib.parse
from typing import Any, Protocol

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
BACKUP_SUFFIX = ".backup"
# Files SQLite may keep beside the database (a hot journal after a crash, WAL from older versions).
SIDE_FILES = ("-journal", "-wal", "-shm")
_SQLITE_HEADER = b"SQLite format 3\x00"
DEFAULT_BACKUP_INTERVAL = 60.0


class StateFileError(Exception):
    """The state file cannot be used. The message names the file, the problem and, when its
    content is lost or damaged (``damaged``), the ways to recover."""

    def __init__(self, path: str, problem: str, damaged: bool = True) -> None:
        self.path = path
        self.problem = problem
        self.damaged = damaged
        advice = recovery_hint(path) if damaged else "Fix the permissions or the path (trading.state_file)"
        super().__init__(f"trading state file {path} {problem}. {advice}")


class StoreError(RuntimeError):
    """A write to the state file failed; nothing of the transaction was kept."""


def backup_path(path: str) -> str:
    return path + BACKUP_SUFFIX


def recovery_hint(path: str) -> str:
    """How to get going again, for the refusal message and the runbook."""
    backup = backup_path(path)
    restore = (f"restore the copy feedwatch keeps (cp {backup} {path}, written "
               f"{_age(backup)}) or your own backup"
               if os.path.isfile(backup) else "restore it from your own backup")
    return (f"To recover: stop feedwatch and {restore}; or, to start with empty trading state "
            f"(kill switch off, streaks and peaks forgotten), run once with --reset-trading-state, "
            f"which moves the damaged files aside (docs/runbook.md#trading-state-file)")


def _age(path: str) -> str:
    try:
        stamp = os.path.getmtime(path)
    except OSError:
        return "at an unknown time"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


class Store(Protocol):
    def load(self) -> dict[str, dict[str, Any]]: ...
    def begin(self) -> None: ...
    def claim(self, account: str, event_id: str, ts: float) -> bool: ...
    def save(self, account: str, state: dict[str, Any]) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def prune(self, before: float) -> None: ...
    def backup_due(self) -> bool: ...
    def backup(self) -> None: ...
    def close(self) -> None: ...


class MemoryStore:
    """The store interface without a disk: state lives as long as the process."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.states: dict[str, str] = {}
        self._claims: dict[tuple[str, str], float] = {}  # the open transaction's
        self._saves: dict[str, str] = {}

    def load(self) -> dict[str, dict[str, Any]]:
        return {name: json.loads(text) for name, text in self.states.items()}

    def begin(self) -> None:
        self._claims, self._saves = {}, {}

    def claim(self, account: str, event_id: str, ts: float) -> bool:
        key = (account, event_id)
        if key in self.seen or key in self._claims:
            return False
        self._claims[key] = ts
        return True

    def save(self, account: str, state: dict[str, Any]) -> None:
        self._saves[account] = json.dumps(state)

    def commit(self) -> None:
        self.seen.update(self._claims)
        self.states.update(self._saves)
        self._claims, self._saves = {}, {}

    def rollback(self) -> None:
        self._claims, self._saves = {}, {}

    def prune(self, before: float) -> None:
        self.seen = {key: ts for key, ts in self.seen.items() if ts >= before}

    def backup_due(self) -> bool:
        return False

    def backup(self) -> None:
        pass

    def close(self) -> None:
        pass


class SqliteStore:
    """The store interface on a SQLite file, checked when opened, with a backup copy beside it."""

    def __init__(self, path: str, backup_interval: float = DEFAULT_BACKUP_INTERVAL) -> None:
        self.path = path
        self.backup_file = backup_path(path)
        self.backup_interval = backup_interval
        self._dirty = False
        self._last_backup = time.monotonic()
        error = _file_problem(path)
        if error is not None:
            raise error
        fresh = not os.path.exists(path)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        except OSError as exc:
            raise StateFileError(path, f"cannot be created: {exc.strerror or exc}", damaged=False) from None
        try:
            # isolation_level=None: transactions are explicit (begin/commit), one per batch.
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StateFileError(path, f"cannot be opened: {exc}", damaged=False) from None
        try:
            self.db.execute("PRAGMA busy_timeout=2000")
            if not fresh:
                problem = _database_problem(self.db)
                if problem is not None:
                    raise StateFileError(path, problem)
            # DELETE also folds the WAL of an older feedwatch into the file and removes it.
            self.db.execute("PRAGMA journal_mode=DELETE")
            self.db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.Error as exc:  # e.g. "disk I/O error", "attempt to write a readonly database"
            self.db.close()
            raise StateFileError(path, f"cannot be used: {exc}", damaged=False) from None
        except BaseException:
            self.db.close()
            raise
        if fresh:
            log.warning("trading state file %s did not exist (nor its backup): starting with empty trading "
                        "state in a new file", path, extra={"file": path})
        if fresh or not os.path.exists(self.backup_file):
            # From now on the backup says "this file held state": its loss will be noticed.
            try:
                self.backup()
            except StoreError as exc:
                self.db.close()
                raise StateFileError(path, f"is usable but its backup cannot be written ({exc})",
                                     damaged=False) from None

    def _migrate(self) -> None:
        db = self.db
        has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() if has_meta else None
        version = int(row[0]) if row else 0
        if version < 1:  # one transaction: a crash leaves either nothing or the whole schema
            db.execute("BEGIN")
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS account_state "
                       "(account TEXT PRIMARY KEY, state TEXT NOT NULL, updated REAL NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS seen_event "
                       "(account TEXT NOT NULL, id TEXT NOT NULL, ts REAL NOT NULL, "
                       "PRIMARY KEY (account, id)) WITHOUT ROWID")
            db.execute("CREATE INDEX IF NOT EXISTS seen_event_ts ON seen_event (ts)")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            db.execute("COMMIT")

    def load(self) -> dict[str, dict[str, Any]]:
        # Every row was checked when the file was opened (_database_problem).
        return {account: json.loads(text)
                for account, text in self.db.execute("SELECT account, state FROM account_state")}

    def begin(self) -> None:
        self._write("BEGIN")

    def claim(self, account: str, event_id: str, ts: float) -> bool:
        cursor = self._write("INSERT OR IGNORE INTO seen_event (account, id, ts) VALUES (?, ?, ?)",
                             (account, event_id, ts))
        return cursor.rowcount == 1

    def save(self, account: str, state: dict[str, Any]) -> None:
        self._write("INSERT OR REPLACE INTO account_state (account, state, updated) VALUES (?, ?, ?)",
                    (account, json.dumps(state), time.time()))

    def commit(self) -> None:
        if not self.db.in_transaction:
            return
        self._write("COMMIT")
        self._dirty = True

    def rollback(self) -> None:
        """Drop the open transaction, if SQLite has not already (it may, after SQLITE_FULL)."""
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error as exc:  # the journal undoes it at the next open
                log.warning("trading state file %s: rollback failed: %s", self.path, exc, extra={"file": self.path})

    def prune(self, before: float) -> None:
        self._write("DELETE FROM seen_event WHERE ts < ?", (before,))

    def _write(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, args)
        except sqlite3.Error as exc:
            self.rollback()
            raise StoreError(f"trading state file {self.path}: {sql.split()[0]} failed: {exc}") from exc

    def backup_due(self) -> bool:
        return self._dirty and time.monotonic() - self._last_backup >= self.backup_interval

    def backup(self) -> None:
        """Copy the committed state to ``<path>.backup`` atomically; raises StoreError."""
        tmp = self.backup_file + ".tmp"
        try:
            _remove(tmp)
            target = sqlite3.connect(tmp)
            try:
                self.db.backup(target)
            finally:
                target.close()
            _fsync(tmp)
            os.replace(tmp, self.backup_file)
            _fsync(os.path.dirname(os.path.abspath(self.backup_file)))
        except (OSError, sqlite3.Error) as exc:
            _remove(tmp)
            raise StoreError(f"trading state backup {self.backup_file}: {exc}") from exc
        self._dirty = False
        self._last_backup = time.monotonic()

    def close(self) -> None:
        self.rollback()
        if self._dirty:
            try:
                self.backup()
            except StoreError as exc:
                log.error("%s (the state file itself is up to date)", exc, extra={"file": self.backup_file})
        self.db.close()


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


# --- checks -----------------------------------------------------------------------------------

def _access_problem(path: str) -> str | None:
    """Why feedwatch could not create, read or write the file (its content aside); None if it can."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return "is a directory"
    if not os.path.exists(path):
        existing = directory
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            return f"cannot be created: {existing} is not a directory"
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"cannot be created: directory {existing} is not writable"
        return None
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if not os.access(path, os.W_OK):
        return "is not writable"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"cannot be written: its directory {directory} is not writable (SQLite keeps its journal there)"
    return None


def _content_problem(path: str) -> str | None:
    """What the bytes on disk say is lost or damaged, before SQLite opens it; None if nothing."""
    if not os.path.exists(path):
        if os.path.exists(backup_path(path)):
            return (f"is missing, but its backup {backup_path(path)} shows that it held trading state "
                    f"(kill switch, losing streak, peaks): it was deleted or lost")
        return None
    with open(path, "rb") as fh:
        header = fh.read(len(_SQLITE_HEADER))
    if not header:
        return "is empty (0 bytes): it was truncated, and the trading state it held is gone"
    if header != _SQLITE_HEADER:
        return "is not a SQLite database (overwritten or truncated)"
    return None


def _file_problem(path: str) -> StateFileError | None:
    problem = _access_problem(path)
    if problem is not None:
        return StateFileError(path, problem, damaged=False)
    problem = _content_problem(path)
    return StateFileError(path, problem) if problem is not None else None


def _database_problem(db: sqlite3.Connection) -> str | None:
    """What SQLite says is wrong with an open state file; None when it is a sound feedwatch file."""
    try:
        checks = [row[0] for row in db.execute("PRAGMA quick_check")]
        if checks != ["ok"]:
            return "is corrupt (SQLite quick_check: " + "; ".join(str(c) for c in checks[:3]) + ")"
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            return "is a SQLite database but not a feedwatch state file (no meta table)"
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row and str(row[0]).isdigit() else None
        if version is None or (version >= 1 and not {"account_state", "seen_event"} <= tables):
            return "is damaged: its schema is incomplete"
        if version > SCHEMA_VERSION:
            return (f"has schema {version}, newer than this feedwatch understands ({SCHEMA_VERSION}): "
                    f"upgrade feedwatch or use another state_file")
        for account, text in db.execute("SELECT account, state FROM account_state"):
            try:
                state = json.loads(text)
            except (TypeError, ValueError):
                state = None
            if not isinstance(state, dict):
                return f"is damaged: the state of account {account!r} is unreadable"
    except sqlite3.DatabaseError as exc:
        return f"is corrupt ({exc})"
    return None


def diagnose(path: str) -> StateFileError | None:
    """The error ``open_store`` would refuse ``path`` with, found without changing anything
    (``feedwatch check-config``); None when the file is sound or would be created."""
    error = _file_problem(path)
    if error is not None or not os.path.exists(path):
        return error
    if os.path.exists(path + "-journal"):
        return None  # an unfinished transaction (killed mid-write): rolled back at the next open
    try:
        db = sqlite3.connect(f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return StateFileError(path, f"cannot be opened: {exc}", damaged=False)
    try:
        problem = _database_problem(db)
    finally:
        db.close()
    return StateFileError(path, problem) if problem is not None else None


def set_aside(path: str) -> list[str]:
    """Rename the state file, its side files and its backup to ``*.reset-<UTC time>``; the new names."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = []
    for name in (path, *(path + s for s in SIDE_FILES), backup_path(path)):
        if os.path.lexists(name):
            target = f"{name}.reset-{stamp}"
            os.replace(name, target)
            moved.append(target)
    return moved


def open_store(path: str | None, *, reset: bool = False,
               backup_interval: float = DEFAULT_BACKUP_INTERVAL) -> Store:
    """A SqliteStore at ``path``, or a MemoryStore (with a warning) when no file is configured.

    Raises StateFileError for a file that cannot be used, unless ``reset``: then the damaged
    files are moved aside (logged at WARNING with their new names) and an empty store is made.
    A sound file is never reset.
    """
    if not path:
        log.warning("trading.state_file is not set: trading state (peaks, day P&L, losing streak) "
                    "will be lost on restart")
        return MemoryStore()
    try:
        store = SqliteStore(path, backup_interval)
    except StateFileError as exc:
        if not reset or not exc.damaged:  # a reset cannot fix permissions or a path
            raise
        try:
            moved = set_aside(path)
        except OSError as move_exc:
            raise StateFileError(path, f"{exc.problem}, and cannot be moved aside for the reset: "
                                       f"{move_exc.strerror or move_exc}") from None
        log.warning("--reset-trading-state: trading state file %s %s; moved aside: %s; starting with "
                    "empty trading state", path, exc.problem, ", ".join(moved) or "nothing",
                    extra={"file": path, "reason": "reset"})
        return SqliteStore(path, backup_interval)
    if reset:
        log.info("--reset-trading-state: trading state file %s is sound and was kept (the flag only "
                 "replaces a missing or damaged file)", path, extra={"file": path})
    return store
