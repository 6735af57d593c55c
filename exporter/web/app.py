"""The exporter's HTTP face (aiohttp): /metrics, health probes, the JSON API, the live status page.

``create_app`` is an app factory: the service calls it with the real clock and the global
registry, tests call it with a ``FakeClock`` and a fresh ``CollectorRegistry``. State lives in
typed app keys; the event-loop-lag watcher runs as a ``cleanup_ctx`` task that is cancelled and
awaited on exit. Routes:

    GET /                          landing page: version, feeds with their state counts, links
    GET /metrics                   Prometheus text 0.0.4, or OpenMetrics when Accept asks for it;
                                   ?name[]=... for some families only (config.telemetry_path; gzip on
                                   Accept-Encoding; exporter/exposition.py)
    GET /-/healthy                 200 "OK" while the process serves
    GET /-/ready                   200 once every feed connected at least once, or after the
                                   startup grace; 503 with the reason otherwise
    POST|PUT /-/reload             re-read the configuration file (``exporter/reload.py``): 200, or
                                   500 with every problem (the running configuration stays);
                                   other methods 405; 503 when the app has no file to re-read
    GET /api/v1/status             per-feed health, connections, state counts, worst symbols
    GET /api/v1/symbols/{feed}/{symbol}[?max_staleness=5s][&source=ws]
                                   "is this price fresh enough to trade on?" (source=ws: not if
                                   the price came from the REST fallback)
    GET /status                    the live status page (exporter/web/static/status.html)
    GET /api/v1/stream             Server-Sent Events: one JSON snapshot per second, and a named
                                   event as soon as an extension's part changes (below); at most a
                                   quarter of http.max_connections at once (503 beyond)
    GET /api/v1/snapshot           the same snapshot once (debugging, scripts)

Extension points besides routes: ``SNAPSHOT_PARTS`` (name -> ``now -> JSON value``, added to
every snapshot under that name; ``push(app, name)`` sends the part to every open stream at once,
as ``event: <name>``, at most every ``push_min_interval``: the trading view pushes on each
tracker change), ``HISTORY`` (the last hour of samples for sparklines, ``web/history.py``) and
``RELOAD_LISTENERS`` (told of every config reload, applied or not: ``feedwatch run`` calls
``notify_reload(app, ok, problems, trigger)``; ``RELOAD_HOOKS`` get the new config after a success).

``/metrics`` = ``BookCollector`` text + each extra renderer's text (the trading collector) +
``feedwatch_render_errors_total`` (samples the collectors had to skip, ``collector.RenderErrors``) +
the registry's (build info, loop lag, scrape duration, process metrics), each in the format and
with the families the scrape asked for (``exporter.exposition``). No venue or bot value can make
it answer 500: the collectors skip and count what they cannot render.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import logging
import ssl
import threading
import time
import zlib
from bisect import bisect_left
from dataclasses import dataclass, field
from itertools import accumulate, islice
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Generator, Sequence

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry

from exporter.book import STATE_NAMES, STATES, Book
from exporter.clock import SystemClock
from exporter.collector import BookCollector
from exporter.config import Config, listen_address, parse_duration
from exporter.exposition import CONTENT_TYPE_TEXT, Exposition, negotiate
from exporter.plugins import WEB_EXTENSIONS
from exporter.sharding import Shard
from exporter.slices import run_all, run_sliced
from exporter.version import __version__
from exporter.web import guard, status
from exporter.web.history import History, feed_staleness
from exporter.web.loopwatch import LoopWatch
from exporter.web.selfmetrics import SelfMetrics

log = logging.getLogger(__name__)

CONTENT_TYPE_METRICS = CONTENT_TYPE_TEXT   # the default; OpenMetrics when asked (exporter/exposition.py)
STATIC_DIR = Path(__file__).parent / "static"
GZIP_LEVEL = 1  # ~6x smaller than plain at a fraction of level 9's cost (bench/README.md)
try:
    # ISA-L's deflate: at level 1 the same size as zlib's level 1 for 3.7x less CPU (100k
    # symbols' 50 MB: 31 ms against 115 ms; bench/README.md), CPU the event loop's core needs.
    from isal import isal_zlib as deflate_lib
except ImportError:  # pragma: no cover - a platform without its wheel: the standard library's
    deflate_lib = zlib
# A /metrics body is built and written in blocks of about this many bytes (``body_steps``).
BODY_BLOCK = 256 * 1024
# Parts measured per step of ``body_steps`` (the lengths of scattered objects: cache misses).
_ENDS_CHUNK = 4096

Renderer = Callable[[float], str]
# ``POST /-/reload``: runs a reload and returns its problems ([] when the new configuration runs).
Reload = Callable[[str], Awaitable[list[str]]]
# An extension adds routes, state and renderers to a new app; it decides from the app's config
# whether it applies (the trading ingest API: only with a ``trading:`` section).
Extension = Callable[[web.Application], None]


@dataclass
class Settings:
    """Server knobs that are not user configuration (tests compress them)."""

    ready_grace: float = 60.0        # /-/ready turns 200 this long after start even if a feed never connected
    stream_interval: float = 1.0     # seconds between status-page snapshots
    stream_limit: int = 1000         # symbols per feed in a snapshot (the stalest past this)
    started_at: float = 0.0          # injected-clock time the app was created
    lingering_time: float = 2.0      # seconds an unread request body (a refused push) is drained before closing
    history_interval: float = 10.0   # seconds between sparkline samples
    history_span: float = 3600.0     # how far back the sparklines reach
    push_min_interval: float = 0.1   # a changed snapshot part is pushed at most this often


@dataclass
class StreamHub:
    """Shares one snapshot per interval among all status-page clients, pushes changed parts to
    them as soon as they change, and ends them on shutdown."""

    closing: asyncio.Event = field(default_factory=asyncio.Event)
    cached_at: float = -1.0
    cached_key: int = -1
    cached: bytes = b""
    clients: int = 0  # streams open now (a stream holds its connection active: they are capped)
    # Pushes: part name -> (sequence number, the SSE message); every stream waits on its waker.
    pushes: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    wakers: set[asyncio.Event] = field(default_factory=set)
    sequence: int = 0
    loop: asyncio.AbstractEventLoop | None = None
    loop_thread: int = 0
    scheduled: dict[str, asyncio.TimerHandle | None] = field(default_factory=dict)
    built_at: dict[str, float] = field(default_factory=dict)


BOOK = web.AppKey("feedwatch.book", Book)
CONFIG = web.AppKey("feedwatch.config", Config)
CLOCK = web.AppKey("feedwatch.clock", Any)
REGISTRY = web.AppKey("feedwatch.registry", CollectorRegistry)
COLLECTOR = web.AppKey("feedwatch.collector", BookCollector)
SELF_METRICS = web.AppKey("feedwatch.self_metrics", SelfMetrics)
RENDERERS = web.AppKey("feedwatch.renderers", tuple)
SERVICE = web.AppKey("feedwatch.service", Any)
SETTINGS = web.AppKey("feedwatch.settings", Settings)
HUB = web.AppKey("feedwatch.stream_hub", StreamHub)
STATUS_PAGE = web.AppKey("feedwatch.status_page", bytes)
RELOAD = web.AppKey("feedwatch.reload", Any)          # a ``Reload``, or None
# Called with the new Config after a successful reload. The app's CONFIG stays the one it was
# built with (a started app's state is frozen); what may change at run time (the trading push
# API's credentials, say) is handed over here by the extension that owns it.
RELOAD_HOOKS = web.AppKey("feedwatch.reload_hooks", list)
FLIGHTS = web.AppKey("feedwatch.scrape_flights", dict)   # (Exposition, gzip) -> the render in flight
CONNECTION_GUARD = web.AppKey("feedwatch.connection_guard", guard.ConnectionGuard)  # set by serve()
SNAPSHOT_PARTS = web.AppKey("feedwatch.snapshot_parts", dict)
HISTORY = web.AppKey("feedwatch.history", History)
RELOAD_LISTENERS = web.AppKey("feedwatch.reload_listeners", list)

_encode = msgspec.json.encode


def create_app(book: Book, config: Config, clock: Any = None, registry: CollectorRegistry | None = None,
               renderers: Sequence[Renderer] = (), service: Any = None, *,
               settings: Settings | None = None,
               extensions: Sequence[Extension] | None = None,
               reload: Reload | None = None) -> web.Application:
    """Build the application; nothing runs until it is started (``serve`` or aiohttp's runner).

    ``registry`` defaults to a fresh ``CollectorRegistry`` (so building two apps in one process
    never collides); ``service`` is kept for routes that need the runners (``SERVICE`` key) but
    its lifecycle belongs to the caller. ``extensions`` add routes of their own after the core
    ones; by default every one registered in the ``feedwatch.web`` entry points (the trading
    ingest API among them), so this module never imports the components it serves. ``reload``
    serves ``POST /-/reload`` (``feedwatch run`` passes its ``Reloader``).
    """
    clock = clock or SystemClock()
    registry = registry if registry is not None else CollectorRegistry()
    settings = dataclasses.replace(settings or Settings(), started_at=clock.time())
    app = web.Application()
    app[BOOK] = book
    app[CONFIG] = config
    app[CLOCK] = clock
    app[REGISTRY] = registry
    app[COLLECTOR] = BookCollector(book)
    app[SELF_METRICS] = SelfMetrics.of(registry)
    # A service brings its components' renderers (frame recorder, incident journal) by duck typing:
    # this module never imports them.
    app[RENDERERS] = tuple(renderers) + tuple(getattr(service, "renderers", ()))
    app[SERVICE] = service
    app[SETTINGS] = settings
    app[HUB] = StreamHub()
    app[STATUS_PAGE] = (STATIC_DIR / "status.html").read_bytes()
    app[RELOAD] = reload
    app[RELOAD_HOOKS] = []
    app[FLIGHTS] = {}
    app[SNAPSHOT_PARTS] = {}
    app[HISTORY] = History(settings.history_interval, settings.history_span)
    app[HISTORY].add_pass("feeds", feed_staleness(book))
    app[RELOAD_LISTENERS] = []
    app.cleanup_ctx.append(_background_tasks)
    app.on_shutdown.append(_end_streams)

    if config.telemetry_path != "/":
        app.router.add_get("/", landing)
    app.router.add_get(config.telemetry_path, metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload_config)
    app.router.add_put("/-/reload", reload_config)
    app.router.add_get("/api/v1/status", api_status)
    app.router.add_get("/api/v1/symbols/{feed}/{symbol:.+}", api_symbol)
    app.router.add_get("/api/v1/snapshot", api_snapshot)
    app.router.add_get("/api/v1/stream", api_stream)
    app.router.add_get("/status", status_page)
    for extend in (WEB_EXTENSIONS.all().values() if extensions is None else extensions):
        extend(app)
    return app


async def serve(app: web.Application, listen: str,
                ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``listen`` (``":10119"``, ``"127.0.0.1:0"``); returns the runner and the bound port.

    ``:port`` and ``[::]:port`` listen on every interface, IPv4 and IPv6 (IPv4 alone on a host
    without IPv6), like a Go exporter's ``--web.listen-address``; ``0.0.0.0:port`` is IPv4 only.

    Connections pass through a ``guard.ConnectionGuard`` (header and idle deadlines, a cap on
    open connections: the config's ``http:`` section); handlers of clients that hang up are
    cancelled; an unread request body is drained for at most ``Settings.lingering_time``.
    Stop it with ``await runner.cleanup()`` (ends status-page streams, then the background tasks).
    If the site cannot start (port taken, ...) the runner is cleaned up and the OSError raised.
    """
    host, port = listen_address(listen)
    if listen.rpartition(":")[0].strip("[]") in ("", "::"):
        host = None   # every interface, both families (guard.bind_everywhere)
    limits = app[CONFIG].http
    metrics = app[SELF_METRICS]
    connection_guard = guard.ConnectionGuard(limits, guard.connection_cap(limits.max_connections),
                                             metrics.reject_http)
    app.middlewares.insert(0, connection_guard.middleware)  # outermost: auth time counts as active
    app[CONNECTION_GUARD] = connection_guard
    metrics.watch_connections(lambda: connection_guard.open, connection_guard.max_connections)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0, handler_cancellation=True,
                           keepalive_timeout=limits.idle_timeout, read_bufsize=guard.READ_SIZE,
                           lingering_time=app[SETTINGS].lingering_time)
    await runner.setup()
    try:
        site = guard.GuardedSite(runner, host, port, connection_guard, ssl_context=ssl_context)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    server = site._server  # aiohttp exposes the bound sockets only here
    bound = server.sockets[0].getsockname()[1] if server is not None and server.sockets else port
    return runner, bound


# --- lifecycle --------------------------------------------------------------------------------

async def _background_tasks(app: web.Application) -> AsyncIterator[None]:
    watch = LoopWatch.start()   # times every loop iteration while the app serves (loopwatch.py)
    app[SELF_METRICS].loop.watch = watch
    hub = app[HUB]
    hub.loop, hub.loop_thread = asyncio.get_running_loop(), threading.get_ident()
    tasks = [asyncio.create_task(_sample_history(app), name="feedwatch-history")]
    yield
    hub.loop = None
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    watch.stop()


async def _sample_history(app: web.Application) -> None:
    history, clock = app[HISTORY], app[CLOCK]
    while True:
        await run_sliced(history.sample_steps(clock.time()))   # a walk over every symbol: sliced
        await asyncio.sleep(history.interval)


def notify_reload(app: web.Application, ok: bool, problems: Sequence[str] = (), trigger: str = "") -> None:
    """Tell the reload listeners (the incident journal) that a config reload finished: whether it
    was applied, its problems, what asked for it (``SIGHUP``, ``POST /-/reload``)."""
    for listener in app[RELOAD_LISTENERS]:
        try:
            listener(ok, list(problems), trigger)
        except Exception:
            log.exception("reload listener %r failed", listener)


# --- pushes -------------------------------------------------------------------------------------

def push(app: web.Application, part: str) -> None:
    """Send snapshot part ``part`` to every open stream now (coalesced to one per
    ``push_min_interval``). Safe from any thread; a no-op while the app is not running."""
    hub = app[HUB]
    loop = hub.loop
    if loop is None:
        return
    if threading.get_ident() == hub.loop_thread:
        _schedule_push(app, part)
    else:
        loop.call_soon_threadsafe(_schedule_push, app, part)


def _schedule_push(app: web.Application, part: str) -> None:
    hub = app[HUB]
    if hub.scheduled.get(part) is not None or hub.loop is None:
        return  # one is coming: it will carry this change too
    wait = hub.built_at.get(part, -1e9) + app[SETTINGS].push_min_interval - hub.loop.time()
    if wait <= 0:
        hub.scheduled[part] = None
        _build_push(app, part)
    else:
        hub.scheduled[part] = hub.loop.call_later(wait, _build_push, app, part)


def _build_push(app: web.Application, part: str) -> None:
    hub = app[HUB]
    hub.scheduled[part] = None
    if hub.loop is None:
        return
    hub.built_at[part] = hub.loop.time()
    now = app[CLOCK].time()
    try:
        value = app[SNAPSHOT_PARTS][part](now)
    except Exception:
        log.exception("status snapshot part %s failed", part)
        return
    hub.sequence += 1
    hub.cached_at = -1.0  # the next full snapshot must not carry an older copy of this part
    body = _encode({"now": now, part: value})
    hub.pushes[part] = (hub.sequence, b"event: " + part.encode() + b"\ndata: " + body + b"\n\n")
    for waker in hub.wakers:
        waker.set()


async def _end_streams(app: web.Application) -> None:
    hub = app[HUB]
    hub.closing.set()
    for waker in hub.wakers:
        waker.set()


# --- /metrics -----------------------------------------------------------------------------------

_renderer_failures: dict[str, float] = {}


def render_metrics(app: web.Application, exposition: Exposition = Exposition()) -> bytes:
    """The full exposition of one scrape, uncompressed: text 0.0.4 with every family by default.

    Rendered at once (tests, tools); ``/metrics`` renders through ``shared_render``."""
    now = app[CLOCK].time()
    started = time.perf_counter()
    parts = app[COLLECTOR].render(now, exposition)   # already in the format and families asked for
    return exposition.finish(_other_parts(app, exposition, now, [parts], started))


def _other_parts(app: web.Application, exposition: Exposition, now: float, parts: list,
                 started: float) -> list:
    """After the book's text: each extra renderer's, the render errors, the registry's."""
    render = exposition.render
    for renderer in app[RENDERERS]:
        try:
            parts.append(render(renderer(now)))
        except Exception:  # a broken extra renderer must not take the feed metrics down with it
            app[SELF_METRICS].scrape_errors.inc()
            name = getattr(renderer, "__qualname__", repr(renderer))
            if time.monotonic() - _renderer_failures.get(name, -1e9) > 60.0:
                _renderer_failures[name] = time.monotonic()
                log.exception("metrics renderer %s failed; its series are missing from this scrape "
                              "(repeats are logged once a minute)", name, extra={"renderer": name})
    # After every collector: the samples any of them had to leave out of this very scrape.
    parts.append(render(app[COLLECTOR].errors.render()))
    app[SELF_METRICS].scrape_duration.set(time.perf_counter() - started)
    parts.append(exposition.registry_text(app[REGISTRY]))
    return parts


async def render_parts(app: web.Application, exposition: Exposition) -> list[str | bytes]:
    """``render_metrics`` without holding the event loop: the book renders chunk by chunk and the
    loop runs (reads frames, answers the API) after every ``slices.SLICE`` of rendering (issue 14:
    one 412 ms render stalled ingest 480 ms)."""
    now = app[CLOCK].time()
    started = time.perf_counter()
    parts = await run_sliced(app[COLLECTOR].steps(now, exposition))
    parts = _other_parts(app, exposition, now, parts, started)
    if exposition.openmetrics:
        parts.append("# EOF\n")
    return parts


def body_steps(parts: list[str | bytes], gzipped: bool) -> Generator[None, None, tuple[bytes, ...]]:
    """The response body from the rendered parts, as blocks of about ``BODY_BLOCK`` bytes: a pass
    run on the event loop in slices (``exporter/slices.py``), like the render before it.

    Never one 50 MB ``bytes``: joining 100k symbols' text at once is a single C call of ~100 ms
    (fresh pages, measured), and handing it to the transport copied what the socket did not take
    in one loop iteration; blocks are joined (and gzipped) one per step and written one by one.
    The parts are cut into runs of about ``BODY_BLOCK`` bytes (a text part's length in characters
    stands for its bytes) found in C, each run joined by one call: the per-symbol families come
    as thousands of small bytes parts (one per block of 32 symbols, see
    ``exporter.collector.BLOCK``: ~16,000 at 100k symbols), too many for a Python step each; their
    lengths are read ``_ENDS_CHUNK`` parts per step. gzip compresses a run per call, at most
    ``BODY_BLOCK`` of text (a larger part is fed in slices), ~0.2 ms each with ISA-L; the
    compressed pieces are gathered into blocks of about ``BODY_BLOCK``.

    Not a thread: the body was built in one at nice +10 until issue 14's second stall round.
    On the core the loop keeps busy, that thread cost the loop 4-7 ms of every iteration it ran
    in (waits for the GIL and preemptions, counted per iteration), the largest part of what was
    left over 20 ms; on the loop, in slices, there was none (bench/README.md)."""
    ends: list[int] = []
    for i in range(0, len(parts), _ENDS_CHUNK):   # ~2 ms for 16,000 parts: steps of their own
        # Each chunk's running total goes on from the last one's (that starting value skipped).
        ends.extend(islice(accumulate(map(len, parts[i:i + _ENDS_CHUNK]), initial=ends[-1] if ends else 0), 1, None))
        yield
    blocks: list[bytes] = []
    pending: list[bytes] = []
    size = 0
    deflate = deflate_lib.compressobj(GZIP_LEVEL, deflate_lib.DEFLATED, 31) if gzipped else None   # 31: gzip
    start, total = 0, len(parts)
    while start < total:
        stop = bisect_left(ends, (ends[start - 1] if start else 0) + BODY_BLOCK, start) + 1
        run = parts[start:stop]
        start = stop
        try:
            data = b"".join(run)   # type: ignore[arg-type]
        except TypeError:   # text among them (feed-wide families, other collectors): encoded
            data = b"".join([part if part.__class__ is bytes else part.encode()   # type: ignore[union-attr]
                             for part in run])
        if deflate is None:
            blocks.append(data)
            yield
            continue
        view = memoryview(data)
        for at in range(0, len(data), BODY_BLOCK):   # one slice unless a single part was larger
            piece = deflate.compress(view[at:at + BODY_BLOCK])
            pending.append(piece)
            size += len(piece)
            if size >= BODY_BLOCK:
                blocks.append(b"".join(pending))
                pending.clear()
                size = 0
            yield
    if deflate is not None:
        pending.append(deflate.flush())
        blocks.append(b"".join(pending))
    return tuple(blocks) if blocks else (b"",)


def body_blocks(parts: list[str | bytes], gzipped: bool) -> tuple[bytes, ...]:
    """``body_steps`` at once (tests, benchmarks)."""
    return run_all(body_steps(parts, gzipped))


async def shared_render(app: web.Application, exposition: Exposition, gzipped: bool) -> tuple[bytes, ...]:
    """One render for every scrape that asks for the same thing while it runs (single flight).

    500 concurrent scrapes cost one render and one body, not 500 (issue 14 measured 4 s each and
    700 MB); a scrape that arrives during a render gets that render's body, no older than the
    scrape itself. The render runs as a task of its own: a scraper that hangs up (its handler is
    cancelled) does not cancel it for the others.
    """
    flights = app[FLIGHTS]
    key = (exposition, gzipped)
    flight = flights.get(key)
    if flight is None:
        flight = asyncio.get_running_loop().create_task(_render_flight(app, exposition, gzipped),
                                                        name="feedwatch-render")
        flights[key] = flight
        flight.add_done_callback(lambda done: _landed(flights, key, done))
    return await asyncio.shield(flight)


async def _render_flight(app: web.Application, exposition: Exposition, gzipped: bool) -> tuple[bytes, ...]:
    parts = await render_parts(app, exposition)
    return await run_sliced(body_steps(parts, gzipped))


def _landed(flights: dict, key: tuple, done: asyncio.Task) -> None:
    if flights.get(key) is done:
        del flights[key]
    if not done.cancelled():
        done.exception()   # mark it retrieved: its waiters got it; with none left, no warning


def _accepts_gzip(request: web.Request) -> bool:
    for part in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


async def metrics(request: web.Request) -> web.StreamResponse:
    exposition = negotiate(request.headers.get("Accept"), request.query.getall("name[]", ()))
    gzipped = _accepts_gzip(request)
    blocks = await shared_render(request.app, exposition, gzipped)
    headers = {"Content-Type": exposition.content_type, "Vary": "Accept, Accept-Encoding"}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    if len(blocks) == 1:   # a small body (or a gzipped one of a few thousand symbols): one write
        return web.Response(body=blocks[0], headers=headers)
    response = web.StreamResponse(headers=headers)
    response.content_length = sum(map(len, blocks))
    await response.prepare(request)
    # Block by block, each write waiting while the socket is backed up (aiohttp drains past
    # 64 KiB): no 50 MB copy into the transport's buffer in one loop iteration (~85 ms measured),
    # and 500 scrapers' writes interleave with the feeds' reads.
    for block in blocks:
        await response.write(block)
    await response.write_eof()
    return response


# --- probes -------------------------------------------------------------------------------------

async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="OK")


def readiness(app: web.Application) -> tuple[bool, str]:
    """Ready once every feed has connected at least once, or once the startup grace is over."""
    never = [feed.name for feed in app[BOOK].feeds.values() if not feed.connects]
    if not never:
        return True, "every feed has connected"
    settings = app[SETTINGS]
    waited = app[CLOCK].time() - settings.started_at
    if waited >= settings.ready_grace:
        return True, f"startup grace of {settings.ready_grace:g}s is over; never connected: {', '.join(never)}"
    return False, (f"waiting for feeds to connect: {', '.join(never)} "
                   f"(ready anyway in {settings.ready_grace - waited:.0f}s)")


async def ready(request: web.Request) -> web.Response:
    is_ready, reason = readiness(request.app)
    return web.Response(text=("OK: " if is_ready else "Not ready: ") + reason + "\n",
                        status=200 if is_ready else 503)


async def reload_config(request: web.Request) -> web.Response:
    """Prometheus' and Alertmanager's ``/-/reload``; behind the web config's basic auth like every path."""
    reload = request.app[RELOAD]
    if reload is None:
        return web.Response(status=503, text="reload is not available: this server was started without a "
                                             "configuration file to re-read\n")
    problems = await reload(f"{request.method} /-/reload")
    if problems:
        return web.Response(status=500, text=f"failed to reload config ({len(problems)} problem(s); the running "
                                             f"configuration stays):\n" + "".join(f"{p}\n" for p in problems))
    return web.Response(text="configuration reloaded\n")


# --- JSON API -----------------------------------------------------------------------------------

def own_auth(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a route handler that authenticates every request itself (the push API: its token or
    HMAC signature, stronger than a password): the web config's basic auth leaves it alone."""
    handler.feedwatch_own_auth = True  # type: ignore[attr-defined]
    return handler


def reject_http(app: web.Application, reason: str) -> None:
    """Count a refused request in ``feedwatch_http_requests_rejected_total{reason}``."""
    app[SELF_METRICS].reject_http(reason)


def json_response(value: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """``value`` (a msgspec struct, dict or list) as JSON; every JSON route answers through here."""
    return web.Response(body=_encode(value), status=status_code, content_type="application/json", headers=headers)


def json_problem(message: str, status_code: int, headers: dict[str, str] | None = None) -> web.Response:
    """An API error: ``{"error": "..."}``, the one error shape of every JSON route."""
    return json_response(status.Problem(message), status_code, headers)


def _int_query(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=_encode(status.Problem(f"{name}: expected an integer, got {raw!r}")).decode(),
                                 content_type="application/json") from None
    return max(0, min(value, high))


async def api_status(request: web.Request) -> web.Response:
    app = request.app
    worst = _int_query(request, "worst", 10, 1000)
    return json_response(status.book_status(app[BOOK], app[CLOCK].time(), __version__, readiness(app), worst))


def _other_shard(app: web.Application, feed_name: str, symbol: str) -> str | None:
    """Sharded: why another replica, not this one, answers for ``symbol`` (421 Misdirected Request)."""
    shard = Shard.parse(app[CONFIG].shard).bound(app[CONFIG])   # an instrument's members go together
    if not shard.sharded:
        return None
    standby = getattr(app.get(SERVICE), "standby", ())
    if feed_name not in app[BOOK].feeds and feed_name not in standby:
        return None  # no such feed anywhere: a plain 404
    theirs = shard.owner_of(feed_name, symbol)
    if theirs == shard.index:
        return None
    return (f"{symbol!r} on feed {feed_name!r} belongs to shard {theirs} of {shard.count}; this replica is "
            f"shard {shard}: ask a replica of shard {theirs} (docs/scaling.md)")


async def api_symbol(request: web.Request) -> web.Response:
    app = request.app
    book = app[BOOK]
    feed_name = request.match_info["feed"]
    symbol = request.match_info["symbol"]
    feed = book.feeds.get(feed_name)
    state = feed.symbols.get(symbol) if feed is not None else None
    if state is None:
        elsewhere = _other_shard(app, feed_name, symbol)
        if elsewhere is not None:
            return json_problem(elsewhere, 421)
    if feed is None:
        known = ", ".join(sorted(book.feeds)) or "none configured"
        return json_problem(f"unknown feed {feed_name!r} (known feeds: {known})", 404)
    if state is None:
        return json_problem(f"symbol {symbol!r} is not watched on feed {feed_name!r} "
                            f"({len(feed.symbols)} symbols are; add it to the feed's symbols or the watchlist)", 404)
    max_staleness = None
    raw = request.query.get("max_staleness")
    if raw is not None:
        try:
            max_staleness = parse_duration(raw)
        except ValueError as exc:
            return json_problem(f"max_staleness: {exc}", 400)
    source = request.query.get("source")
    if source is not None and source not in ("ws", "rest"):
        return json_problem(f"source: expected ws or rest, got {source[:20]!r}", 400)
    return json_response(status.symbol_view(feed, state, app[CLOCK].time(), max_staleness, source))


def _snapshot_bytes(app: web.Application, limit: int) -> bytes:
    """One encoded snapshot, shared by every stream client for ``stream_interval`` (loop time)."""
    hub = app[HUB]
    loop_now = asyncio.get_running_loop().time()
    if hub.cached_key != limit or loop_now - hub.cached_at >= app[SETTINGS].stream_interval * 0.5:
        now = app[CLOCK].time()
        snap = status.snapshot(app[BOOK], now, __version__, limit)
        snap["interval"] = app[SETTINGS].stream_interval
        for name, part in app[SNAPSHOT_PARTS].items():
            try:
                snap[name] = part(now)
            except Exception:  # a broken part costs that part, not the page
                if time.monotonic() - _renderer_failures.get(f"part:{name}", -1e9) > 60.0:
                    _renderer_failures[f"part:{name}"] = time.monotonic()
                    log.exception("status snapshot part %s failed (repeats are logged once a minute)", name)
        snap["history"] = app[HISTORY].to_json()
        hub.cached, hub.cached_at, hub.cached_key = _encode(snap), loop_now, limit
    return hub.cached


async def api_snapshot(request: web.Request) -> web.Response:
    limit = _int_query(request, "limit", request.app[SETTINGS].stream_limit, 1_000_000)
    return web.Response(body=_snapshot_bytes(request.app, limit), content_type="application/json")


async def api_stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: ``data: <snapshot JSON>`` every ``stream_interval`` until the client
    goes, and ``event: <part>`` with ``{"now": ..., "<part>": ...}`` whenever a part is pushed."""
    app = request.app
    limit = _int_query(request, "limit", app[SETTINGS].stream_limit, 1_000_000)
    interval = app[SETTINGS].stream_interval
    hub = app[HUB]
    closing = hub.closing
    # A stream keeps its connection busy for as long as it is open, out of the guard's reach:
    # at most a quarter of the connections, so streams can never crowd out the scrapes.
    cap = max(1, app[CONFIG].http.max_connections // 4)
    if hub.clients >= cap:
        reject_http(app, "connection_limit")
        return json_problem(f"{hub.clients} status streams are open, the most allowed (a quarter of "
                            f"http.max_connections); retry later", 503, {"Retry-After": "30"})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    hub.clients += 1
    waker = asyncio.Event()
    loop = asyncio.get_running_loop()
    hub.wakers.add(waker)
    seen = hub.sequence  # the full snapshot below carries everything pushed so far
    try:
        await response.prepare(request)
        await response.write(f"retry: {int(max(interval, 1.0) * 2000)}\n\n".encode())
        while not closing.is_set():
            await response.write(b"data: " + _snapshot_bytes(app, limit) + b"\n\n")
            seen = max(seen, hub.sequence)
            next_full = loop.time() + interval
            while not closing.is_set() and (left := next_full - loop.time()) > 0:
                try:
                    await asyncio.wait_for(waker.wait(), left)
                except asyncio.TimeoutError:
                    break
                waker.clear()
                fresh = sorted((seq, message) for seq, message in hub.pushes.values() if seq > seen)
                for seq, message in fresh:
                    await response.write(message)
                    seen = seq
    except (ConnectionResetError, ConnectionError):
        pass  # the browser went away: nothing to clean up
    finally:
        hub.clients -= 1
        hub.wakers.discard(waker)
    return response


# --- pages --------------------------------------------------------------------------------------

async def status_page(request: web.Request) -> web.Response:
    return web.Response(body=request.app[STATUS_PAGE], content_type="text/html", charset="utf-8")


_STATE_COLOURS = {"healthy": "#2e9d4f", "degraded": "#d9a520", "stale": "#e0641b", "critical": "#c62828",
                  "closed": "#8a8f98"}


async def landing(request: web.Request) -> web.Response:
    app = request.app
    now = app[CLOCK].time()
    metrics_path = html.escape(app[CONFIG].telemetry_path)
    rows = []
    for feed in app[BOOK].feeds.values():
        feed.refresh_market(now)
        counts = feed.state_counts(now)
        cells = "".join(
            f'<td style="color:{_STATE_COLOURS[STATE_NAMES[s]]}">{counts[s]}</td>' for s in STATES)
        rows.append(f"<tr><td>{html.escape(feed.name)}</td><td>{html.escape(feed.config.kind)}</td>"
                    f"<td>{'up' if feed.is_up() else 'down'}</td>{cells}</tr>")
    heads = "".join(f"<th>{STATE_NAMES[s]}</th>" for s in STATES)
    is_ready, reason = readiness(app)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>feedwatch</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}
td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}}</style></head>
<body><h1>feedwatch</h1>
<p>Market-data freshness exporter, version {html.escape(__version__)}. {'Ready' if is_ready else 'Not ready'}:
{html.escape(reason)}.</p>
<table><tr><th>feed</th><th>kind</th><th>connection</th>{heads}</tr>
{''.join(rows) or '<tr><td colspan="8">no feeds configured</td></tr>'}
</table>
<ul>
<li><a href="status">Live status page</a></li>
<li><a href="{metrics_path.lstrip('/')}">Metrics</a></li>
<li><a href="api/v1/status">Status (JSON)</a></li>
<li><a href="-/healthy">Health</a> and <a href="-/ready">readiness</a></li>
</ul></body></html>
"""
    return web.Response(text=page, content_type="text/html")
