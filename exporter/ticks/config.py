"""The ``tick_sink:`` configuration section (built through the ``feedwatch.sections`` entry point).

    tick_sink:
      sink: journal                  # the journal's database (default), or sqlite, postgres, clickhouse
      path: /var/lib/feedwatch/ticks.sqlite        # sqlite; default: ticks.sqlite beside the journal's file
      dsn: "host=db dbname=feedwatch ..."          # postgres; default: the journal's dsn
      url: http://clickhouse:8123                  # clickhouse (HTTP interface)
      database: default
      table: feedwatch_ticks
      flush_interval: 2s
      batch_size: 50000
      buffer_limit: 500000
      write_timeout: 10s

An absent section means no tick sink (nothing is appended on the hot path). Defaults are the
dataclass fields below, documented in docs/configuration.md ("Tick sink"). Where ``sink: journal``
and an unset ``path`` / ``dsn`` lead is decided when the service starts (``resolve``), because it
depends on the ``journal:`` and ``trading:`` sections.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Mapping, NamedTuple, Sequence

from exporter.config import Duration, FeedConfig, build_dataclass, read_secret_files, read_text_file

if TYPE_CHECKING:
    from exporter.ticks.backends import Backend

DEFAULT_FILE = "ticks.sqlite"


@dataclass(frozen=True)
class TickSinkConfig:
    enabled: bool = True
    # journal: the journal's kind of database (its SQLite directory or its PostgreSQL dsn).
    sink: Literal["journal", "sqlite", "postgres", "clickhouse"] = "journal"
    # SQLite file; unset: ticks.sqlite beside the journal's SQLite file.
    path: str | None = None
    # PostgreSQL connection string; unset: the journal's.
    dsn: str = ""
    dsn_file: str | None = None
    # ClickHouse HTTP interface, database, credentials (password from a file, never inline).
    url: str = "http://127.0.0.1:8123"
    database: str = "default"
    user: str = "default"
    password_file: str | None = None
    # Table the rows go to (created when missing).
    table: str = "feedwatch_ticks"
    # Rows are taken off the tape at least this often and written at most batch_size at a time.
    flush_interval: Duration = 2.0
    batch_size: int = 50_000
    # Rows held in memory (waiting plus being written); beyond it new rows are dropped and counted.
    buffer_limit: int = 500_000
    # A write taking longer than this counts as failed (and is retried).
    write_timeout: Duration = 10.0


def section(raw: Any, path: str, errors: list[str], environ: Mapping[str, str],
            feeds: Sequence[FeedConfig]) -> TickSinkConfig | None:
    """Build and check ``tick_sink:``; None when absent (no tick sink)."""
    if raw is None:
        return None
    config = build_dataclass(TickSinkConfig, raw, path, errors, environ) or TickSinkConfig()
    config = read_secret_files(config, path, errors, keys=("dsn",))
    if config.password_file is not None:
        read_text_file(config.password_file, f"{path}.password_file", errors)   # read again when connecting
    if config.path and config.sink not in ("sqlite", "journal"):
        errors.append(f"{path}.path: a SQLite file; not used with sink: {config.sink}")
    if config.dsn and config.sink not in ("postgres", "journal"):
        errors.append(f"{path}.dsn: a PostgreSQL connection string; not used with sink: {config.sink}")
    if config.sink == "clickhouse" and not config.url.startswith(("http://", "https://")):
        errors.append(f"{path}.url: expected the ClickHouse HTTP interface, like http://127.0.0.1:8123, "
                      f"got {config.url!r}")
    for key in ("table", "database"):
        value = getattr(config, key)
        if not value.replace("_", "a").isalnum() or value[:1].isdigit():
            errors.append(f"{path}.{key}: expected a plain SQL name (letters, digits, underscores), got {value!r}")
    for key in ("batch_size", "buffer_limit"):
        if getattr(config, key) < 1:
            errors.append(f"{path}.{key}: must be at least 1, got {getattr(config, key)}")
    if config.buffer_limit < config.batch_size:
        errors.append(f"{path}.buffer_limit: must be at least batch_size ({config.batch_size}), "
                      f"got {config.buffer_limit}")
    if config.flush_interval <= 0:
        errors.append(f"{path}.flush_interval: must be positive")
    if config.write_timeout <= 0:
        errors.append(f"{path}.write_timeout: must be positive")
    return config


class Target(NamedTuple):
    """Where rows go, resolved: the backend's kind and its address."""

    kind: Literal["sqlite", "postgres", "clickhouse"]
    where: str          # SQLite path, PostgreSQL dsn or ClickHouse URL


def resolve(config: TickSinkConfig, journal: Any, journal_sqlite: str | None) -> Target:
    """The backend ``config`` names, with the journal's location filled in for ``sink: journal``.

    ``journal`` is the journal's section (``JournalConfig``), ``journal_sqlite`` its resolved
    SQLite file (None when the journal keeps memory only). Raises ValueError, naming the key, when
    there is nowhere to write.
    """
    kind = config.sink
    if kind == "journal":
        kind = "postgres" if journal is not None and journal.enabled and journal.sink == "postgres" else "sqlite"
    if kind == "clickhouse":
        return Target("clickhouse", config.url)
    if kind == "postgres":
        dsn = config.dsn or (journal.dsn if journal is not None and journal.sink == "postgres" else "")
        if not dsn:
            raise ValueError("tick_sink.dsn: required with sink: postgres when the journal is not on PostgreSQL")
        return Target("postgres", dsn)
    if config.path:
        return Target("sqlite", config.path)
    if journal_sqlite:
        return Target("sqlite", os.path.join(os.path.dirname(os.path.abspath(journal_sqlite)), DEFAULT_FILE))
    raise ValueError("tick_sink.path: no SQLite file to write ticks to: set tick_sink.path (the journal keeps "
                     "memory only here, so there is no journal directory to put ticks.sqlite in)")


def open_backend(config: TickSinkConfig, target: Target) -> "Backend":
    """The backend for ``target`` (not connected yet: the sink's thread connects)."""
    from exporter.ticks import backends

    if target.kind == "clickhouse":
        password = ""
        if config.password_file:
            with open(config.password_file, encoding="utf-8") as fh:
                password = fh.read().strip()
        return backends.ClickHouseBackend(target.where, config.database, config.table, config.user, password,
                                          config.write_timeout)
    if target.kind == "postgres":
        return backends.PostgresBackend(target.where, config.table, config.write_timeout)
    return backends.SqliteBackend(target.where, config.table, config.write_timeout)
