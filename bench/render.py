"""Render: ``/metrics`` text for 1k, 10k and 100k symbols, against prometheus_client children.

Times are CPU seconds of this process (``time.process_time``, best of N): on a shared machine
they move less than wall time. Timed is what ``/metrics`` does before compressing: the
collector's steps, then the uncompressed body in blocks (``exporter.web.app.body_blocks``).
The collector keeps text per chunk of symbols between scrapes (``exporter/collector.py``), so
what a scrape costs depends on what changed since the last one:

- ``first render``: a fresh collector (nothing to reuse: every format string built), the whole
  feed exposition (8 series per symbol plus ~60 per feed), staleness and state classified at
  render time;
- ``all updated``: every symbol updated (its own new price, venue and receive timestamps,
  spread over the last second) since the last scrape of a kept collector: the steady state of
  a busy feed (``bench scrape-load``);
- ``unchanged``: nothing updated since the last scrape (only staleness and state computed);
- ``1 % updated``: 1 % of the symbols, chosen at random, updated between two scrapes (untimed);
- ``no staleness``: ``unchanged`` with ``name[]`` asking for every family but the staleness
  gauge: what the one family formatted afresh at every scrape costs (it can be derived in
  PromQL from ``feedwatch_symbol_last_update_timestamp_seconds``).
- ``client children``: the same six per-symbol families as prometheus_client labelled children
  in a registry; timed = what a scrape must do with them: set the two values that change with
  time (staleness, state) on every symbol, then ``generate_latest``. Prices, timestamps and
  counters are set beforehand, untimed (the most favourable case for the library).
- gzip: the cost of compressing the feedwatch text, reported apart: as the server does (its
  library, ISA-L's deflate when installed, at its level 1) and with zlib at its default (6).

Targets: 10k symbols <= 50 ms uncompressed and >= 10x faster than client children; 100k symbols
<= 100 ms CPU (issue 14), printed for each case.
"""

from __future__ import annotations

import gzip
import random
import sys
import time
from dataclasses import dataclass
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from bench.common import best_of, priced_book, table
from exporter.book import Book
from exporter.collector import FEED_FAMILIES, MARKET_FAMILIES, SYMBOL_FAMILIES, BookCollector
from exporter.exposition import Exposition
from exporter.slices import run_all
from exporter.web.app import GZIP_LEVEL, body_blocks, deflate_lib

NOW = 1_700_000_000.0
NO_STALENESS = Exposition(names=frozenset(
    name for name in {**SYMBOL_FAMILIES, **FEED_FAMILIES, **MARKET_FAMILIES}
    if name != "feedwatch_symbol_staleness_seconds"))
TARGET_100K = 0.100


@dataclass
class RenderResult:
    symbols: int
    feedwatch: float          # seconds per render
    children: float | None    # seconds per scrape with client children (None = not measured)
    size: int                 # bytes of feedwatch text
    gzip_fast: float          # seconds to gzip at GZIP_LEVEL
    gzip_fast_size: int
    gzip_default: float
    gzip_default_size: int
    unchanged: float = 0.0
    one_percent: float = 0.0
    no_staleness: float = 0.0
    all_updated: float = 0.0

    @property
    def speedup(self) -> float | None:
        return self.children / self.feedwatch if self.children else None


def children_scrape(book: Book, now: float):
    """The same per-symbol series as prometheus_client children; returns the timed scrape."""
    registry = CollectorRegistry()
    labels = ["feed", "symbol"]
    updated = Gauge("feedwatch_symbol_last_update_timestamp_seconds", "h", labels, registry=registry)
    event = Gauge("feedwatch_symbol_last_event_timestamp_seconds", "h", labels, registry=registry)
    staleness = Gauge("feedwatch_symbol_staleness_seconds", "h", labels, registry=registry)
    state = Gauge("feedwatch_symbol_state", "h", labels, registry=registry)
    updates = Counter("feedwatch_symbol_updates", "h", labels, registry=registry)
    price = Gauge("feedwatch_symbol_price", "h", labels, registry=registry)
    for feed in book.feeds.values():
        for s in feed.symbols.values():
            updated.labels(feed.name, s.symbol).set(s.last_update)
            event.labels(feed.name, s.symbol).set(s.event_time)
            updates.labels(feed.name, s.symbol).inc(s.updates)
            price.labels(feed.name, s.symbol).set(s.price)

    def scrape() -> bytes:
        for feed in book.feeds.values():
            for s in feed.symbols.values():
                staleness.labels(feed.name, s.symbol).set(feed.staleness(s, now))
                state.labels(feed.name, s.symbol).set(feed.classify(s, now))
        return generate_latest(registry)
    return scrape


def served(collector: BookCollector, ask: Exposition = Exposition()) -> tuple[bytes, ...]:
    """What a scrape costs the server before gzip: the render, then the plain body's blocks."""
    return body_blocks(run_all(collector.steps(NOW, ask)), False)


def cpu_best(fn: Callable[[], object], rounds: int, before: Callable[[], object] = lambda: None) -> float:
    """Least CPU time of ``rounds`` calls of ``fn`` (``before`` runs untimed ahead of each)."""
    best = float("inf")
    for _ in range(rounds):
        before()
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def measure(sizes: tuple[int, ...] = (1_000, 10_000, 100_000), children_up_to: int = 10_000,
            rounds: int = 7, progress: bool = True) -> list[RenderResult]:
    results = []
    for n in sizes:
        book = priced_book(n, NOW)
        collector = BookCollector(book)
        text = collector.render(NOW).encode()
        r = max(3, rounds // (1 + n // 50_000))
        if progress:
            print(f"\r  render {n:,} symbols ...   ", end="", file=sys.stderr, flush=True)
        fw = cpu_best(lambda: served(BookCollector(book)), r)
        unchanged = cpu_best(lambda: served(collector), r)
        feed = book.feeds["stocks"]
        names = list(feed.symbols)
        rng = random.Random(14)

        def update_one_percent() -> None:
            for symbol in rng.sample(names, max(1, n // 100)):
                feed.record(symbol, 101.0, int(NOW * 1000), NOW, quote=True)

        one_percent = cpu_best(lambda: served(collector), r, update_one_percent)
        generation = [0]

        def update_all() -> None:
            """Every symbol at its own price, venue time and receive time (spread over the last
            second, as single-event frames leave them: the costliest values to format; each
            round's receive times differ from the last round's, as every real update's do)."""
            generation[0] += 1
            for i, symbol in enumerate(names):
                received = NOW - 1.0 + i / n - generation[0] % 2 * 0.0005
                feed.record(symbol, 100.0 + i * 0.01 + generation[0] * 0.0001,
                            int(received * 1000) - 3 - generation[0] % 2, received, quote=True)

        all_updated = cpu_best(lambda: served(collector), r, update_all)
        collector.render(NOW)
        no_staleness = cpu_best(lambda: served(collector, NO_STALENESS), r)
        children = None
        if n <= children_up_to:
            scrape = children_scrape(book, NOW)
            children = cpu_best(scrape, max(3, r // 2))
        fast = best_of(lambda: body_blocks([text], True), r, f"gzip level {GZIP_LEVEL} {n:,}", progress)
        default = best_of(lambda: gzip.compress(text, 6), max(3, r // 2), f"gzip level 6 {n:,}", progress)
        results.append(RenderResult(n, fw, children, len(text), fast, len(b"".join(body_blocks([text], True))),
                                    default, len(gzip.compress(text, 6)), unchanged, one_percent, no_staleness,
                                    all_updated))
    return results


def report(results: list[RenderResult]) -> str:
    rows = []
    for r in results:
        rows.append((f"{r.symbols:,}", f"{r.feedwatch * 1e3:.1f}", f"{r.all_updated * 1e3:.1f}",
                     f"{r.one_percent * 1e3:.1f}",
                     f"{r.unchanged * 1e3:.1f}", f"{r.no_staleness * 1e3:.1f}",
                     f"{r.children * 1e3:.0f}" if r.children else "-",
                     f"{r.speedup:.1f}x" if r.speedup else "-",
                     f"{r.size / 1e6:.2f}", f"{r.size / r.symbols:.0f}",
                     f"{r.gzip_fast * 1e3:.1f} ({r.gzip_fast_size / 1e6:.2f} MB)",
                     f"{r.gzip_default * 1e3:.1f} ({r.gzip_default_size / 1e6:.2f} MB)"))
    lines = ["Render /metrics (feed families), CPU ms, best of N",
             table(("symbols", "first render", "all updated", "1 % updated", "unchanged", "no staleness", "children",
                    "speedup", "MB", "B/symbol", f"gzip-{GZIP_LEVEL} ms ({deflate_lib.__name__.split('.')[-1]})",
                    "gzip-6 ms (zlib)"), rows)]
    ten = next((r for r in results if r.symbols == 10_000), None)
    if ten is not None:
        lines.append(f"  targets at 10k: <= 50 ms uncompressed, first render "
                     f"[{'ok' if ten.feedwatch <= 0.05 else 'fail'}], "
                     f">= 10x client children [{'ok' if ten.speedup and ten.speedup >= 10 else 'fail'}]")
    big = next((r for r in results if r.symbols == 100_000), None)
    if big is not None:
        cases = (("all updated", big.all_updated), ("1 % updated", big.one_percent), ("unchanged", big.unchanged),
                 ("unchanged, no staleness family", big.no_staleness))
        lines.append("  target at 100k: <= 100 ms CPU: " + ", ".join(
            f"{name} {value * 1e3:.0f} ms [{'ok' if value <= TARGET_100K else 'fail'}]" for name, value in cases))
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(measure()))
