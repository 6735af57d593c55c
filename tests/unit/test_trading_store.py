"""The SQLite state store: one transaction per batch, replays refused, old ids pruned, versions checked."""

from __future__ import annotations

import sqlite3

import pytest

from exporter.trading.store import SCHEMA_VERSION, MemoryStore, SqliteStore, StateFileError, open_store


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
