"""Scrape load: does a scrape stall ingest? A blaster, the real exporter and a scraper, in processes.

- **blaster** (its own process, on the second core): a loopback WebSocket server speaking enough
  Polygon to log the exporter in, then writing frames of 100 quote events as fast as the socket
  takes them, round-robin over every symbol; the first event of every frame is the same *hot*
  symbol, so the API's staleness of that symbol is how far behind the exporter's view runs.
- **exporter**: ``feedwatch run`` from a config like a user's (one Polygon feed, 100,000
  symbols), pinned to the first core.
- **client** (this process, second core): phases of ``PHASE`` seconds, alternating without and
  with scrapes (interleaved, so the machine's other load hits both alike). "With" scrapes the
  whole ``/metrics`` once a second the way Prometheus does (OpenMetrics, gzip); both poll the hot
  symbol on the JSON API every 20 ms. Ingest is read from ``feedwatch_feed_messages_total``
  with a ``name[]`` scrape (the per-symbol pass is skipped: it costs nothing worth counting).

Then 500 concurrent scrapes of a 2,000-symbol exporter (every symbol priced, the feed then
quiet): the 500 connections are opened first and the 500 requests sent at once; the exporter's
resident memory before and its high-water mark after (``/proc/PID/status``: VmRSS, VmHWM), and
each scrape's time (request sent to last byte). Beside it, alternated round by round, the *HTTP
floor*: plain aiohttp on the same core answering the same requests with the exporter's own
answer from memory. That is what 500 requests cost the HTTP stack (and this client) before any
render: 48-141 ms on this 2-core machine, where a lone scrape of 2,000 symbols is 7.5-16 ms.
So a render is measured as a lone scrape of the exporter less a lone scrape of the floor, and
the target is read as: no scrape longer than the floor's longest plus two renders (single flight:
a scrape waits at most for the render under way and its own).

Targets (issue 14): longest event-loop stall <= 20 ms (the exporter's own
``feedwatch_event_loop_iteration_seconds`` histogram, read before and after each scrape phase:
no iteration of the phase over its 20 ms bucket; ``feedwatch_event_loop_lag_seconds``, the
longest iteration of the last 60 s, is printed too, but its window reaches back over the
previous phase and, in the first minute, the start-up); ingest with
scrapes >= 85 % of without; the API's staleness of the hot symbol <= 50 ms; 500 concurrent
scrapes: RSS growth <= 50 MB and none longer than two renders past the HTTP floor.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.common import table
from bench.wsserver import accept, text_frame

PHASE = 10.0            # seconds per phase
PHASES = 4              # without, with, without, with
SYMBOLS = 100_000
EVENTS_PER_FRAME = 100
CONCURRENT = 500
CONCURRENT_SYMBOLS = 2_000
CONCURRENT_ROUNDS = 3   # of the concurrent scrapes, each contender (the best is kept, as in every benchmark)
HOT = "HOT"
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def symbols(n: int) -> list[str]:
    return [HOT] + [f"S{i:05d}" for i in range(n - 1)]


# --- the blaster ------------------------------------------------------------------------------------

def _events(names: list[str]) -> list[tuple[bytes, bytes]]:
    """Per symbol: a Polygon quote split around its millisecond timestamp."""
    out = []
    for i, sym in enumerate(names):
        bid = 10.0 + (i % 5000) * 0.01
        out.append((f'{{"ev":"Q","sym":"{sym}","bx":4,"bp":{bid:.2f},"bs":3,"ax":7,"ap":{bid + 0.02:.2f},'
                    f'"as":2,"c":0,"t":'.encode(), b',"q":1,"z":3}'))
    return out


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, names: list[str],
                 rounds: int | None) -> None:
    """One exporter's connection: log it in, then blast (``rounds`` times over every symbol, then
    stay open and quiet; None: until it hangs up)."""
    await accept(reader, writer)
    writer.write(text_frame(b'[{"ev":"status","status":"connected","message":"Connected Successfully"}]'))
    await writer.drain()
    await reader.read(65536)   # the login (any frame): accepted
    writer.write(text_frame(b'[{"ev":"status","status":"auth_success","message":"authenticated"}]'))

    async def discard() -> None:   # subscriptions, pings: read and dropped (nothing waits on them)
        try:
            while await reader.read(1 << 16):
                pass
        except (ConnectionError, asyncio.CancelledError):
            pass

    drain = asyncio.create_task(discard())
    events = _events(names)
    hot, others = events[0], events[1:]
    n, i = len(others), 0
    frames_left = None if rounds is None else rounds * (n // (EVENTS_PER_FRAME - 1) + 1)
    try:
        while frames_left is None or frames_left > 0:
            if frames_left is not None:
                frames_left -= 20
            stamp = str(int(time.time() * 1000)).encode()
            frames = []
            for _ in range(20):   # 20 frames per write
                parts = [hot[0], stamp, hot[1]]
                for _ in range(EVENTS_PER_FRAME - 1):
                    head, tail = others[i]
                    parts += (b",", head, stamp, tail)
                    i = i + 1 if i + 1 < n else 0
                frames.append(text_frame(b"[" + b"".join(parts) + b"]"))
            writer.write(b"".join(frames))
            await writer.drain()
        await drain
    except ConnectionError:
        pass
    finally:
        drain.cancel()
        writer.close()


def _blaster(port_out: Any, n: int, cpu: int | None, rounds: int | None = None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    names = symbols(n)

    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: _serve(r, w, names, rounds), "127.0.0.1", 0)
        port_out.send(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# --- the exporter -----------------------------------------------------------------------------------

def config_text(port: int, blaster_port: int, n: int) -> str:
    """The exporter's config: one Polygon feed of ``n`` symbols, limits raised to hold them."""
    return (f'listen: "127.0.0.1:{port}"\n'
            "http: {max_connections: 1024}\n"
            f"max_symbols: {max(n, 10_000)}\n"
            "feeds:\n  - name: bench\n    kind: polygon\n"
            f"    url: ws://127.0.0.1:{blaster_port}/stocks\n    api_key: bench\n"
            "    channels: [Q]\n    heartbeat_timeout: 1h\n    silence_timeout: 1h\n"
            f"    max_symbols: {max(n, 5_000)}\n"
            "    symbols:\n" + "".join(f"      - {s}\n" for s in symbols(n)))


class Exporter:
    """``feedwatch run`` on a generated config, pinned to ``cpu``; stopped with SIGTERM."""

    def __init__(self, blaster_port: int, n: int, cpu: int | None) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="feedwatch-scrape-load-")
        with socket_free() as port:
            self.port = port
        config = os.path.join(self.dir.name, "feedwatch.yml")
        with open(config, "w") as fh:
            fh.write(config_text(self.port, blaster_port, n))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter.cli", "run", "-c", config, "--log.level", "warn"],
            preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None)
        self.url = f"http://127.0.0.1:{self.port}"

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM (high-water mark) in bytes."""
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS", "VmHWM")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.dir.cleanup()


class socket_free:
    def __enter__(self) -> int:
        import socket
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


_SAMPLE = re.compile(r"^(\w+)(?:\{[^}]*\})? (\S+)$", re.M)


def _value(text: str, name: str) -> float:
    return sum(float(v) for n, v in _SAMPLE.findall(text) if n == name)


async def _metric(session: aiohttp.ClientSession, url: str, *names: str) -> dict[str, float]:
    query = "&".join(f"name[]={n}" for n in names)
    async with session.get(f"{url}/metrics?{query}") as response:
        text = await response.text()
    return {n: _value(text, n) for n in names}


async def _wait_ingesting(session: aiohttp.ClientSession, url: str, deadline: float) -> None:
    while True:
        try:
            if (await _metric(session, url, "feedwatch_feed_messages_total"))["feedwatch_feed_messages_total"] > 0:
                return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the exporter did not start ingesting within its deadline")
        await asyncio.sleep(0.2)


# --- the phases -------------------------------------------------------------------------------------

@dataclass
class Phase:
    scraping: bool
    rate: float = 0.0                  # messages/s ingested
    stall: float = 0.0                 # feedwatch_event_loop_lag_seconds at the end (60 s window)
    over_20ms: int = 0                 # loop iterations over 20 ms in this phase (the histogram)
    longest_le: str = ""               # the histogram bucket the phase's longest iteration fell in
    api_behind: float = 0.0            # worst staleness of the hot symbol the API reported
    scrapes: list[float] = field(default_factory=list)   # seconds per whole scrape
    scrape_bytes: int = 0             # the body, decompressed (the client asks for gzip)
    gen2: int = 0                      # full (generation 2) garbage collections in the exporter


async def _phase(session: aiohttp.ClientSession, url: str, scraping: bool) -> Phase:
    phase = Phase(scraping)
    done = asyncio.Event()

    async def poll_api() -> None:
        while not done.is_set():
            async with session.get(f"{url}/api/v1/symbols/bench/{HOT}") as response:
                view = await response.json()
            phase.api_behind = max(phase.api_behind, view["staleness_seconds"])
            await asyncio.sleep(0.02)

    async def scrape() -> None:
        while not done.is_set():
            started = time.perf_counter()
            async with session.get(f"{url}/metrics", headers={"Accept": OPENMETRICS,
                                                             "Accept-Encoding": "gzip"}) as response:
                body = await response.read()
            phase.scrapes.append(time.perf_counter() - started)
            phase.scrape_bytes = len(body)
            await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - started)))

    before = (await _metric(session, url, "feedwatch_feed_messages_total"))["feedwatch_feed_messages_total"]
    gen2_before = await _gen2(session, url)
    buckets_before = await _buckets(session, url)
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(poll_api())] + ([asyncio.create_task(scrape())] if scraping else [])
    await asyncio.sleep(PHASE)
    done.set()
    await asyncio.gather(*tasks)
    after = await _metric(session, url, "feedwatch_feed_messages_total", "feedwatch_event_loop_lag_seconds")
    phase.rate = (after["feedwatch_feed_messages_total"] - before) / (time.perf_counter() - t0)
    phase.stall = after["feedwatch_event_loop_lag_seconds"]
    phase.gen2 = int(await _gen2(session, url) - gen2_before)
    delta = {le: n - buckets_before.get(le, 0) for le, n in (await _buckets(session, url)).items()}
    total = delta["+Inf"]
    phase.over_20ms = int(total - delta["0.02"])   # loopwatch.ITERATION_BUCKETS has the target as a bound
    phase.longest_le = next(le for le, n in delta.items() if n == total)
    return phase


async def _gen2(session: aiohttp.ClientSession, url: str) -> float:
    """Full collections so far (prometheus_client's GC collector): each walks every tracked
    object, 100k symbols' state among them (~60 ms at 100k symbols, measured in-process)."""
    async with session.get(f"{url}/metrics?name[]=python_gc_collections_total") as response:
        text = await response.text()
    found = re.search(r'python_gc_collections_total\{generation="2"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


async def _buckets(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The loop iteration histogram's cumulative buckets, by ``le``, in order."""
    async with session.get(f"{url}/metrics?name[]=feedwatch_event_loop_iteration_seconds") as response:
        text = await response.text()
    return {le: float(v) for le, v in re.findall(r'_bucket\{le="([^"]+)"\} (\S+)', text)}


async def _scrape_on(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> float:
    """One scrape on an open connection: seconds from sending the request to the body's last byte."""
    started = time.perf_counter()
    await _fetch(reader, writer, request)
    return time.perf_counter() - started


async def _fetch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[bytes, bytes]:
    """One scrape on an open connection: the response's head and body."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:40]
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    return head, await reader.readexactly(length)


async def _lone_and_longest(host: str, port: int, request: bytes) -> tuple[float, float]:
    """The median of five lone scrapes, then the longest of ``CONCURRENT`` at once: the
    connections opened first, then a request sent on each (connection set-up is not a scrape's)."""
    lone = await asyncio.open_connection(host, port)
    alone = sorted([await _scrape_on(*lone, request) for _ in range(5)])[2]
    lone[1].close()
    connections = [await asyncio.open_connection(host, port) for _ in range(CONCURRENT)]
    try:
        times = await asyncio.gather(*(_scrape_on(r, w, request) for r, w in connections))
    finally:
        for _, writer in connections:
            writer.close()
    return alone, max(times)


def _floor_server(port_out: Any, head: bytes, body: bytes, cpu: int | None) -> None:
    """The HTTP floor: plain aiohttp answering ``GET /metrics`` with the exporter's own answer
    (its body, type and encoding) from memory. No render, no middleware: what ``CONCURRENT``
    scrapes cost the HTTP stack itself, on the exporter's core."""
    from aiohttp import web

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    headers = dict(re.findall(rb"(?im)^(content-type|content-encoding): *([^\r\n]+)", head))
    response_headers = {name.decode(): value.decode() for name, value in headers.items()}

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=response_headers)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_out.send(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


async def _concurrent(url: str, exporter: Exporter, cpu: int | None) -> dict[str, Any]:
    """``CONCURRENT`` scrapes at once, ``CONCURRENT_ROUNDS`` times, alternated with the same
    against the HTTP floor (``_floor_server``, serving the exporter's answer); the exporter's
    resident memory before and its high-water mark after."""
    host, port = url.removeprefix("http://").split(":")
    request = (f"GET /metrics HTTP/1.1\r\nHost: {host}\r\nAccept: {OPENMETRICS}\r\n"
               f"Accept-Encoding: gzip\r\n\r\n").encode()
    reader, writer = await asyncio.open_connection(host, int(port))
    head, body = await _fetch(reader, writer, request)
    writer.close()
    parent, child = multiprocessing.Pipe()
    floor = multiprocessing.get_context("spawn").Process(target=_floor_server, args=(child, head, body, cpu),
                                                         daemon=True)
    floor.start()
    try:
        floor_port = parent.recv()
        rss_before = exporter.memory()["VmRSS"]
        ours, theirs = [], []
        for _ in range(CONCURRENT_ROUNDS):
            ours.append(await _lone_and_longest(host, int(port), request))
            theirs.append(await _lone_and_longest(host, floor_port, request))
        peak = exporter.memory()["VmHWM"]
    finally:
        floor.terminate()
        floor.join(5)
    best, floor_best = min(ours, key=lambda r: r[1]), min(theirs, key=lambda r: r[1])
    return {"alone": best[0], "longest": best[1], "rounds": [r[1] for r in ours],
            "floor_alone": floor_best[0], "floor": floor_best[1], "floor_rounds": [r[1] for r in theirs],
            "body_bytes": len(body), "rss_before": rss_before, "growth": peak - rss_before}


@dataclass
class ScrapeLoadResult:
    phases: list[Phase]
    concurrent: dict[str, float]
    load: str

    @property
    def without(self) -> float:
        return sum(p.rate for p in self.phases if not p.scraping) / max(1, sum(not p.scraping for p in self.phases))

    @property
    def with_scrapes(self) -> float:
        return sum(p.rate for p in self.phases if p.scraping) / max(1, sum(p.scraping for p in self.phases))


def measure(n: int = SYMBOLS, phases: int = PHASES, progress: bool = True) -> ScrapeLoadResult:
    cpus = sorted(os.sched_getaffinity(0))
    pin = len(cpus) >= 2
    ctx = multiprocessing.get_context("spawn")
    results: list[Phase] = []
    load = f"load average {os.getloadavg()[0]:.1f} at the start"

    def run(n_symbols: int, body: Any, rounds: int | None = None) -> Any:
        parent, child = multiprocessing.Pipe()
        blaster = ctx.Process(target=_blaster, args=(child, n_symbols, cpus[1] if pin else None, rounds),
                              daemon=True)
        blaster.start()
        exporter = None
        previous = os.sched_getaffinity(0)
        try:
            port = parent.recv()
            exporter = Exporter(port, n_symbols, cpus[0] if pin else None)
            if pin:
                os.sched_setaffinity(0, {cpus[1]})
            return asyncio.run(body(exporter))
        finally:
            os.sched_setaffinity(0, previous)
            blaster.terminate()   # first: the exporter's sockets then close at once, not by timeout
            blaster.join(5)
            if exporter is not None:
                exporter.stop()

    async def big(exporter: Exporter) -> dict[str, float] | None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await _wait_ingesting(session, exporter.url, time.monotonic() + 120)
            await asyncio.sleep(2.0)   # past the start-up (subscriptions)
            for i in range(phases):
                scraping = i % 2 == 1
                if progress:
                    print(f"\r  scrape-load: phase {i + 1}/{phases} ({'with' if scraping else 'without'} scrapes)  ",
                          end="", file=sys.stderr, flush=True)
                results.append(await _phase(session, exporter.url, scraping))
        # The same exporter serves the concurrent scrapes when it has their size (the tests' toy run).
        return await _concurrent(exporter.url, exporter, cpus[0] if pin else None) if n == CONCURRENT_SYMBOLS else None

    async def small(exporter: Exporter) -> dict[str, float]:
        async with aiohttp.ClientSession() as session:
            await _wait_ingesting(session, exporter.url, time.monotonic() + 60)
        if progress:
            print(f"\r  scrape-load: {CONCURRENT} concurrent scrapes of {CONCURRENT_SYMBOLS:,} symbols   ",
                  end="", file=sys.stderr, flush=True)
        return await _concurrent(exporter.url, exporter, cpus[0] if pin else None)

    concurrent = run(n, big)
    if concurrent is None:
        # Every symbol priced a few times, then quiet: the scrapes alone are measured.
        concurrent = run(CONCURRENT_SYMBOLS, small, rounds=5)
    if progress:
        print("\r" + " " * 80 + "\r", end="", file=sys.stderr, flush=True)
    return ScrapeLoadResult(results, concurrent, load + f", {os.getloadavg()[0]:.1f} at the end")


def verdicts(r: ScrapeLoadResult) -> list[tuple[str, bool, str]]:
    scraping = [p for p in r.phases if p.scraping]
    stall = max((p.stall for p in scraping), default=0.0)
    over = sum(p.over_20ms for p in scraping)
    behind = max((p.api_behind for p in scraping), default=0.0)
    ratio = r.with_scrapes / r.without if r.without else 0.0
    c = r.concurrent
    # A render: what a lone scrape of the exporter takes beyond the same lone scrape of the floor.
    render = max(0.0, c["alone"] - c["floor_alone"])
    return [
        ("longest event-loop stall while scraping <= 20 ms", over == 0,
         f"{over} loop iterations over 20 ms in the scrape phases (feedwatch_event_loop_lag_seconds, "
         f"60 s window: up to {stall * 1e3:.1f} ms)"),
        ("ingest with scrapes >= 85 % of without", ratio >= 0.85, f"{ratio:.0%}"),
        ("API staleness of the hot symbol <= 50 ms", behind <= 0.050, f"{behind * 1e3:.1f} ms"),
        (f"{CONCURRENT} concurrent scrapes: RSS growth <= 50 MB", c["growth"] <= 50e6, f"{c['growth'] / 1e6:.1f} MB"),
        (f"{CONCURRENT} concurrent scrapes: none longer than two renders past the HTTP floor",
         c["longest"] <= c["floor"] + 2 * render,
         f"longest {c['longest'] * 1e3:.0f} ms <= floor {c['floor'] * 1e3:.0f} ms + 2 x {render * 1e3:.1f} ms"),
    ]


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v * 1e3:.0f}" for v in values)


def report(r: ScrapeLoadResult) -> str:
    c = r.concurrent
    rows = [(f"{i + 1}", "with" if p.scraping else "without", f"{p.rate:,.0f}", f"{p.stall * 1e3:.1f}",
             f"{p.over_20ms}", f"<= {float(p.longest_le) * 1e3:g}" if p.longest_le != "+Inf" else "> 10 s",
             f"{p.api_behind * 1e3:.1f}",
             f"{sorted(p.scrapes)[len(p.scrapes) // 2] * 1e3:.0f}" if p.scrapes else "-",
             f"{p.scrape_bytes / 1e6:.1f}" if p.scrapes else "-", f"{p.gen2}")
            for i, p in enumerate(r.phases)]
    lines = [f"Scrape load: {SYMBOLS:,} symbols, Polygon frames of {EVENTS_PER_FRAME} quotes as fast as the "
             f"exporter reads them, {PHASE:.0f} s phases; exporter on one core, blaster and client on the other "
             f"({r.load})",
             table(("phase", "scrapes", "msgs/s", "loop lag ms (60 s)", "iterations > 20 ms", "longest ms",
                    "API behind ms", "scrape ms (median)", "body MB", "gen-2 GCs"), rows),
             f"ingest with / without scrapes: {r.with_scrapes:,.0f} / {r.without:,.0f} msgs/s",
             f"{CONCURRENT} concurrent scrapes of {CONCURRENT_SYMBOLS:,} symbols ({c['body_bytes']:,} B gzipped), "
             f"{CONCURRENT_ROUNDS} rounds: RSS {c['rss_before'] / 1e6:.0f} MB before, +{c['growth'] / 1e6:.1f} MB at the "
             f"peak; longest scrape per round {_ms(c['rounds'])} ms (a lone scrape {c['alone'] * 1e3:.1f} ms)",
             f"  the HTTP floor, plain aiohttp answering the same body from memory: longest {_ms(c['floor_rounds'])} ms "
             f"(a lone scrape {c['floor_alone'] * 1e3:.1f} ms)"]
    lines += [f"  {name}: {shown} [{'ok' if good else 'fail'}]" for name, good, shown in verdicts(r)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(measure()))
