"""Where journal rows go: the sink protocol, the SQL both databases share, the in-memory sink.

A sink writes one batch per transaction and must make a retried batch harmless: incidents are
upserted by id (an older version never overwrites a newer one: ``updated_at``), events are
inserted by id and ignored when already there. So a batch whose commit was lost with the
connection (a database killed mid-write) is simply written again, and nothing counts twice.

Tables (the same DDL runs on SQLite and PostgreSQL)::

    feedwatch_journal_meta(key TEXT PRIMARY KEY, value TEXT)          -- schema_version = 1
    feedwatch_incidents(id TEXT PRIMARY KEY, kind, feed, symbol, account, level, worst_level,
                        opened_at, resolved_at, silent_since, worst_value, reason, recording,
                        replica, updated_at)
    feedwatch_events(id TEXT PRIMARY KEY, at, kind, feed, symbol, account, state, value, count,
                     detail, incident, replica)

Times are Unix seconds (double precision), like every timestamp feedwatch exports.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any, Callable, Protocol, Sequence

from exporter.journal.records import EVENT_FIELDS, INCIDENT_FIELDS, Event, Incident, Query, newest_first

SCHEMA_VERSION = 1

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS feedwatch_journal_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS feedwatch_incidents (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, feed TEXT NOT NULL, symbol TEXT NOT NULL,
        account TEXT NOT NULL, level TEXT NOT NULL, worst_level TEXT NOT NULL,
        opened_at DOUBLE PRECISION NOT NULL, resolved_at DOUBLE PRECISION,
        silent_since DOUBLE PRECISION, worst_value DOUBLE PRECISION, reason TEXT NOT NULL,
        recording TEXT, replica TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS feedwatch_incidents_opened ON feedwatch_incidents (opened_at)",
    "CREATE INDEX IF NOT EXISTS feedwatch_incidents_subject ON feedwatch_incidents (feed, symbol)",
    "CREATE INDEX IF NOT EXISTS feedwatch_incidents_resolved ON feedwatch_incidents (resolved_at)",
    """CREATE TABLE IF NOT EXISTS feedwatch_events (
        id TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL, feed TEXT NOT NULL,
        symbol TEXT NOT NULL, account TEXT NOT NULL, state TEXT NOT NULL, value DOUBLE PRECISION,
        count BIGINT, detail TEXT NOT NULL, incident TEXT, replica TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS feedwatch_events_at ON feedwatch_events (at)",
)


def upsert_incident_sql(p: str) -> str:
    """Insert or update one incident; ``p`` is the driver's placeholder (``?`` or ``%s``)."""
    columns = ", ".join(INCIDENT_FIELDS)
    values = ", ".join(p for _ in INCIDENT_FIELDS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in INCIDENT_FIELDS if c != "id")
    return (f"INSERT INTO feedwatch_incidents ({columns}) VALUES ({values}) ON CONFLICT (id) DO UPDATE SET "
            f"{updates} WHERE feedwatch_incidents.updated_at <= excluded.updated_at")


def insert_event_sql(p: str) -> str:
    columns = ", ".join(EVENT_FIELDS)
    values = ", ".join(p for _ in EVENT_FIELDS)
    return f"INSERT INTO feedwatch_events ({columns}) VALUES ({values}) ON CONFLICT (id) DO NOTHING"


def select_incidents_sql(query: Query, p: str) -> tuple[str, list]:
    where, params = query.where(p)
    return (f"SELECT {', '.join(INCIDENT_FIELDS)} FROM feedwatch_incidents{where} "
            f"ORDER BY opened_at DESC, id DESC LIMIT {int(query.limit)}"), params


def select_events_sql(p: str, since: float | None, incident: str | None, limit: int) -> tuple[str, list]:
    clauses, params = [], []
    if since is not None:
        clauses.append(f"at >= {p}")
        params.append(since)
    if incident is not None:
        clauses.append(f"incident = {p}")
        params.append(incident)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    return (f"SELECT {', '.join(EVENT_FIELDS)} FROM feedwatch_events{where} "
            f"ORDER BY at DESC, id DESC LIMIT {int(limit)}"), params


class JournalSchemaError(RuntimeError):
    """The database was written by a newer feedwatch."""


def migrate(run: Callable[[str, tuple], Any], fetch_version: Callable[[], int | None], where: str) -> None:
    """Create the tables (version 1) or refuse a newer schema; shared by both SQL sinks."""
    run(SCHEMA[0], ())
    version = fetch_version() or 0
    if version > SCHEMA_VERSION:
        raise JournalSchemaError(f"{where}: journal schema {version} is newer than this feedwatch understands "
                                 f"({SCHEMA_VERSION}); upgrade feedwatch or point it at another journal")
    for statement in SCHEMA[1:]:
        run(statement, ())


PRUNE_INCIDENTS = "DELETE FROM feedwatch_incidents WHERE resolved_at IS NOT NULL AND resolved_at < {p}"
PRUNE_EVENTS = "DELETE FROM feedwatch_events WHERE at < {p}"


def incident_row(incident: Incident) -> tuple:
    return tuple(getattr(incident, name) for name in INCIDENT_FIELDS)


def event_row(event: Event) -> tuple:
    return tuple(getattr(event, name) for name in EVENT_FIELDS)


def incident_from_row(row: Sequence) -> Incident:
    return Incident(**dict(zip(INCIDENT_FIELDS, row)))


def event_from_row(row: Sequence) -> Event:
    return Event(**dict(zip(EVENT_FIELDS, row)))


class Sink(Protocol):
    name: str       # the ``sink`` label of the journal metrics
    persistent: bool

    async def open(self) -> None: ...
    async def write(self, incidents: list[Incident], events: list[Event]) -> None: ...
    async def incidents(self, query: Query) -> list[Incident]: ...
    async def events(self, since: float | None = None, incident: str | None = None,
                     limit: int = 1000) -> list[Event]: ...
    async def prune(self, before: float) -> None: ...
    async def close(self) -> None: ...


class MemorySink:
    """Rows kept in this process only (no path configured): bounded, lost on restart."""

    name = "memory"
    persistent = False

    def __init__(self, max_incidents: int = 10_000, max_events: int = 10_000) -> None:
        self.max_incidents = max_incidents
        self._incidents: OrderedDict[str, Incident] = OrderedDict()
        self._events: deque[Event] = deque(maxlen=max_events)
        self._event_ids: set[str] = set()

    async def open(self) -> None:
        pass

    async def write(self, incidents: list[Incident], events: list[Event]) -> None:
        for incident in incidents:
            old = self._incidents.get(incident.id)
            if old is None or old.updated_at <= incident.updated_at:
                self._incidents[incident.id] = incident
        while len(self._incidents) > self.max_incidents:
            self._incidents.popitem(last=False)
        for event in events:
            if event.id not in self._event_ids:
                if len(self._events) == self._events.maxlen:
                    self._event_ids.discard(self._events[0].id)
                self._events.append(event)
                self._event_ids.add(event.id)

    async def incidents(self, query: Query) -> list[Incident]:
        return newest_first([i for i in self._incidents.values() if query.matches(i)], query.limit)

    async def events(self, since: float | None = None, incident: str | None = None,
                     limit: int = 1000) -> list[Event]:
        found = [e for e in self._events if (since is None or e.at >= since)
                 and (incident is None or e.incident == incident)]
        return sorted(found, key=lambda e: (e.at, e.id), reverse=True)[:limit]

    async def prune(self, before: float) -> None:
        for key in [k for k, i in self._incidents.items() if i.resolved_at is not None and i.resolved_at < before]:
            del self._incidents[key]

    async def close(self) -> None:
        pass
