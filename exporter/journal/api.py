"""The journal over HTTP (a ``feedwatch.web`` extension of ``exporter.web.app.create_app``).

    GET /api/v1/incidents?feed=&symbol=&account=&kind=&since=&open=&limit=
        newest first; ``since`` is a Unix time or a duration back from now (``1h``); ``open`` is
        true (open only) or false (resolved only); ``limit`` at most 1000 (default 100).
        -> {"incidents": [...], "source": "sqlite", "partial": false, "problem": ""}
        Read from the database with the rows still waiting to be written laid over them; when
        the database cannot be read, from this replica's memory with ``partial: true`` and the
        reason (the answer is still 200: it says what it could not see).
    GET /api/v1/incidents/{id}/recording
        the incident's frame recording (gzip JSON lines, docs/configuration.md), if saved here
    GET /api/v1/journal?since=&incident=&limit=
        the event log (transitions, connects and disconnects, breaches, safety switches, reloads)

The journal comes from the service the app was built with (``service.journal``) or from the
``JOURNAL`` app key a caller sets. Without one the routes answer 503 saying the journal is off.
The status page gets the latest incidents as the ``incidents`` part of its snapshot, and config
reloads reach ``Journal.record_reload`` through the app's reload listeners.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from exporter.config import parse_duration
from exporter.journal.journal import Journal
from exporter.journal.records import KINDS, Query
from exporter.web.app import CLOCK, RELOAD_LISTENERS, SERVICE, SNAPSHOT_PARTS, json_problem, json_response

JOURNAL = web.AppKey("feedwatch.journal", Journal)
PAGE_INCIDENTS = 20
MAX_LIMIT = 1000


def install(app: web.Application) -> None:
    journal = app.get(JOURNAL) or getattr(app[SERVICE], "journal", None)
    if journal is not None:
        app[JOURNAL] = journal
        app[SNAPSHOT_PARTS]["incidents"] = lambda now: journal.memory(Query(limit=PAGE_INCIDENTS))
        app[RELOAD_LISTENERS].append(journal.record_reload)
    app.router.add_get("/api/v1/incidents", get_incidents)
    app.router.add_get("/api/v1/incidents/{id}/recording", get_recording)
    app.router.add_get("/api/v1/journal", get_events)


class BadQuery(ValueError):
    pass


def parse_since(raw: str, now: float) -> float:
    """A Unix time, or a duration back from now (``90s``, ``1h``, ``2d``)."""
    try:
        value = float(raw)
    except ValueError:
        try:
            return now - parse_duration(raw)
        except ValueError:
            raise BadQuery(f"since: expected a Unix time or a duration like 1h, got {raw!r}") from None
    if value < 0:
        raise BadQuery(f"since: must not be negative, got {raw!r}")
    return value


def parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise BadQuery(f"{name}: expected true or false, got {raw!r}")


def query_from(params: Any, now: float) -> Query:
    """A ``Query`` from HTTP query parameters (or any mapping of strings)."""
    unknown = set(params) - {"feed", "symbol", "account", "kind", "since", "open", "limit"}
    if unknown:
        raise BadQuery(f"unknown parameter(s): {', '.join(sorted(unknown))} "
                       "(known: feed, symbol, account, kind, since, open, limit)")
    kind = params.get("kind")
    if kind is not None and kind not in KINDS:
        raise BadQuery(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    limit = 100
    if "limit" in params:
        try:
            limit = int(params["limit"])
        except ValueError:
            raise BadQuery(f"limit: expected an integer, got {params['limit']!r}") from None
        limit = max(1, min(limit, MAX_LIMIT))
    return Query(feed=params.get("feed"), symbol=params.get("symbol"), account=params.get("account"), kind=kind,
                 since=parse_since(params["since"], now) if "since" in params else None,
                 open=parse_bool("open", params["open"]) if "open" in params else None, limit=limit)


def _journal(request: web.Request) -> Journal | None:
    return request.app.get(JOURNAL)


_OFF = "the incident journal is off (journal.enabled: false), or this app has no service"


async def get_incidents(request: web.Request) -> web.Response:
    journal = _journal(request)
    if journal is None:
        return json_problem(_OFF, 503)
    now = request.app[CLOCK].time()
    try:
        query = query_from(request.query, now)
    except BadQuery as exc:
        return json_problem(str(exc), 400)
    incidents, problem = await journal.incidents(query)
    return json_response({"now": now, "incidents": incidents, "source": journal.sink.name,
                          "partial": bool(problem), "problem": problem})


async def get_recording(request: web.Request) -> web.StreamResponse:
    journal = _journal(request)
    if journal is None:
        return json_problem(_OFF, 503)
    incident_id = request.match_info["id"]
    found = [i for i in journal.memory(Query(limit=MAX_LIMIT)) if i.id == incident_id]
    if not found:
        rows, _ = await journal.incidents(Query(limit=MAX_LIMIT))
        found = [i for i in rows if i.id == incident_id]
    if not found:
        return json_problem(f"no incident {incident_id!r} in the journal", 404)
    name = found[0].recording
    path = journal.recordings.path(name) if journal.recordings is not None and name else None
    if path is None:
        return json_problem(f"incident {incident_id} has no recording on this replica"
                            + (f" ({name} was saved by {found[0].replica})" if name else ""), 404)
    return web.FileResponse(path, headers={"Content-Type": "application/gzip",
                                           "Content-Disposition": f'attachment; filename="{name}"'})


async def get_events(request: web.Request) -> web.Response:
    journal = _journal(request)
    if journal is None:
        return json_problem(_OFF, 503)
    now = request.app[CLOCK].time()
    try:
        since = parse_since(request.query["since"], now) if "since" in request.query else None
        limit = max(1, min(int(request.query.get("limit", "500")), 10_000))
    except (BadQuery, ValueError) as exc:
        return json_problem(str(exc), 400)
    try:
        events = await journal.sink.events(since, request.query.get("incident"), limit)
    except Exception as exc:
        return json_problem(f"{journal.sink.name} journal unreachable: {type(exc).__name__}: {exc}", 503)
    return json_response({"now": now, "events": events})
