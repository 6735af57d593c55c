"""Capacity: what one replica carries, in CPU time and bytes, and how many replicas a load needs.

Every figure is CPU time (``time.process_time``: this process, all its threads) or bytes, never
wall time, so that a machine busy with other work disturbs it little. (It still does somewhat:
caches and clock speed are shared; each figure is the best of a few rounds.)

Measured:

- ``socket``: single-event Binance frames through the real ``FeedRunner`` over loopback (the
  transport benchmark's blaster, in its own process, writes them), with the frame recorder on as
  by default (its ring saturated, its trim task running): CPU per frame, socket to book.
- ``single``: the same frames through ``BinanceAdapter.handle`` in-process: CPU per frame,
  adapter and book only. ``socket`` minus ``single`` is what the socket, aiohttp and the runner
  cost per frame, paid once per frame however many messages it holds.
- ``batched``: Polygon frames of 100 messages (the ingest benchmark's frames) through
  ``PolygonAdapter.handle``: CPU per message. A Polygon message over a socket costs
  ``batched + (socket - single) / 100``.
- ``render``: one scrape's ``BookCollector.render`` at 10k priced symbols and its gzip at the
  server's level: CPU per symbol; text bytes and series per symbol.
- ``process``: a real ``feedwatch run`` with one and with ``process_symbols`` configured symbols
  (its venue unreachable, so no prices): resident memory after start and after one scrape;
  per symbol from the difference. ``priced``: what a symbol's price, times and counters add
  once it updates (tracemalloc of a priced book minus an unpriced one). Not measured but
  configured: the frame recorder's ring, at most ``recorder.max_bytes`` (64 MiB) per feed, which
  a busy feed fills; the model adds it per feed.

The model (``plan``): a replica is one process on one core (Python: one event loop). Its CPU is
``rate x per-message CPU + scrapers x symbols x render CPU per symbol / scrape interval``, kept
under ``utilisation`` of the core (headroom for bursts at the open, reconnect storms and GC).
Symbols and messages spread evenly over the shards (rendezvous hashing balances symbols; a
venue's hot symbols make the message share uneven, hence the headroom); each shard runs
``redundancy`` replicas. The loads of ``LOADS`` are assumptions to be replaced by a desk's own
(``rate(feedwatch_feed_messages_total[1m])`` at its busiest minute, and its symbol count).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import math
import multiprocessing
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from bench import ingest, transport
from bench.common import feed_config, priced_book, symbols, table
from bench.memory import book_bytes
from exporter.book import Book
from exporter.clock import SystemClock
from exporter.collector import BookCollector
from exporter.feeds.binance import BinanceAdapter
from exporter.feeds.recorder import Recorder, RecorderConfig
from exporter.feeds.runner import FeedRunner
from exporter.web.app import GZIP_LEVEL

NOW = 1_700_000_000.0


@dataclass(frozen=True)
class Load:
    """A load to plan for: symbols watched and messages per second at its busiest."""
    name: str
    symbols: int
    rate: float
    frame: int           # messages per frame the venue sends (Polygon batches, Binance does not)
    basis: str           # where the numbers come from
    feeds: int = 1       # feeds per replica (each records up to recorder.max_bytes of frames)


# Assumptions, not measurements: orders of magnitude to show the arithmetic. Replace them with a
# desk's own figures (`python -m bench.capacity --symbols N --rate R --frame F`).
LOADS = (
    Load("US equities, trades + quotes, at the open", 12_000, 1_000_000, 100,
         "assumed: every listed US stock and ETF (~12k) on Polygon's T.* and Q.*; ~1M messages/s "
         "in the first minutes"),
    Load("Binance spot, every symbol, trade + bookTicker", 2_000, 50_000, 1,
         "assumed: ~2k spot symbols (4k streams: 4 connections of 1,024); ~50k messages/s in a "
         "busy minute"),
    Load("One venue's top 500 symbols (a typical desk)", 500, 20_000, 1,
         "assumed: 500 symbols, ~20k messages/s"),
)


@dataclass
class CapacityResult:
    socket_frame: float         # CPU seconds per single-event frame, socket to book
    single_frame: float         # CPU seconds per single-event frame, adapter + book
    batched_message: float      # CPU seconds per message in frames of 100, adapter + book
    render_symbol: float        # CPU seconds per symbol per scrape (render)
    gzip_symbol: float          # CPU seconds per symbol per scrape (gzip at the server's level)
    text_symbol: float          # bytes of /metrics text per symbol
    gzip_text_symbol: float     # the same, gzipped
    series_symbol: float        # series per symbol in /metrics
    render_symbols: int
    rss_base: int               # bytes resident: a replica with one symbol, after start
    rss_base_scraped: int       # the same after one scrape
    rss_symbol: float           # bytes resident per configured symbol, after start
    rss_symbol_scraped: float   # the same after one scrape
    priced_symbol: float        # bytes a symbol's state adds once priced (tracemalloc)
    process_symbols: int

    @property
    def frame_overhead(self) -> float:
        """Socket, aiohttp and runner CPU per frame (however many messages it holds)."""
        return max(0.0, self.socket_frame - self.single_frame)

    def message_cpu(self, per_frame: int) -> float:
        """CPU per message arriving in frames of ``per_frame`` messages, socket to book."""
        if per_frame <= 1:
            return self.socket_frame
        return self.batched_message + self.frame_overhead / per_frame

    @property
    def scrape_symbol(self) -> float:
        return self.render_symbol + self.gzip_symbol

    def memory(self, n: int, feeds: int = 1) -> float:
        """Resident bytes of a replica watching ``n`` priced symbols on ``feeds`` busy recorded
        feeds (each ring full at the default recorder.max_bytes), after scrapes."""
        return (self.rss_base_scraped + n * (self.rss_symbol_scraped + self.priced_symbol)
                + feeds * RecorderConfig().max_bytes)


@dataclass
class Plan:
    load: Load
    cpu: float            # cores the whole load needs (ingest + scrapes)
    shards: int
    replicas: int
    symbols_per_shard: int
    rate_per_shard: float
    cpu_per_replica: float
    memory_per_replica: float
    scrape_cpu: float     # seconds of one scrape of one replica
    scrape_bytes: float   # gzipped body of one scrape


def plan(result: CapacityResult, load: Load, *, utilisation: float = 0.5, scrapers: int = 2,
         scrape_interval: float = 5.0, redundancy: int = 2) -> Plan:
    per_message = result.message_cpu(load.frame)

    def cpu(symbols_: float, rate: float) -> float:
        return rate * per_message + scrapers * symbols_ * result.scrape_symbol / scrape_interval

    shards = max(1, math.ceil(cpu(load.symbols, load.rate) / utilisation))
    n, rate = math.ceil(load.symbols / shards), load.rate / shards
    return Plan(load, cpu(load.symbols, load.rate), shards, shards * redundancy, n, rate, cpu(n, rate),
                result.memory(n, load.feeds), n * result.scrape_symbol, n * result.gzip_text_symbol)


# --- measurements ---------------------------------------------------------------------------------

def _cpu_best(fn: Callable[[], object], rounds: int) -> float:
    best = math.inf
    for _ in range(rounds):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def _single_frames(count: int) -> list[bytes]:
    """The transport benchmark's frames, without their WebSocket headers."""
    frames = []
    for chunk in transport._frames(count, transport._symbols()):
        view = memoryview(chunk)
        while view:
            length = view[1] & 0x7F
            start = 2
            if length == 126:
                length, start = int.from_bytes(view[2:4], "big"), 4
            frames.append(bytes(view[start:start + length]))
            view = view[start + length:]
    return frames


def measure_single(messages: int, rounds: int) -> float:
    """CPU per frame; every round on new frames (the trade ids go on), as a live feed would send."""
    frames = _single_frames(messages * (rounds + 1))
    config, feed = transport._book("ws://127.0.0.1:1")
    handle = BinanceAdapter(config, feed, "0").handle
    batches = [frames[i * messages:(i + 1) * messages] for i in range(rounds + 1)]

    def run(batch: list[bytes]) -> None:
        now = time.time()
        for frame in batch:
            handle(frame, now)
    run(batches[0])  # warm up: first prints confirmed, as in steady state
    return min(_cpu_best(lambda b=batch: run(b), 1) for batch in batches[1:]) / messages


async def _runner_cpu(url: str, count: int) -> float:
    config, feed = transport._book(url)
    clock = SystemClock()
    runner = FeedRunner(config, feed, clock)
    # Recording as `feedwatch run` does by default; a small ring, so it is full (each append
    # drops the oldest frame) from early on, as on a busy feed.
    recorder = Recorder(RecorderConfig(max_frames=10_000), [config], clock)
    runner.recording = recorder.ring(config.name)
    trimmer = asyncio.create_task(recorder.run())
    start = time.process_time()
    await runner.start()
    try:
        while transport._received(feed) < count:
            await asyncio.sleep(0.01)  # a slow poll: its own CPU stays out of the figure
        return (time.process_time() - start) / transport._received(feed)
    finally:
        trimmer.cancel()
        await runner.stop()


def measure_socket(messages: int, rounds: int) -> float:
    parent, child = multiprocessing.Pipe()
    blaster = multiprocessing.get_context("spawn").Process(target=transport._blaster, args=(child, messages, None),
                                                           daemon=True)
    blaster.start()
    try:
        url = f"ws://127.0.0.1:{parent.recv()[transport.TRADE]}"
        return min(asyncio.run(_runner_cpu(url, messages)) for _ in range(rounds))
    finally:
        blaster.terminate()
        blaster.join(5)


def measure_batched(rounds: int, n_frames: int = 1_000) -> float:
    frames = ingest.make_frames(10_000, n_frames, 100)
    run, _ = ingest.feedwatch_loop(frames, 10_000)
    return _cpu_best(run, rounds) / (n_frames * 100)


def measure_render(n: int, rounds: int) -> tuple[float, float, float, float, float]:
    """(render CPU, gzip CPU, text bytes, gzipped bytes, series) per symbol."""
    collector = BookCollector(priced_book(n, NOW))
    text = collector.render(NOW).encode()
    render_cpu = _cpu_best(lambda: collector.render(NOW), rounds)
    gzip_cpu = _cpu_best(lambda: gzip.compress(text, GZIP_LEVEL), rounds)
    series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#") and b'symbol="' in line)
    return render_cpu / n, gzip_cpu / n, len(text) / n, len(gzip.compress(text, GZIP_LEVEL)) / n, series / n


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout: float) -> bytes | None:
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:   # 503 while the feed is down: the server answers
        return exc.read()
    except (urllib.error.URLError, OSError):
        return None


def process_config(port: int, n: int) -> dict[str, object]:
    """A replica's config with ``n`` symbols, the symbol limits raised to hold them."""
    # Port 9 refuses: the replica keeps reconnecting, no price arrives.
    return {"listen": f"127.0.0.1:{port}", "max_symbols": max(n, 10_000),
            "feeds": [{"name": "stocks", "kind": "polygon", "url": "ws://127.0.0.1:9/stocks", "api_key": "k",
                       "max_symbols": max(n, 5_000), "symbols": list(symbols(n))}]}


def process_rss(n: int, timeout: float = 120) -> tuple[int, int]:
    """Resident bytes of a real ``feedwatch run`` with ``n`` configured symbols: after start, after a scrape."""
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
        port = _free_port()
        path = Path(tmp) / "feedwatch.yml"
        path.write_text(yaml.safe_dump(process_config(port, n)))
        popen = subprocess.Popen([sys.executable, "-m", "exporter.cli", "run", "-c", str(path)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while _get(f"http://127.0.0.1:{port}/-/healthy", 2) is None:
                if popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"feedwatch run with {n:,} symbols did not answer (exit {popen.poll()})")
                time.sleep(0.2)
            started = _rss(popen.pid)
            if not _get(f"http://127.0.0.1:{port}/metrics", timeout):
                raise RuntimeError("no /metrics")
            return started, _rss(popen.pid)
        finally:
            popen.terminate()
            popen.wait(30)


def _traced(build: Callable[[], object]) -> int:
    """Bytes allocated by ``build`` and still alive once it returned (its result kept)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()  # noqa: F841 (alive while measured)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def measure_priced(n: int) -> float:
    """Bytes per symbol a priced state holds beyond an unpriced one."""
    config = feed_config("stocks", symbols(n))
    return (book_bytes(n) - _traced(lambda: Book([config], NOW))) / n


def measure(*, messages: int = 200_000, render_symbols: int = 10_000, process_symbols: int = 100_000,
            rounds: int = 3, progress: bool = True) -> CapacityResult:
    def step(text: str) -> None:
        if progress:
            print(f"\r  capacity: {text:<50}", end="", file=sys.stderr, flush=True)

    step("socket to book (single-event frames)")
    socket_frame = measure_socket(messages, rounds)
    step("adapter + book (single-event frames)")
    single = measure_single(max(1_000, messages // 4), rounds)
    step("adapter + book (frames of 100)")
    batched = measure_batched(rounds, max(10, messages // 200))
    step("render")
    render_cpu, gzip_cpu, text, gz, series = measure_render(render_symbols, rounds)
    step("process memory (1 symbol)")
    base, base_scraped = process_rss(1)
    step(f"process memory ({process_symbols:,} symbols)")
    big, big_scraped = process_rss(process_symbols)
    step("priced state")
    priced = measure_priced(min(process_symbols, 100_000))
    if progress:
        print("\r" + " " * 70 + "\r", end="", file=sys.stderr, flush=True)
    return CapacityResult(socket_frame, single, batched, render_cpu, gzip_cpu, text, gz, series, render_symbols,
                          base, base_scraped, (big - base) / (process_symbols - 1),
                          (big_scraped - base_scraped) / (process_symbols - 1), priced, process_symbols)


# --- report ---------------------------------------------------------------------------------------

def report(result: CapacityResult, loads: tuple[Load, ...] = LOADS, **model: float) -> str:
    r = result
    us = 1e6
    per_core_single = 1 / r.socket_frame
    per_core_batched = 1 / r.message_cpu(100)
    rows = [
        ("single-event frames (Binance, Bybit), socket to book", f"{r.socket_frame * us:.2f} us/msg",
         f"{per_core_single:,.0f} msgs/s"),
        ("  of which adapter + book", f"{r.single_frame * us:.2f} us/msg", ""),
        ("  of which socket, aiohttp, runner (per frame)", f"{r.frame_overhead * us:.2f} us/frame", ""),
        ("frames of 100 (Polygon), adapter + book", f"{r.batched_message * us:.2f} us/msg", ""),
        ("frames of 100 (Polygon), socket to book", f"{r.message_cpu(100) * us:.2f} us/msg",
         f"{per_core_batched:,.0f} msgs/s"),
        (f"one scrape: render ({r.render_symbols:,} symbols)", f"{r.render_symbol * us:.2f} us/symbol", ""),
        (f"one scrape: gzip level {GZIP_LEVEL}", f"{r.gzip_symbol * us:.2f} us/symbol", ""),
        ("one scrape: body", f"{r.text_symbol:.0f} B/symbol ({r.gzip_text_symbol:.0f} gzipped)",
         f"{r.series_symbol:.0f} series/symbol"),
        ("process, 1 symbol: resident after start / after a scrape",
         f"{r.rss_base / 2**20:.1f} / {r.rss_base_scraped / 2**20:.1f} MiB", ""),
        (f"process, per configured symbol ({r.process_symbols:,}): after start / after a scrape",
         f"{r.rss_symbol:.0f} / {r.rss_symbol_scraped:.0f} B/symbol", ""),
        ("a priced symbol's state adds (tracemalloc)", f"{r.priced_symbol:.0f} B/symbol", ""),
        ("the frame recorder's ring of a busy feed (recorder.max_bytes, configured)",
         f"{RecorderConfig().max_bytes / 2**20:.0f} MiB/feed", ""),
    ]
    options = {"utilisation": 0.5, "scrapers": 2, "scrape_interval": 5.0, "redundancy": 2, **model}
    plans = [plan(r, load, **options) for load in loads]
    plan_rows = [(p.load.name, f"{p.load.symbols:,}", f"{p.load.rate:,.0f}", f"{p.cpu:.2f}", str(p.shards),
                  str(p.replicas), f"{p.symbols_per_shard:,}", f"{p.rate_per_shard:,.0f}", f"{p.cpu_per_replica:.2f}",
                  f"{p.memory_per_replica / 2**20:.0f} MiB", f"{p.scrape_cpu * 1e3:.0f} ms",
                  f"{p.scrape_bytes / 1e6:.2f} MB") for p in plans]
    return "\n".join([
        "Capacity: CPU time and bytes (process_time, best of N; /proc VmRSS of real `feedwatch run`)",
        table(("what", "cost", "one core"), rows),
        "",
        f"Replicas (one core each, kept under {options['utilisation']:.0%} busy; {options['scrapers']:.0f} "
        f"Prometheus scraping every {options['scrape_interval']:.0f}s; {options['redundancy']:.0f} replicas per shard)",
        table(("load", "symbols", "msgs/s", "cores", "shards", "replicas", "symbols/shard", "msgs/s/shard",
               "core/replica", "memory/replica", "scrape CPU", "scrape body"), plan_rows),
        *(f"  {load.name}: {load.basis}" for load in loads),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, help="plan for this many symbols (with --rate)")
    parser.add_argument("--rate", type=float, help="messages per second at the busiest minute")
    parser.add_argument("--frame", type=int, default=1, help="messages per frame (Polygon: ~100; default 1)")
    parser.add_argument("--utilisation", type=float, default=0.5, help="share of a core a replica may use")
    parser.add_argument("--redundancy", type=int, default=2, help="replicas per shard")
    args = parser.parse_args(argv)
    loads = LOADS
    if args.symbols or args.rate:
        if not (args.symbols and args.rate):
            parser.error("--symbols and --rate go together")
        loads = (Load("yours", args.symbols, args.rate, args.frame, "given on the command line"),)
    print(report(measure(), loads, utilisation=args.utilisation, redundancy=args.redundancy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
