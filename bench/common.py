"""Shared benchmark helpers: best-of-N timing, a progress line, table printing, test books."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Callable, Sequence

from exporter.book import Book
from exporter.config import FeedConfig, Thresholds


def best_of(fn: Callable[[], object], rounds: int, label: str = "", progress: bool = True) -> float:
    """Fastest of ``rounds`` calls of ``fn``, in seconds (the least disturbed run)."""
    best = float("inf")
    for i in range(rounds):
        if progress and label:
            print(f"\r  {label}: round {i + 1}/{rounds}   ", end="", file=sys.stderr, flush=True)
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    if progress and label:
        print("\r" + " " * (len(label) + 24) + "\r", end="", file=sys.stderr, flush=True)
    return best


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def symbols(n: int) -> tuple[str, ...]:
    """Ticker-like names: ``S00000`` ... (6-7 characters, like most real tickers)."""
    return tuple(f"S{i:05d}" for i in range(n))


def feed_config(name: str, syms: Sequence[str]) -> FeedConfig:
    return FeedConfig(name=name, kind="polygon", url="wss://bench.invalid", api_key="k", symbols=tuple(syms),
                      resolved_thresholds=Thresholds())


def priced_book(n: int, now: float) -> Book:
    """One feed with ``n`` symbols, each priced once with a venue timestamp, one connection up."""
    book = Book([feed_config("stocks", symbols(n))], now - 30)
    feed = book.feeds["stocks"]
    feed.connected("0", now - 30)
    for i, symbol in enumerate(feed.symbols):
        feed.record(symbol, 100.0 + i * 0.01, int((now - 1) * 1000) + i % 1000, now - (i % 400), quote=True)
    return book
