"""The ``journal:`` configuration section (built through the ``feedwatch.sections`` entry point).

    journal:
      sink: sqlite                       # or postgres
      path: /var/lib/feedwatch/journal.sqlite   # default: journal.sqlite beside trading.state_file
      dsn: "host=db dbname=feedwatch user=feedwatch password=${PGPASSWORD}"   # postgres
      retention: 30d
      flush_interval: 1s
      batch_size: 500
      buffer_limit: 100000
      recordings: true

Defaults are the dataclass fields below (documented in docs/configuration.md); an absent section
(``Config.journal`` None) means all defaults. Where the SQLite file goes when ``path`` is not given is decided when
the service starts (``resolve_path``), because it depends on the ``trading:`` section.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

from exporter.config import Duration, FeedConfig, build_dataclass, read_secret_files

if TYPE_CHECKING:
    from exporter.journal.sinks import Sink

DEFAULT_FILE = "journal.sqlite"


@dataclass(frozen=True)
class JournalConfig:
    enabled: bool = True
    sink: Literal["sqlite", "postgres"] = "sqlite"
    # SQLite file; unset: journal.sqlite beside trading.state_file, else memory only (warned).
    path: str | None = None
    # PostgreSQL connection string (libpq: "host=... dbname=..." or postgresql://...).
    dsn: str = ""
    dsn_file: str | None = None
    # This exporter's name in a journal several replicas share (default: the host name).
    replica: str = ""
    # Resolved incidents and events older than this are deleted (0 keeps everything).
    retention: Duration = 30 * 86400.0
    # Rows are written in batches: at least this often, at most batch_size rows per transaction.
    flush_interval: Duration = 1.0
    batch_size: int = 500
    # Rows kept in memory while the database is unreachable; beyond it the oldest are dropped
    # and counted (feedwatch_journal_dropped_records_total).
    buffer_limit: int = 100_000
    # A database call taking longer than this counts as failed (and is retried).
    write_timeout: Duration = 10.0
    # Save the frame recorder's window when an incident opens (feed and symbol incidents).
    recordings: bool = True
    # Where recordings go; unset: a "recordings" directory beside the SQLite file.
    recordings_dir: str | None = None

    @property
    def replica_name(self) -> str:
        return self.replica or socket.gethostname()


def section(raw: Any, path: str, errors: list[str], environ: Mapping[str, str],
            feeds: Sequence[FeedConfig]) -> JournalConfig | None:
    """Build and check ``journal:``; None when absent (the service then uses the defaults)."""
    if raw is None:
        return None
    config = build_dataclass(JournalConfig, raw, path, errors, environ) or JournalConfig()
    config = read_secret_files(config, path, errors, keys=("dsn",))
    if config.enabled and config.sink == "postgres" and not config.dsn:
        errors.append(f"{path}.dsn: required with sink: postgres (a libpq connection string, e.g. "
                      "'host=db dbname=feedwatch user=feedwatch password=${PGPASSWORD}')")
    if config.sink == "postgres" and config.path:
        errors.append(f"{path}.path: a SQLite file; with sink: postgres give dsn instead")
    for key in ("batch_size", "buffer_limit"):
        if getattr(config, key) < 1:
            errors.append(f"{path}.{key}: must be at least 1, got {getattr(config, key)}")
    if config.flush_interval <= 0:
        errors.append(f"{path}.flush_interval: must be positive")
    if config.write_timeout <= 0:
        errors.append(f"{path}.write_timeout: must be positive")
    return config


def resolve_path(journal: JournalConfig, trading: Any) -> str | None:
    """The SQLite file: ``journal.path``, else beside ``trading.state_file``, else None (memory)."""
    if journal.path:
        return journal.path
    state_file = getattr(trading, "state_file", None)
    if state_file:
        return os.path.join(os.path.dirname(os.path.abspath(state_file)), DEFAULT_FILE)
    return None


def recordings_dir(journal: JournalConfig, sqlite_path: str | None) -> str | None:
    """Where incident recordings are saved: ``recordings_dir``, else beside the SQLite file."""
    if not journal.recordings:
        return None
    if journal.recordings_dir:
        return journal.recordings_dir
    if sqlite_path:
        return os.path.join(os.path.dirname(os.path.abspath(sqlite_path)), "recordings")
    return None


def open_sink(config: JournalConfig, sqlite_path: str | None) -> "Sink":
    """The configured sink (not opened yet): PostgreSQL, SQLite at ``sqlite_path``, or memory."""
    if config.sink == "postgres":
        from exporter.journal.postgres import PostgresSink

        return PostgresSink(config.dsn, config.write_timeout)
    if sqlite_path:
        from exporter.journal.sqlite import SqliteSink

        return SqliteSink(sqlite_path)
    from exporter.journal.sinks import MemorySink

    return MemorySink()
