"""``POST /api/v1/events``: trading bots that prefer to push their events over HTTP.

``add_routes(app)`` is an extension of ``exporter.web.app.create_app`` (registered in the
``feedwatch.web`` entry points); it does nothing unless the config has a ``trading:`` section.
It attaches the shared ``Tracker`` (``TRACKER`` app key; the same object the ``kind: trading``
feed writes to), adds the trading collector to the app's renderers unless the caller already
passed one, adds the route and a timer that keeps the state file's backup fresh.

The body is one event object or a JSON array of them (docs/trading-events.md). Every request
must be authenticated, by either

- ``Authorization: Bearer <trading.api.token>``, or
- an HMAC-SHA256 signature: ``X-Feedwatch-Timestamp: <Unix seconds>`` and
  ``X-Feedwatch-Signature: sha256=<hex HMAC(hmac_secret, "<timestamp>." + body)>``. A timestamp
  further than ``max_skew`` from our clock, or a signature already used, is refused as a replay.

This route authenticates itself, so the web config's basic auth does not apply to it
(``own_auth``). Credentials are checked **before the body is read**: a bearer token completely,
a signature as far as it can be without the body (both headers present and well formed, the
timestamp a finite number of seconds within ``max_skew``, the signature not seen before). Only
then is the body read, at most ``max_body_size`` bytes within ``http.body_timeout``, and the
signature verified. A client that sends ``Expect: 100-continue`` is refused before it sends
the body at all.

A batch is all or nothing: every event is checked first, and one invalid event refuses the whole
request (400, each invalid event named by its index); the valid ones are then applied and
stored in one transaction. Answers:

- 200 ``{"accepted": n, "duplicates": d, "rejected": {reason: count}, "problems": [...]}``
  (``duplicates`` and ``rejected.out_of_order`` are events already covered by the stored state:
  normal after a bot reconnects, not errors);
- 400 ``{"error": ..., "errors": [{"index": i, "reason": r, "message": m}], ...}``: nothing applied;
- 401 (``WWW-Authenticate``) for a missing or wrong credential or a replay;
- 408 when the body does not arrive within ``http.body_timeout``;
- 413 for a body over ``max_body_size`` or more than ``max_batch`` events;
- 503 (``Retry-After``) when the state file cannot be written (disk full, read-only): nothing
  was applied or counted; send the same events again later.

Refusals are counted (``feedwatch_trading_events_rejected_total{reason}`` for the events and
authentication, ``feedwatch_http_requests_rejected_total{reason}`` for 401/408/413,
``feedwatch_trading_state_store_errors_total`` for 503) and logged at most once a minute per
reason, with how many were not logged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator

from aiohttp import web

from exporter.throttle import Throttle
from exporter.trading.collector import TradingCollector
from exporter.trading.tracker import Tracker, attach, split_payload, EventError
from exporter.web.app import CLOCK, COLLECTOR, CONFIG, RELOAD_HOOKS, RENDERERS, json_problem, json_response, own_auth, reject_http
# The authenticator lives with the web layer, shared with the watchlist admin API; its names stay
# importable from here for bots and tests written against this module.
from exporter.web.auth import SIGNATURE_HEADER, TIMESTAMP_HEADER, Authenticator, Verdict, sign  # noqa: F401

log = logging.getLogger(__name__)

TRACKER = web.AppKey("feedwatch.trading_tracker", Tracker)
EVENTS_PATH = "/api/v1/events"
# How often the backup of the state file is checked for being due (loop time).
_HOUSEKEEPING_EVERY = 5.0
_RETRY_AFTER = "10"
_DISABLED = ("the push API is disabled: set trading.api.token or trading.api.hmac_secret "
             "(or their *_file variants)")


AUTH = web.AppKey("feedwatch.trading_auth", Authenticator)
_throttle = Throttle(log)


def add_routes(app: web.Application) -> None:
    """Attach the tracker, its renderer and ``POST /api/v1/events`` to a ``create_app`` app."""
    config = app[CONFIG]
    if config.trading is None:
        return
    tracker = app.get(TRACKER) or attach(config, app[CLOCK].time())
    app[TRACKER] = tracker
    if not any(isinstance(r, TradingCollector) and r.tracker is tracker for r in app[RENDERERS]):
        app[RENDERERS] = app[RENDERERS] + (TradingCollector(tracker, app[COLLECTOR].errors),)
    app[AUTH] = Authenticator(config.trading.api, _DISABLED, "trading.api")
    app[RELOAD_HOOKS].append(lambda new: _reload_credentials(app, new))
    if not config.trading.api.enabled:
        log.info("trading push API (%s) refuses every request: no trading.api.token or hmac_secret configured",
                 EVENTS_PATH)
    app.router.add_post(EVENTS_PATH, post_events, expect_handler=_expect)
    app.cleanup_ctx.append(_housekeeping)


def _reload_credentials(app: web.Application, config: Any) -> None:
    """A configuration reload: the push API takes the new token, secret and limits."""
    if config.trading is not None:
        app[AUTH].api = config.trading.api


async def _housekeeping(app: web.Application) -> AsyncIterator[None]:
    """Keeps the state file's backup fresh when events stop arriving (tracker.housekeeping)."""
    async def loop() -> None:
        while True:
            await asyncio.sleep(_HOUSEKEEPING_EVERY)
            problem = await app[TRACKER].housekeeping_async(app[CLOCK].time())
            if problem is not None:
                _throttle.warn("housekeeping", "trading state: %s (retried every %gs)", problem, _HOUSEKEEPING_EVERY,
                               reason="state_store")

    task = asyncio.create_task(loop(), name="feedwatch-trading-housekeeping")
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def _refuse(request: web.Request, verdict: Verdict) -> web.Response:
    assert verdict.reason is not None
    request.app[TRACKER].reject(verdict.reason)
    reject_http(request.app, "unauthorized")
    _throttle.warn(verdict.reason, "trading push API: refused a request from %s (%s): %s",
                   request.remote, verdict.reason, verdict.message, remote=request.remote, reason=verdict.reason)
    response = json_problem(verdict.message, 401, {"WWW-Authenticate": 'Bearer realm="feedwatch"'})
    response.force_close()  # the body was not read: do not wait for it on this connection
    return response


async def _expect(request: web.Request) -> web.Response | None:
    """``Expect: 100-continue``: refuse before the client sends the body at all."""
    verdict = request.app[AUTH].precheck(request.headers, request.app[CLOCK].time())
    if verdict.reason is not None:
        return _refuse(request, verdict)
    limit = request.app[TRACKER].config.api.max_body_size
    if (request.content_length or 0) > limit:
        return _too_large(request, limit)
    # What aiohttp's default expect handler does once we are content.
    if request.headers.get("Expect", "").lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"unknown Expect: {request.headers['Expect'][:40]}")
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the response proper has not started
    return None


def _too_large(request: web.Request, limit: int) -> web.Response:
    reject_http(request.app, "body_too_large")
    _throttle.warn("body_too_large", "trading push API: refused a body over %d bytes from %s "
                   "(trading.api.max_body_size)", limit, request.remote, remote=request.remote, reason="body_too_large")
    response = json_problem(f"request body larger than {limit} bytes (trading.api.max_body_size)", 413)
    response.force_close()
    return response


async def _read_body(request: web.Request, limit: int, timeout: float) -> bytes | web.Response:
    """The body, at most ``limit`` bytes within ``timeout`` seconds; or the 413/408 answer."""
    if (request.content_length or 0) > limit:
        return _too_large(request, limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await request.content.readany()
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    return _too_large(request, limit)
                chunks.append(chunk)
    except TimeoutError:
        reject_http(request.app, "body_timeout")
        _throttle.warn("body_timeout", "trading push API: %s did not send its %s-byte body within %gs "
                       "(http.body_timeout)", request.remote, request.content_length or "chunked", timeout,
                       remote=request.remote, reason="body_timeout")
        response = json_problem(f"request body not received within {timeout:g}s (http.body_timeout)", 408)
        response.force_close()
        return response
    return b"".join(chunks)


@own_auth
async def post_events(request: web.Request) -> web.Response:
    app = request.app
    tracker = app[TRACKER]
    auth = app[AUTH]
    verdict = auth.precheck(request.headers, app[CLOCK].time())
    if verdict.reason is not None:
        return _refuse(request, verdict)
    body = await _read_body(request, tracker.config.api.max_body_size, app[CONFIG].http.body_timeout)
    if isinstance(body, web.Response):
        return body
    now = app[CLOCK].time()  # after the read: the events are applied now
    verdict = auth.verify(verdict, body, now)
    if verdict.reason is not None:
        return _refuse(request, verdict)
    try:
        raws = split_payload(body)
    except EventError:
        result = tracker.ingest_json(body, now, atomic=True)  # counts and describes the broken body
    else:
        limit = tracker.config.api.max_batch
        if len(raws) > limit:
            return json_problem(f"{len(raws)} events in one request; at most {limit} (trading.api.max_batch)", 413)
        result = await tracker.ingest_raw_async(raws, now, atomic=True)   # answered once committed
    if result.store_error is not None:
        _throttle.warn("state_store", "trading push API: answered 503, nothing applied: %s", result.store_error,
                       remote=request.remote, reason="state_store")
        return json_problem(f"the trading state cannot be saved, nothing was applied; send the same events "
                            f"again later ({result.store_error})", 503, {"Retry-After": _RETRY_AFTER})
    duplicates = result.rejected.get("duplicate", 0)
    others = {k: v for k, v in result.rejected.items() if k != "duplicate"}
    answer: dict[str, Any] = {"accepted": result.accepted, "duplicates": duplicates, "rejected": others,
                              "problems": result.problems}
    if result.refused:
        errors = [{"index": index, "reason": reason, "message": message} for index, reason, message in result.errors]
        first = errors[0]
        where = f"events[{first['index']}]" if first["index"] is not None else "the body"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        answer["error"] = f"{where}: {first['reason']}: {first['message']}{more}; nothing was applied"
        answer["errors"] = errors
        answer["problems"] = [f"events[{e['index']}]: {e['reason']}: {e['message']}" if e["index"] is not None
                              else f"body: {e['reason']}: {e['message']}" for e in errors]
        _throttle.warn(first["reason"], "trading push API: refused a batch from %s: %s", request.remote, answer["error"],
                       remote=request.remote, reason=first["reason"])
        return json_response(answer, 400)
    for problem in result.problems:
        _throttle.warn(problem.partition(":")[0], "trading push API: skipped an event: %s", problem,
                       remote=request.remote, reason=problem.partition(":")[0])
    return json_response(answer, 200)
