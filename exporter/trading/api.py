"""``POST /api/v1/events``: trading bots that prefer to push their events over HTTP.

``add_routes(app)`` is an extension of ``exporter.web.app.create_app`` (registered in the
``feedwatch.web`` entry points); it does nothing unless the config has a ``trading:`` section.
It attaches the shared ``Tracker`` (``TRACKER`` app key; the same object the ``kind: trading``
feed writes to), adds the trading collector to the app's renderers unless the caller already
passed one, and adds the route.

The body is one event object or a JSON array of them (docs/trading-events.md). Every request
must be authenticated, by either

- ``Authorization: Bearer <trading.api.token>``, or
- an HMAC-SHA256 signature: ``X-Feedwatch-Timestamp: <Unix seconds>`` and
  ``X-Feedwatch-Signature: sha256=<hex HMAC(hmac_secret, "<timestamp>." + body)>``. A timestamp
  further than ``max_skew`` from our clock, or a signature already used, is refused as a replay.

Answers: 200 ``{"accepted": n, "duplicates": d, "rejected": {reason: count}, "problems": [...]}``
(duplicates are normal after a bot reconnects; they are not errors); 400 when nothing in the body
could be used; 401 (``WWW-Authenticate``) for a missing or wrong credential or a replay; 413 for
more than ``max_batch`` events. Refused requests are counted in
``feedwatch_trading_events_rejected_total{reason="unauthorized"|"replayed"}`` and logged (at most
once a minute per reason, with how many were not logged).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

from aiohttp import web

from exporter.trading.collector import TradingCollector
from exporter.trading.config import ApiConfig
from exporter.trading.tracker import EventError, Tracker, attach, split_payload
from exporter.web.app import CLOCK, COLLECTOR, CONFIG, RENDERERS, json_problem, json_response

log = logging.getLogger(__name__)

TRACKER = web.AppKey("feedwatch.trading_tracker", Tracker)
EVENTS_PATH = "/api/v1/events"
TIMESTAMP_HEADER = "X-Feedwatch-Timestamp"
SIGNATURE_HEADER = "X-Feedwatch-Signature"
_LOG_EVERY = 60.0


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Feedwatch-Signature`` value for ``body`` sent at ``timestamp`` (for bots and tests)."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class Authenticator:
    """Checks one request's credentials; remembers recent signatures to refuse replays."""

    def __init__(self, api: ApiConfig) -> None:
        self.api = api
        self.seen: dict[str, float] = {}  # signature -> when it may be forgotten (our clock)

    def check(self, headers: Any, body: bytes, now: float) -> tuple[str | None, str]:
        """(None, "") when authorized, else (reject reason, message for the client)."""
        api = self.api
        if not api.enabled:
            return "unauthorized", ("the push API is disabled: set trading.api.token or trading.api.hmac_secret "
                                    "(or their *_file variants)")
        authorization = headers.get("Authorization", "")
        if authorization:
            scheme, _, credential = authorization.partition(" ")
            if scheme.lower() != "bearer" or not api.token:
                return "unauthorized", "unsupported Authorization scheme (use Bearer, or sign the request)"
            if not hmac.compare_digest(credential.strip().encode(), api.token.encode()):
                return "unauthorized", "invalid bearer token"
            return None, ""
        signature = headers.get(SIGNATURE_HEADER, "")
        if not signature:
            return "unauthorized", f"missing credentials: send Authorization: Bearer or {SIGNATURE_HEADER}"
        if not api.hmac_secret:
            return "unauthorized", "request signing is not configured (trading.api.hmac_secret)"
        stamp = headers.get(TIMESTAMP_HEADER, "")
        try:
            sent = float(stamp)
        except ValueError:
            return "unauthorized", f"{TIMESTAMP_HEADER} must be Unix seconds, got {stamp!r}"
        if not hmac.compare_digest(signature.encode(), sign(api.hmac_secret, stamp, body).encode()):
            return "unauthorized", "invalid signature"
        # Only a correctly signed request can be a replay: an attacker who copied one verbatim.
        if abs(now - sent) > api.max_skew:
            return "replayed", (f"{TIMESTAMP_HEADER} is {now - sent:+.0f}s from the server clock "
                                f"(allowed: {api.max_skew:g}s); check the bot's clock")
        self._forget(now)
        if signature in self.seen:
            return "replayed", "this signature was already used (a replayed request)"
        # Remembered until its timestamp leaves the skew window; after that the skew check refuses it.
        self.seen[signature] = sent + api.max_skew
        return None, ""

    def _forget(self, now: float) -> None:
        if len(self.seen) > 1000:
            self.seen = {sig: until for sig, until in self.seen.items() if until >= now}


AUTH = web.AppKey("feedwatch.trading_auth", Authenticator)


class _Throttle:
    """Logs each kind of problem at most once per interval, counting the ones it kept quiet."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.quiet: dict[str, int] = {}

    def warn(self, key: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.last.get(key, -1e9) < _LOG_EVERY:
            self.quiet[key] = self.quiet.get(key, 0) + 1
            return
        self.last[key] = now
        suppressed = self.quiet.pop(key, 0)
        suffix = f" ({suppressed} similar not logged in the last minute)" if suppressed else ""
        log.warning(message + suffix, *args)


_throttle = _Throttle()


def add_routes(app: web.Application) -> None:
    """Attach the tracker, its renderer and ``POST /api/v1/events`` to a ``create_app`` app."""
    config = app[CONFIG]
    if config.trading is None:
        return
    tracker = app.get(TRACKER) or attach(config, app[CLOCK].time())
    app[TRACKER] = tracker
    if not any(isinstance(r, TradingCollector) and r.tracker is tracker for r in app[RENDERERS]):
        app[RENDERERS] = app[RENDERERS] + (TradingCollector(tracker, app[COLLECTOR].errors),)
    app[AUTH] = Authenticator(config.trading.api)
    if not config.trading.api.enabled:
        log.info("trading push API (%s) refuses every request: no trading.api.token or hmac_secret configured",
                 EVENTS_PATH)
    app.router.add_post(EVENTS_PATH, post_events)


async def post_events(request: web.Request) -> web.Response:
    app = request.app
    tracker = app[TRACKER]
    now = app[CLOCK].time()
    body = await request.read()
    reason, message = app[AUTH].check(request.headers, body, now)
    if reason is not None:
        tracker.reject(reason)
        _throttle.warn(reason, "trading push API: refused a request from %s (%s): %s",
                       request.remote, reason, message)
        return json_problem(message, 401, {"WWW-Authenticate": 'Bearer realm="feedwatch"'})
    try:
        raws = split_payload(body)
    except EventError:
        result = tracker.ingest_json(body, now)  # counts and describes the broken body
    else:
        limit = tracker.config.api.max_batch
        if len(raws) > limit:
            return json_problem(f"{len(raws)} events in one request; at most {limit} (trading.api.max_batch)",
                                       413)
        result = tracker.ingest_raw(raws, now)
    for problem in result.problems:
        _throttle.warn(problem.partition(":")[0], "trading push API: skipped an event: %s", problem)
    duplicates = result.rejected.get("duplicate", 0)
    others = {k: v for k, v in result.rejected.items() if k != "duplicate"}
    status = 400 if not result.accepted and not duplicates and others else 200
    return json_response({"accepted": result.accepted, "duplicates": duplicates, "rejected": others,
                                 "problems": result.problems}, status)
