"""Render: ``/metrics`` text for 1k, 10k and 100k symbols, against prometheus_client children.

- ``feedwatch``: ``BookCollector.render(now)``, the whole feed exposition (6 series per symbol
  plus ~60 per feed), staleness and state classified at render time.
- ``client children``: the same six per-symbol families as prometheus_client labelled children
  in a registry; timed = what a scrape must do with them: set the two values that change with
  time (staleness, state) on every symbol, then ``generate_latest``. Prices, timestamps and
  counters are set beforehand, untimed (the most favourable case for the library).
- gzip: the cost of compressing the feedwatch text, reported apart, at the level the server uses
  (1) and at zlib's default (6).

Target: 10k symbols <= 50 ms uncompressed and >= 10x faster than client children.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from bench.common import best_of, priced_book, table
from exporter.book import Book
from exporter.collector import BookCollector
from exporter.web.app import GZIP_LEVEL

NOW = 1_700_000_000.0


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


def measure(sizes: tuple[int, ...] = (1_000, 10_000, 100_000), children_up_to: int = 10_000,
            rounds: int = 7, progress: bool = True) -> list[RenderResult]:
    results = []
    for n in sizes:
        book = priced_book(n, NOW)
        collector = BookCollector(book)
        text = collector.render(NOW).encode()
        r = max(3, rounds // (1 + n // 50_000))
        fw = best_of(lambda: collector.render(NOW), r, f"render feedwatch {n:,}", progress)
        children = None
        if n <= children_up_to:
            scrape = children_scrape(book, NOW)
            children = best_of(scrape, max(3, r // 2), f"render client children {n:,}", progress)
        fast = best_of(lambda: gzip.compress(text, GZIP_LEVEL), r, f"gzip level {GZIP_LEVEL} {n:,}", progress)
        default = best_of(lambda: gzip.compress(text, 6), max(3, r // 2), f"gzip level 6 {n:,}", progress)
        results.append(RenderResult(n, fw, children, len(text), fast, len(gzip.compress(text, GZIP_LEVEL)),
                                    default, len(gzip.compress(text, 6))))
    return results


def report(results: list[RenderResult]) -> str:
    rows = []
    for r in results:
        rows.append((f"{r.symbols:,}", f"{r.feedwatch * 1e3:.1f}",
                     f"{r.children * 1e3:.0f}" if r.children else "-",
                     f"{r.speedup:.1f}x" if r.speedup else "-",
                     f"{r.size / 1e6:.2f}", f"{r.size / r.symbols:.0f}",
                     f"{r.gzip_fast * 1e3:.1f} ({r.gzip_fast_size / 1e6:.2f} MB)",
                     f"{r.gzip_default * 1e3:.1f} ({r.gzip_default_size / 1e6:.2f} MB)"))
    ten = next((r for r in results if r.symbols == 10_000), None)
    verdict = ""
    if ten is not None:
        verdict = (f"\n  targets at 10k: <= 50 ms [{'ok' if ten.feedwatch <= 0.05 else 'MISSED'}], "
                   f">= 10x client children [{'ok' if ten.speedup and ten.speedup >= 10 else 'MISSED'}]")
    return ("Render /metrics (feed families), best of N\n"
            + table(("symbols", "feedwatch ms", "children ms", "speedup", "MB", "B/symbol",
                     f"gzip-{GZIP_LEVEL} ms", "gzip-6 ms"), rows) + verdict)


if __name__ == "__main__":
    print(report(measure()))
