"""The SQLite state store: one transaction per batch, replays refused, old ids pruned, versions
checked; a missing, truncated or corrupt file refused with its path and the way out, never
silently replaced; commits durable in the file itself; failed writes rolled back and raised."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import pytest

from exporter.trading.store import (SCHEMA_VERSION, MemoryStore, SqliteStore, StateFileError, StoreError, diagnose,
                                    open_store)


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    made = MemoryStore() if request.param == "memory" else SqliteStore(str(tmp_path / "s.sqlite"))
    yield made
    made.close()


def test_claim_save_commit_and_reload(store):
    store.begin()
    assert store.claim("main", "e1", 100.0)
    assert not store.claim("main", "e1", 100.0)      # the same id again: a replay
    assert store.claim("other", "e1", 100.0)         # ids are per account
    store.save("main", {"peak": 1234.5, "closes": [[738949, 1000.0]]})
    store.commit()
    assert store.load() == {"main": {"peak": 1234.5, "closes": [[738949, 1000.0]]}}
    store.prune(before=150.0)
    store.begin()
    assert store.claim("main", "e1", 200.0)          # forgotten after the prune
    store.commit()


def test_sqlite_state_survives_reopening_and_uncommitted_work_does_not(tmp_path):
    path = str(tmp_path / "deep" / "dir" / "state.sqlite")  # directories are created
    first = SqliteStore(path)
    first.begin()
    first.claim("main", "a", 1.0)
    first.save("main", {"streak": 3})
    first.commit()
    first.begin()
    first.claim("main", "b", 2.0)
    first.save("main", {"streak": 4})
    first.db.execute("ROLLBACK")  # a crash before the commit
    first.in_transaction = False
    first.close()
    second = SqliteStore(path)
    assert second.load() == {"main": {"streak": 3}}
    second.begin()
    assert not second.claim("main", "a", 1.0)
    assert second.claim("main", "b", 2.0)
    second.commit()
    second.close()


def test_a_newer_schema_is_refused(tmp_path):
    path = str(tmp_path / "future.sqlite")
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(StateFileError, match="newer than this feedwatch understands"):
        SqliteStore(path)


def test_open_store_without_a_path_warns_and_keeps_memory(caplog):
    assert isinstance(open_store(None), MemoryStore)
    assert "will be lost on restart" in caplog.text


# --- never silently reset ---------------------------------------------------------------------

def make_state(path: str) -> None:
    """A state file holding a kill switch, as a run would leave it (with its backup)."""
    store = SqliteStore(path)
    store.begin()
    store.claim("main", "k1", 100.0)
    store.save("main", {"kill_switch": True, "losing_streak": 3})
    store.commit()
    store.close()


def refused(path: str) -> StateFileError:
    with pytest.raises(StateFileError) as info:
        open_store(path)
    message = str(info.value)
    assert message.startswith(f"trading state file {path} ")
    assert "--reset-trading-state" in message and f"cp {path}.backup {path}" in message
    return info.value


def test_a_new_state_file_gets_a_backup_and_a_warning(tmp_path, caplog):
    path = str(tmp_path / "state.sqlite")
    store = open_store(path)
    store.close()
    assert os.path.isfile(path + ".backup")
    assert f"trading state file {path} did not exist" in caplog.text


@pytest.mark.parametrize("damage, problem", [
    ("truncate", "is empty (0 bytes)"),
    ("delete", "is missing, but its backup"),
    ("delete-all", "is missing, but its backup"),
    ("garbage", "is not a SQLite database"),
    ("half", "corrupt"),
    ("bad-json", "the state of account 'main' is unreadable"),
    ("foreign", "not a feedwatch state file"),
])
def test_a_damaged_state_file_is_refused_naming_it_and_the_way_out(tmp_path, damage, problem):
    """Truncated or deleted, main started empty without a word (kill switch on -> off)."""
    path = str(tmp_path / "state.sqlite")
    make_state(path)
    if damage == "truncate":
        open(path, "w").close()
    elif damage == "delete":
        os.remove(path)
    elif damage == "delete-all":  # the file and every SQLite side file: only the backup is left
        for name in (path, path + "-journal", path + "-wal", path + "-shm"):
            if os.path.exists(name):
                os.remove(name)
    elif damage == "garbage":
        with open(path, "wb") as fh:
            fh.write(b"not a database at all" * 100)
    elif damage == "half":
        size = os.path.getsize(path)
        with open(path, "r+b") as fh:
            fh.seek(size // 4)
            fh.write(b"\xff" * (size // 2))
    elif damage == "bad-json":
        db = sqlite3.connect(path)
        db.execute("UPDATE account_state SET state = '{not json'")
        db.commit()
        db.close()
    elif damage == "foreign":
        os.remove(path)
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE notes (x)")
        db.commit()
        db.close()
    assert problem in refused(path).problem
    assert problem in str(diagnose(path))   # check-config says the same, read-only


def test_the_backup_restores_the_state(tmp_path):
    path = str(tmp_path / "state.sqlite")
    make_state(path)
    open(path, "w").close()
    refused(path)
    shutil.copy(path + ".backup", path)
    store = open_store(path)
    assert store.load() == {"main": {"kill_switch": True, "losing_streak": 3}}
    store.begin()
    assert not store.claim("main", "k1", 100.0)  # the ids came back with it
    store.rollback()
    store.close()


def test_reset_moves_a_damaged_file_aside_and_keeps_a_sound_one(tmp_path, caplog):
    path = str(tmp_path / "state.sqlite")
    make_state(path)
    store = open_store(path, reset=True)  # sound: kept
    assert store.load() == {"main": {"kill_switch": True, "losing_streak": 3}}
    store.close()
    open(path, "w").close()
    store = open_store(path, reset=True)
    assert store.load() == {}
    store.close()
    aside = sorted(p.name for p in tmp_path.iterdir() if ".reset-" in p.name)
    assert sorted(name.split(".reset-")[0] for name in aside) == ["state.sqlite", "state.sqlite.backup"]
    assert "--reset-trading-state: trading state file" in caplog.text and "is empty (0 bytes)" in caplog.text


def test_access_problems_name_the_path_and_are_not_reset(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    path = str(blocker / "state.sqlite")
    error = diagnose(path)
    assert error is not None and "is not a directory" in error.problem and not error.damaged
    with pytest.raises(StateFileError, match="Fix the permissions or the path"):
        open_store(path, reset=True)
    assert blocker.read_text().startswith("a file")


def test_diagnose_changes_nothing(tmp_path):
    path = str(tmp_path / "state.sqlite")
    make_state(path)
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in tmp_path.iterdir()}
    assert diagnose(path) is None
    assert diagnose(str(tmp_path / "new" / "state.sqlite")) is None  # would be created
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in tmp_path.iterdir()} == before


def test_commits_are_in_the_file_itself_not_a_wal_beside_it(tmp_path):
    """Losing state.sqlite-wal after a SIGKILL reset the state on main (WAL mode)."""
    path = str(tmp_path / "state.sqlite")
    legacy = sqlite3.connect(path)
    legacy.execute("PRAGMA journal_mode=WAL")  # a file an older feedwatch left in WAL mode
    legacy.close()
    os.remove(path)
    make_state(path)
    store = SqliteStore(path)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.begin()
    store.save("main", {"kill_switch": True, "losing_streak": 4})
    store.commit()
    assert not os.path.exists(path + "-wal")
    copy = str(tmp_path / "copy.sqlite")
    shutil.copy(path, copy)  # the file alone, while the store is open: holds the commit
    assert SqliteStore(copy).load()["main"]["losing_streak"] == 4
    store.close()


def test_a_failed_commit_rolls_back_cleanly_and_raises_store_error(tmp_path):
    path = str(tmp_path / "state.sqlite")
    store = SqliteStore(path)
    store.begin()
    store.claim("main", "a", 1.0)
    store.db.execute("PRAGMA query_only=1")  # every write from here on fails, like a read-only disk
    with pytest.raises(StoreError, match=f"trading state file {path}: INSERT failed"):
        store.save("main", {"x": 1})
    assert not store.db.in_transaction
    store.db.execute("PRAGMA query_only=0")
    store.begin()
    assert store.claim("main", "a", 1.0)  # nothing of the failed transaction was kept
    store.commit()
    store.close()


def backed_up(path: str) -> dict:
    db = sqlite3.connect(f"file:{path}.backup?mode=ro", uri=True)
    try:
        return {account: json.loads(state) for account, state in db.execute("SELECT account, state FROM account_state")}
    finally:
        db.close()


def test_the_backup_follows_commits_at_most_every_interval(tmp_path):
    from exporter.trading.config import build_section
    from exporter.trading.tracker import Tracker

    path = str(tmp_path / "state.sqlite")
    config = build_section({"accounts": [{"name": "main"}]}, "trading", [], {}, ())
    store = SqliteStore(path, backup_interval=3600)
    tracker = Tracker(config, 1_700_000_000, store)
    event = b'{"type":"safety","account":"main","id":"k","ts":1700000000,"kill_switch":true}'
    assert tracker.ingest_json(event, 1_700_000_000).accepted == 1
    assert not store.backup_due()                       # committed, but the interval has not passed
    assert backed_up(path) == {}                        # the copy made when the file was created
    store.backup_interval = 0
    assert store.backup_due() and tracker.housekeeping(1_700_000_001) is None
    assert not store.backup_due()
    assert backed_up(path)["main"]["kill_switch"] is True
