"""``POST /api/v1/alerts/test``: ``feedwatch alert-test`` over HTTP (a ``feedwatch.web`` extension).

    POST /api/v1/alerts/test            body: {"channel": "all"} (or "slack", "telegram", "email",
                                        "webhook"; an empty body means all), optional "timeout"
    X-Feedwatch-Timestamp: <Unix seconds>
    X-Feedwatch-Signature: sha256=<hex HMAC-SHA256(trading.api.hmac_secret, "<timestamp>." + body)>

    200 {"run_id": "3f2a9c1b7d4e", "receiver": "alert-test", "channel": "all", "ok": false,
         "results": [{"channel": "slack", "delivered": true, "attempts": 1, "failures": 0,
                      "verdict": "delivered"}, ...]}

The request must be signed like a push of trading events (``exporter/trading/api.py``'s
``Authenticator``: the headers checked before the body is read, the same replay protection, one
shared memory of used signatures); a bearer token is not enough, because the request makes
Alertmanager page people. It authenticates itself, so the web config's basic auth leaves it alone
(``own_auth``), like the push API. The work is
``exporter.alerting.receivers.alert_test``, the one the CLI runs, so both answer the same.

Which Alertmanager: ``FEEDWATCH_ALERTMANAGER_URL`` (as for the CLI; default
``http://127.0.0.1:9093``), read when the app is built. One test runs at a time; a second request
waits for the first. Answers: 400 bad body or channel, 401 unsigned or bad signature or replay,
404 Alertmanager has no receiver for that test (render its config with ``feedwatch
alertmanager-config``), 502 Alertmanager unreachable or refusing the alert, 503 signing not
configured (no ``trading.api.hmac_secret``).
"""

from __future__ import annotations

import asyncio
import json
import os

from aiohttp import web

from exporter.alerting import receivers
from exporter.trading.api import AUTH, Authenticator
from exporter.web.app import CLOCK, CONFIG, json_problem, json_response, own_auth, reject_http

PATH = "/api/v1/alerts/test"
ALERTMANAGER_URL = web.AppKey("feedwatch.alertmanager_url", str)
_LOCK = web.AppKey("feedwatch.alert_test_lock", asyncio.Lock)
# Filled at the first request, when every extension has run: the push API's Authenticator (one
# memory of used signatures for both endpoints), or one of our own.
_AUTH = web.AppKey("feedwatch.alert_test_auth", list)
MAX_TIMEOUT = 120.0
MAX_BODY = 4096  # {"channel": ..., "timeout": ...} is a few dozen bytes


def install(app: web.Application) -> None:
    app[ALERTMANAGER_URL] = os.environ.get("FEEDWATCH_ALERTMANAGER_URL", "http://127.0.0.1:9093")
    app[_LOCK] = asyncio.Lock()
    app[_AUTH] = []
    app.router.add_post(PATH, post_alert_test)


def _authenticator(app: web.Application) -> Authenticator | None:
    holder = app[_AUTH]
    if not holder:
        auth = app.get(AUTH)
        trading = app[CONFIG].trading
        if auth is None and trading is not None:
            auth = Authenticator(trading.api)
        holder.append(auth)
    auth = holder[0]
    return auth if auth is not None and auth.api.hmac_secret else None


def _unauthorized(app: web.Application, message: str) -> web.Response:
    reject_http(app, "unauthorized")
    return json_problem(message, 401, {"WWW-Authenticate": 'Bearer realm="feedwatch"'})


@own_auth  # signed like a push of events: the web config's basic auth does not apply
async def post_alert_test(request: web.Request) -> web.Response:
    app = request.app
    auth = _authenticator(app)
    if auth is None:
        return json_problem("request signing is not configured: set trading.api.hmac_secret (the push API's "
                            "HMAC secret signs alert tests too)", 503)
    if "Authorization" in request.headers:
        return _unauthorized(app, "sign the request (X-Feedwatch-Timestamp, X-Feedwatch-Signature): a bearer "
                                  "token cannot send test alerts")
    # As for pushed events: everything the headers can prove is checked before the body is read.
    verdict = auth.precheck(request.headers, app[CLOCK].time())
    if verdict.reason is not None:
        return _unauthorized(app, verdict.message)
    try:
        body = await asyncio.wait_for(request.content.read(MAX_BODY + 1), app[CONFIG].http.body_timeout)
    except asyncio.TimeoutError:
        reject_http(app, "body_timeout")
        return json_problem(f"the body did not arrive within {app[CONFIG].http.body_timeout:g}s", 408)
    if len(body) > MAX_BODY:
        reject_http(app, "body_too_large")
        return json_problem(f"the body is larger than {MAX_BODY} bytes", 413)
    verdict = auth.verify(verdict, body, app[CLOCK].time())
    if verdict.reason is not None:
        return _unauthorized(app, verdict.message)
    try:
        options = json.loads(body) if body.strip() else {}
        if not isinstance(options, dict):
            raise ValueError("expected a JSON object like {\"channel\": \"all\"}")
        unknown = set(options) - {"channel", "timeout"}
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))} (known: channel, timeout)")
        channel = options.get("channel", "all")
        receiver = receivers.receiver_for(channel) if isinstance(channel, str) else None
        if receiver is None:
            raise ValueError(f"channel must be a string, got {channel!r}")
        timeout = float(options.get("timeout", 30.0))
        if not 0 < timeout <= MAX_TIMEOUT:
            raise ValueError(f"timeout must be in (0, {MAX_TIMEOUT:g}] seconds, got {timeout:g}")
    except (ValueError, TypeError) as exc:
        return json_problem(str(exc), 400)
    async with app[_LOCK]:
        try:
            report = await receivers.alert_test(app[ALERTMANAGER_URL], timeout, receiver, channel=channel)
        except LookupError as exc:
            return json_problem(f"{exc} (render it with feedwatch alertmanager-config)", 404)
        except RuntimeError as exc:
            return json_problem(str(exc), 502)
    return json_response(report.to_json())

