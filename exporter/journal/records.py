"""The journal's two row shapes, and the filter every reader uses (API, CLI, sinks).

Both are msgspec structs: the same object is the database row, the JSON the API answers with and
what the CLI prints. Ids are random (uuid4 hex), so replicas sharing one PostgreSQL journal never
collide, and a retried write of the same row is recognised (``ON CONFLICT (id)``).

``Incident`` kinds and their levels:

    kind      subject                  level (worst_level keeps the worst)   value (worst_value)
    symbol    feed + symbol            degraded | stale | critical           staleness seconds
    feed      feed (+ connection)      down                                  seconds down at resolve
    trading   account + what           kill_switch | circuit_breaker | drawdown_daily |
                                       drawdown_weekly | drawdown_total |
                                       consecutive_losses | api_errors        the breaching value

``Event`` kinds: ``transition`` (a symbol's state change: state, staleness, update count),
``connect`` / ``disconnect`` (with the reason), ``breach`` / ``recovered`` (trading limits),
``kill_switch`` / ``circuit_breaker`` (changes, with the reason), ``reload`` (config reloads,
ok or not, with the problems).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Optional

import msgspec

KINDS = ("symbol", "feed", "trading")
EVENT_KINDS = ("transition", "connect", "disconnect", "breach", "recovered", "kill_switch", "circuit_breaker",
               "reload")
SEVERITY = {"degraded": 1, "stale": 2, "critical": 3}


def new_id() -> str:
    return uuid.uuid4().hex


class Incident(msgspec.Struct, kw_only=True):
    id: str
    kind: str
    feed: str = ""
    symbol: str = ""
    account: str = ""
    level: str
    worst_level: str
    opened_at: float
    resolved_at: Optional[float] = None
    # Symbols: when the silence began (the reference the staleness counts from), so a reader
    # computes an open incident's current staleness as now - silent_since.
    silent_since: Optional[float] = None
    # Symbols: the worst staleness reached (the whole silence once resolved by an update);
    # trading: the worst value (drawdown ratio, losing streak, errors per minute); feeds: downtime.
    worst_value: Optional[float] = None
    reason: str = ""
    recording: Optional[str] = None
    replica: str = ""
    updated_at: float = 0.0

    @property
    def open(self) -> bool:
        return self.resolved_at is None


class Event(msgspec.Struct, kw_only=True):
    id: str
    at: float
    kind: str
    feed: str = ""
    symbol: str = ""
    account: str = ""
    state: str = ""
    value: Optional[float] = None
    count: Optional[int] = None
    detail: str = ""
    incident: Optional[str] = None
    replica: str = ""


INCIDENT_FIELDS = tuple(Incident.__struct_fields__)
EVENT_FIELDS = tuple(Event.__struct_fields__)


@dataclass(frozen=True)
class Query:
    """Which incidents to read: newest first, at most ``limit``.

    ``since`` keeps incidents that were active at or after that time (opened since, still open,
    or resolved since); ``open`` True keeps open ones only, False resolved ones only.
    """

    feed: str | None = None
    symbol: str | None = None
    account: str | None = None
    kind: str | None = None
    since: float | None = None
    open: bool | None = None
    limit: int = 100

    def matches(self, incident: Incident) -> bool:
        if self.feed is not None and incident.feed != self.feed:
            return False
        if self.symbol is not None and incident.symbol != self.symbol:
            return False
        if self.account is not None and incident.account != self.account:
            return False
        if self.kind is not None and incident.kind != self.kind:
            return False
        if self.open is not None and incident.open != self.open:
            return False
        if self.since is not None and not (incident.opened_at >= self.since or incident.resolved_at is None
                                           or incident.resolved_at >= self.since):
            return False
        return True

    def where(self, placeholder: str = "?") -> tuple[str, list]:
        """The same filter as SQL (``?`` for SQLite, ``%s`` for psycopg) and its parameters."""
        clauses: list[str] = []
        params: list = []
        for column in ("feed", "symbol", "account", "kind"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = {placeholder}")
                params.append(value)
        if self.open is True:
            clauses.append("resolved_at IS NULL")
        elif self.open is False:
            clauses.append("resolved_at IS NOT NULL")
        if self.since is not None:
            clauses.append(f"(opened_at >= {placeholder} OR resolved_at IS NULL OR resolved_at >= {placeholder})")
            params += [self.since, self.since]
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def newest_first(incidents: list[Incident], limit: int) -> list[Incident]:
    return sorted(incidents, key=lambda i: (i.opened_at, i.id), reverse=True)[:limit]
