"""``POST`` / ``DELETE /api/v1/watchlist/{feed}/{symbol}``: the watchlist's admin API.

``add_routes(app)`` is an extension of ``exporter.web.app.create_app`` (registered in the
``feedwatch.web`` entry points). It serves the running service's watchlist (``SERVICE`` app key:
anything with a ``watchlist`` offering ``watch(feed, symbol, ttl, credential, origin)`` and
``unwatch(feed, symbol, credential, origin)``, as ``exporter/feeds/watchlist.py`` does), so this
module imports nothing above the web layer.

    POST   /api/v1/watchlist/stocks/NVDA      body (optional): {"ttl": "2h"}   -> watch NVDA for 2h
    DELETE /api/v1/watchlist/stocks/NVDA                                         -> stop (the API's watch)

Authenticated like the trading push API (``exporter/web/auth.py``), with the credentials of
``watchlist.api`` (``token``, ``hmac_secret``, their ``*_file`` variants, ``max_skew``): a bearer
token, or an HMAC-SHA256 signature over ``"<timestamp>." + "<METHOD> <path>\\n" + body`` (the
path as sent, so a signature for one symbol cannot be replayed for another). While neither is
configured every request is refused (401, saying which keys to set). Credentials are checked
before the body is read; the body is at most ``MAX_BODY`` bytes, read within
``http.body_timeout``.

Answers: 200 ``{"feed", "symbol", "watching", "expires", "message"}``; 400 for a symbol that
cannot be one (the config's message: wildcard-looking, blank...) or a bad body; 401; 404 for an
unknown feed, or a DELETE of a symbol the API did not add; 409 for a symbol a cap refuses
(``max_symbols``) or a configured one (DELETE); 421 Misdirected Request for a symbol another
shard owns (sharded replicas, docs/scaling.md: the message and the ``Feedwatch-Shard`` header name
the owner's index; nothing changes here); 503 when no service runs. Every change is logged
with the credential that signed it (``token`` or ``hmac``) and the client's address, and counted
in ``feedwatch_watchlist_api_changes_total{action,credential}``; refusals in
``feedwatch_http_requests_rejected_total{reason="unauthorized"}``, logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from exporter.config import parse_duration
from exporter.throttle import Throttle
from exporter.web.app import CLOCK, CONFIG, RELOAD_HOOKS, SERVICE, json_problem, json_response, own_auth, reject_http
from exporter.web.auth import Authenticator, Verdict

log = logging.getLogger(__name__)

WATCHLIST_PATH = "/api/v1/watchlist/{feed}/{symbol:.+}"
# {"ttl": "2h"} is a dozen bytes; room to spare, nothing to fill memory with.
MAX_BODY = 4096
_DISABLED = ("the watchlist API is disabled: set watchlist.api.token or watchlist.api.hmac_secret "
             "(or their *_file variants)")

WATCHLIST_AUTH = web.AppKey("feedwatch.watchlist_auth", Authenticator)
_throttle = Throttle(log)


def add_routes(app: web.Application) -> None:
    """Add the watchlist routes; they refuse every request until ``watchlist.api`` has a credential."""
    config = app[CONFIG]
    app[WATCHLIST_AUTH] = Authenticator(config.watchlist.api, _DISABLED, "watchlist.api")
    app[RELOAD_HOOKS].append(lambda new: setattr(app[WATCHLIST_AUTH], "api", new.watchlist.api))
    app.router.add_post(WATCHLIST_PATH, change_watchlist)
    app.router.add_delete(WATCHLIST_PATH, change_watchlist)


def signed_message(method: str, path: str, body: bytes) -> bytes:
    """What a watchlist request's HMAC covers after ``"<timestamp>."``: method, path as sent, body."""
    return f"{method.upper()} {path}\n".encode() + body


def _refuse(request: web.Request, verdict: Verdict) -> web.Response:
    reject_http(request.app, "unauthorized")
    _throttle.warn(verdict.reason or "unauthorized", "watchlist API: refused %s %s from %s (%s): %s",
                   request.method, request.path, request.remote, verdict.reason, verdict.message)
    response = json_problem(verdict.message, 401, {"WWW-Authenticate": 'Bearer realm="feedwatch"'})
    response.force_close()  # the body was not read: do not wait for it on this connection
    return response


async def _read_body(request: web.Request, timeout: float) -> bytes | web.Response:
    if (request.content_length or 0) > MAX_BODY:
        reject_http(request.app, "body_too_large")
        response = json_problem(f"request body larger than {MAX_BODY} bytes", 413)
        response.force_close()
        return response
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > MAX_BODY:
                    reject_http(request.app, "body_too_large")
                    response = json_problem(f"request body larger than {MAX_BODY} bytes", 413)
                    response.force_close()
                    return response
                chunks.append(chunk)
    except TimeoutError:
        reject_http(request.app, "body_timeout")
        response = json_problem(f"request body not received within {timeout:g}s (http.body_timeout)", 408)
        response.force_close()
        return response
    return b"".join(chunks)


def _ttl(body: bytes) -> float | None:
    """The optional ``{"ttl": ...}`` of a POST; ValueError with the problem."""
    if not body.strip():
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"body: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError('body: expected a JSON object like {"ttl": "2h"}')
    unknown = sorted(set(data) - {"ttl"})
    if unknown:
        raise ValueError(f"body: unknown key(s) {', '.join(unknown)} (the only key is ttl)")
    if data.get("ttl") is None:
        return None
    try:
        ttl = parse_duration(data["ttl"])
    except ValueError as exc:
        raise ValueError(f"ttl: {exc}") from None
    if ttl <= 0:
        raise ValueError("ttl: must be positive")
    return ttl


@own_auth
async def change_watchlist(request: web.Request) -> web.Response:
    app = request.app
    auth = app[WATCHLIST_AUTH]
    verdict = auth.precheck(request.headers, app[CLOCK].time())
    if verdict.reason is not None:
        return _refuse(request, verdict)
    body = await _read_body(request, app[CONFIG].http.body_timeout)
    if isinstance(body, web.Response):
        return body
    verdict = auth.verify(verdict, signed_message(request.method, request.raw_path, body), app[CLOCK].time())
    if verdict.reason is not None:
        return _refuse(request, verdict)
    watchlist: Any = getattr(app[SERVICE], "watchlist", None)
    if watchlist is None:
        return json_problem("no feeds are running in this process (an app without a service)", 503)
    feed, symbol = request.match_info["feed"], request.match_info["symbol"]
    origin = str(request.remote or "?")
    if request.method == "POST":
        try:
            ttl = _ttl(body)
        except ValueError as exc:
            return json_problem(str(exc), 400)
        result = await watchlist.watch(feed, symbol, ttl, verdict.credential, origin)
    else:
        result = await watchlist.unwatch(feed, symbol, verdict.credential, origin)
    if result.status != 200:
        # Sharded: 421 names the owning shard in the message and, for a client to route on, in
        # the Feedwatch-Shard header (its index; the JSON API's 421 says the same in words).
        headers = {"Feedwatch-Shard": str(result.owner)} if result.owner is not None else None
        return json_problem(result.message, result.status, headers)
    watching = request.method == "POST" or "still holds" in result.message
    return json_response({"feed": feed, "symbol": symbol, "watching": watching, "expires": result.expires,
                          "message": result.message})
