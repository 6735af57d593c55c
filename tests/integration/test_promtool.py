"""``promtool check metrics`` on the exporter's real output: no lint problem is allowed, in the text
format and in OpenMetrics.

The book is fed by the real Polygon adapter with the recorded frames in tests/fixtures/polygon/
(trades, quotes, statuses, bad prices, an unknown event, a truncated frame); the app serves on
127.0.0.1 and /metrics is fetched over HTTP, plain and gzipped, exactly as Prometheus would.
"""

from __future__ import annotations

import gzip
import re
import subprocess
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from exporter.book import Book
from exporter.clock import FakeClock
from exporter.config import load_data
from exporter.feeds.base import Acknowledged, Problem
from exporter.feeds.polygon import PolygonAdapter
from exporter.web.app import create_app, serve

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "polygon"
GOLDEN = ROOT / "tests" / "golden" / "metrics.txt"


OPENMETRICS = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"


def promtool_check(text: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60)


def assert_promtool_clean_on_openmetrics(body: bytes) -> None:
    """promtool lints with the text-format parser. On OpenMetrics it reads ``# UNIT`` and ``# EOF``
    as comments, but a counter's metadata there names the family without ``_total``
    (``# TYPE x counter``, samples ``x_total``), so it sees each counter's samples as a family of
    their own without HELP. Those findings, exactly one per declared counter, are the format's and
    are allowed; anything else (a parse error, such as a ``\\"`` in HELP that the text parser
    refuses, or any lint rule) fails."""
    assert body.endswith(b"# EOF\n")
    counters = re.findall(rb"^# TYPE (\S+) counter$", body, re.MULTILINE)
    assert counters
    result = promtool_check(body)
    findings = sorted((result.stdout + result.stderr).decode().splitlines())
    assert findings == sorted(f"{name.decode()}_total no help text" for name in counters), "\n".join(findings)


def polygon_book(clock: FakeClock) -> tuple:
    config = load_data({"feeds": [
        {"name": "stocks", "kind": "polygon", "url": "wss://socket.polygon.io/stocks", "api_key": "k",
         "market": "us-equities", "symbols": ["AAPL", "MSFT", "BRK.A"]},
        {"name": "extended", "kind": "polygon", "url": "wss://socket.polygon.io/stocks", "api_key": "k",
         "symbols": ["AAPL", "MSFT"]},
    ]}, environ={})
    book = Book(config.feeds, clock.time())
    signals = []
    for name in ("stocks", "extended"):
        feed = book.feeds[name]
        adapter = PolygonAdapter(config.feeds[0] if name == "stocks" else config.feeds[1], feed, "0")
        feed.connected("0", clock.time())
        for path in sorted(FIXTURES.iterdir()):
            if path.suffix not in (".json", ".txt"):
                continue
            data = path.read_bytes()
            feed.frame_received(len(data), clock.time())
            for signal in adapter.handle(data, clock.time()):
                signals.append(signal)
                if isinstance(signal, Acknowledged):
                    feed.acknowledge(signal.symbols, clock.time())
                elif isinstance(signal, Problem):
                    feed.error(signal.kind, signal.message)
            clock.advance(0.25)
    return config, book, signals


async def test_live_metrics_pass_promtool(clock: FakeClock) -> None:
    config, book, signals = polygon_book(clock)
    # The fixtures really went through the adapter: prices, rejects, errors and acks all landed.
    feed = book.feeds["extended"]
    assert feed.symbols["MSFT"].updates > 0 and feed.rejected["unknown_symbol"] > 0
    assert feed.errors["decode"] == 1 and any(isinstance(s, Acknowledged) for s in signals)
    runner, port = await serve(create_app(book, config, clock, CollectorRegistry()), "127.0.0.1:0")
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics",
                                   headers={"Accept-Encoding": "identity"}) as resp:
                plain = await resp.read()
            async with session.get(f"http://127.0.0.1:{port}/metrics",
                                   headers={"Accept-Encoding": "gzip"}) as resp:
                assert resp.headers["Content-Encoding"] == "gzip"
                unzipped = gzip.decompress(await resp.read())
            async with session.get(f"http://127.0.0.1:{port}/metrics",
                                   headers={"Accept": OPENMETRICS, "Accept-Encoding": "identity"}) as resp:
                assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
                openmetrics = await resp.read()
    finally:
        await runner.cleanup()
    assert b'feedwatch_symbol_price{feed="extended",symbol="MSFT"}' in plain
    assert b"feedwatch_build_info" in plain and b"process_cpu_seconds_total" in plain
    for body in (plain, unzipped):
        result = promtool_check(body)
        assert result.returncode == 0 and not result.stdout and not result.stderr, \
            (result.stdout + result.stderr).decode()
    assert_promtool_clean_on_openmetrics(openmetrics)


def test_golden_file_passes_promtool() -> None:
    result = promtool_check(GOLDEN.read_bytes())
    assert result.returncode == 0 and not result.stdout and not result.stderr, (result.stdout + result.stderr).decode()


def test_promtool_would_catch_a_lint_problem() -> None:
    """The check has teeth: a counter without ``_total`` is reported."""
    bad = b"# HELP feedwatch_bad A counter named wrongly.\n# TYPE feedwatch_bad counter\nfeedwatch_bad 1\n"
    result = promtool_check(bad)
    assert result.returncode != 0 and b"_total" in result.stdout + result.stderr


async def test_metrics_with_trading_configured_pass_promtool(clock: FakeClock) -> None:
    """With ``trading:`` set, create_app mounts the trading routes and renderer; the whole output lints clean."""
    config = load_data({"feeds": [{"name": "stocks", "kind": "polygon", "url": "wss://socket.polygon.io/stocks",
                                   "symbols": ["AAPL"]}],
                        "trading": {"accounts": [{"name": "main"}]}}, environ={})
    runner, port = await serve(create_app(Book(config.feeds, clock.time()), config, clock, CollectorRegistry()),
                               "127.0.0.1:0")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                body = await resp.read()
            async with session.get(f"http://127.0.0.1:{port}/metrics", headers={"Accept": OPENMETRICS}) as resp:
                openmetrics = await resp.read()
    finally:
        await runner.cleanup()
    assert b"feedwatch_trading_" in body and b"feedwatch_feed_up" in body
    result = promtool_check(body)
    assert result.returncode == 0 and not result.stdout and not result.stderr, (result.stdout + result.stderr).decode()
    assert b"# TYPE feedwatch_trading_" in openmetrics
    assert_promtool_clean_on_openmetrics(openmetrics)
