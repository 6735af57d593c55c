"""Memory per symbol at 100k symbols: tracemalloc of the Book and its FeedBook states.

Measured: everything allocated while building a ``Book`` over 100k configured symbols and
updating each symbol once through ``FeedBook.apply`` (so every state holds a price, a receive
time and a venue timestamp, as in steady state), still alive afterwards. The symbol strings
themselves belong to the configuration and are allocated before the measurement starts.

For comparison, the same symbols as prometheus_client labelled children of the six per-symbol
families (measured the same way, on 10k symbols to keep the run short).

Also the same book with adaptive thresholds on and learned for every symbol (a third update,
and a sweep after each, so every symbol has a gap behind it): what a learned interval costs on
top. Its mark (``since``) shares the frame's time object here, as symbols updated by one frame do;
a symbol whose last update came after the learner's mark keeps one more float (24 bytes).

And what the ``/metrics`` render keeps between scrapes for the same 100k symbols
(``BookCollector``'s per-chunk format strings, last values and text: the price of rendering only
what changed, issue 14), measured after one render: a cache, not state, so it is printed beside
the target rather than in it; the process's whole resident memory per symbol is
``bench capacity``'s.

Targets: <= 350 bytes per symbol (issue 14: with the state every detector adds), adaptive
thresholds <= 64 bytes more per symbol (issue 10).
"""

from __future__ import annotations

import dataclasses
import gc
import tracemalloc
from dataclasses import dataclass

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge

from bench.common import feed_config, priced_book, symbols, table
from exporter.book import Book
from exporter.collector import BookCollector
from exporter.config import AdaptiveThresholds
from exporter.feeds.polygon import _frame_decoder

NOW = 1_700_000_000.0


@dataclass
class MemoryResult:
    symbols: int
    book_bytes: int
    children_symbols: int
    children_bytes: int
    adaptive_bytes: int = 0
    render_cache_bytes: int = 0

    @property
    def per_symbol(self) -> float:
        return self.book_bytes / self.symbols

    @property
    def adaptive_per_symbol(self) -> float:
        return self.adaptive_bytes / self.symbols

    @property
    def render_cache_per_symbol(self) -> float:
        return self.render_cache_bytes / self.symbols

    @property
    def children_per_symbol(self) -> float:
        return self.children_bytes / self.children_symbols


def _traced(build) -> tuple[int, object]:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before, kept


def book_bytes(n: int, adaptive: bool = False) -> int:
    config = feed_config("stocks", symbols(n))
    if adaptive:  # every symbol learns its interval (warmed up after one gap)
        th = dataclasses.replace(config.resolved_thresholds, adaptive=AdaptiveThresholds(enabled=True, warmup=1))
        config = dataclasses.replace(config, resolved_thresholds=th)
    frame = msgspec.json.encode([
        {"ev": "Q", "sym": s, "bp": 99.99 + i % 100, "ap": 100.01 + i % 100, "t": 1_700_000_000_000 + i} if i % 2 else
        {"ev": "T", "sym": s, "p": 100.0 + i % 100, "t": 1_700_000_000_000 + i} for i, s in enumerate(config.symbols)])

    def build() -> Book:
        book = Book([config], NOW)
        feed = book.feeds["stocks"]
        # Decoded inside the measurement and dropped after, as the adapter does: what a state
        # keeps alive (its price float, its venue timestamp int) is counted, the frame is not.
        feed.apply(_frame_decoder.decode(frame), NOW + 0.5)  # quotes price at once; trades are held
        book.sweep(NOW + 0.5)
        feed.apply(_frame_decoder.decode(frame), NOW + 1.0)  # by the first-print guard, confirmed here
        book.sweep(NOW + 1.0)
        if adaptive:  # the trades' first accepted update was at +1.0: one more gap for them
            feed.apply(_frame_decoder.decode(frame), NOW + 1.5)
            book.sweep(NOW + 1.5)
        return book

    size, book = _traced(build)
    states = book.feeds["stocks"].symbols.values()
    assert all(s.updates for s in states)
    assert all(s.learn.__class__ is float for s in states) if adaptive else all(s.learn is None for s in states)
    return size


def render_cache_bytes(n: int) -> int:
    """What a ``BookCollector`` keeps alive after rendering a priced book of ``n`` symbols once."""
    book = priced_book(n, NOW)
    collector = BookCollector(book)

    def build() -> BookCollector:
        collector.render(NOW + 1.0)   # its text is dropped at once; the caches stay
        return collector

    return _traced(build)[0]


def children_bytes(n: int) -> int:
    syms = symbols(n)

    def build() -> CollectorRegistry:
        registry = CollectorRegistry()
        labels = ["feed", "symbol"]
        gauges = [Gauge(f"bench_g{i}", "h", labels, registry=registry) for i in range(5)]
        counter = Counter("bench_updates", "h", labels, registry=registry)
        for s in syms:
            for g in gauges:
                g.labels("stocks", s).set(1.5)
            counter.labels("stocks", s).inc()
        return registry

    return _traced(build)[0]


def measure(n: int = 100_000, children_n: int = 10_000, progress: bool = True) -> MemoryResult:
    return MemoryResult(n, book_bytes(n), children_n, children_bytes(children_n), book_bytes(n, adaptive=True),
                        render_cache_bytes(n))


def report(result: MemoryResult) -> str:
    extra = result.adaptive_per_symbol - result.per_symbol
    rows = [
        (f"feedwatch Book ({result.symbols:,} symbols)", f"{result.book_bytes / 1e6:.1f}", f"{result.per_symbol:.0f}"),
        ("  with adaptive thresholds learned", f"{result.adaptive_bytes / 1e6:.1f}",
         f"{result.adaptive_per_symbol:.0f} (+{extra:.0f})"),
        ("  render cache after a scrape (not state)", f"{result.render_cache_bytes / 1e6:.1f}",
         f"{result.render_cache_per_symbol:.0f}"),
        (f"client children, 6 families ({result.children_symbols:,})", f"{result.children_bytes / 1e6:.1f}",
         f"{result.children_per_symbol:.0f}"),
    ]
    return ("Memory per symbol (tracemalloc, live after build + one update per symbol)\n"
            + table(("structure", "MB", "bytes/symbol"), rows)
            + f"\n  target: <= 350 bytes/symbol [{'ok' if result.per_symbol <= 350 else 'MISSED'}]"
            + f"\n  target: adaptive thresholds <= 64 bytes/symbol more [{'ok' if extra <= 64 else 'MISSED'}]")


if __name__ == "__main__":
    print(report(measure()))
