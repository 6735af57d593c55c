"""No venue or bot value can fail a scrape: the real app on 127.0.0.1, real adapters, real frames.

Before issue 9, one Polygon, Binance or Bybit frame carrying a ~320-digit timestamp for a quiet
symbol was stored, and every ``/metrics`` answered 500 (OverflowError while converting it) until
that symbol traded again, while ``/-/ready`` said 200. Now the book rejects it where it enters
(``implausible_timestamp``), and behind that check a guard in each collector skips a sample it
cannot render and counts it (``feedwatch_render_errors_total``), so even a value planted past the
checks costs one sample, not the scrape; the JSON API and the status snapshot show it as null.
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.book import Book
from exporter.config import load_data
from exporter.feeds.binance import BinanceAdapter
from exporter.feeds.bybit import BybitAdapter
from exporter.feeds.polygon import PolygonAdapter
from exporter.trading.api import TRACKER
from exporter.web.app import create_app, serve

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
VENUES = {
    "polygon": (PolygonAdapter, {"kind": "polygon", "url": "wss://socket.polygon.io/stocks", "api_key": "k",
                                 "symbols": ["AAPL", "MSFT"]}, "MSFT"),
    "binance": (BinanceAdapter, {"kind": "binance", "url": "wss://stream.binance.com:9443",
                                 "symbols": ["BNBBTC"]}, "BNBBTC"),
    "bybit": (BybitAdapter, {"kind": "bybit", "url": "wss://stream.bybit.com/v5/public/linear", "category": "linear",
                             "channels": ["tickers"], "symbols": ["BTCUSDT"]}, "BTCUSDT"),
}
# The frames carry the same ~320-digit timestamp (tests/fixtures/<venue>/fuzz/).
HUGE_FRAMES = {"polygon": "huge_timestamp.json", "binance": "huge_trade_time.json", "bybit": "huge_ticker_ts.json"}


def values(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


@pytest.mark.parametrize("venue", VENUES)
async def test_a_huge_venue_timestamp_for_a_quiet_symbol_fails_no_scrape(venue, clock):
    adapter_class, feed, symbol = VENUES[venue]
    config = load_data({"listen": "127.0.0.1:0", "feeds": [{"name": venue, **feed}]}, environ={})
    book = Book(config.feeds, clock.time())
    book.feeds[venue].symbols[symbol].guard = False
    adapter = adapter_class(config.feeds[0], book.feeds[venue], "0")
    adapter.handle((FIXTURES / venue / "fuzz" / HUGE_FRAMES[venue]).read_bytes(), clock.time())
    runner, port = await serve(create_app(book, config, clock), "127.0.0.1:0")
    try:
        async with aiohttp.ClientSession() as session:
            statuses = []
            for _ in range(30):  # the symbol stays quiet: every scrape must still work
                status, text = await get(session, f"http://127.0.0.1:{port}/metrics")
                statuses.append(status)
            assert statuses == [200] * 30
            metrics = values(text)
            assert metrics[("feedwatch_feed_rejected_updates_total",
                            frozenset({"feed": venue, "reason": "implausible_timestamp"}.items()))] == 1
            assert metrics[("feedwatch_feed_latency_seconds_count", frozenset({"feed": venue}.items()))] == 0
            assert metrics[("feedwatch_symbol_updates_total", frozenset({"feed": venue, "symbol": symbol}.items()))] == 0
            assert metrics[("feedwatch_render_errors_total", frozenset({"collector": "book"}.items()))] == 0
            status, body = await get(session, f"http://127.0.0.1:{port}/api/v1/symbols/{venue}/{symbol}")
            assert status == 200 and '"last_event":null' in body
    finally:
        await runner.cleanup()


async def test_a_value_past_the_checks_costs_its_sample_not_the_scrape(clock, caplog):
    """Values planted straight into the state (as a bug past the edge checks would leave them)."""
    config = load_data({"listen": "127.0.0.1:0", "feeds": [
        {"name": "stocks", "kind": "polygon", "url": "wss://socket.polygon.io/stocks", "symbols": ["AAPL", "MSFT"]}],
        "trading": {"accounts": [{"name": "main"}]}}, environ={})
    book = Book(config.feeds, clock.time())
    feed = book.feeds["stocks"]
    feed.record("MSFT", 370.0, 1_700_000_000_000, clock.time(), quote=True)
    aapl = feed.symbols["AAPL"]
    aapl.last_update, aapl.updates = clock.time(), 1
    aapl.last_event = 10 ** 320    # OverflowError when converted to seconds
    aapl.price = 10 ** 400         # an int no float can hold: its digits would break the scrape
    app = create_app(book, config, clock)
    app[TRACKER].accounts["main"].position_limit = 10 ** 400
    runner, port = await serve(app, "127.0.0.1:0")
    base = f"http://127.0.0.1:{port}"
    try:
        with caplog.at_level(logging.ERROR, logger="feedwatch.collector"):
            async with aiohttp.ClientSession() as session:
                for _ in range(2):
                    status, text = await get(session, base + "/metrics")
                    assert status == 200
                for path in ("/api/v1/status", "/api/v1/symbols/stocks/AAPL", "/api/v1/snapshot"):
                    status, body = await get(session, base + path)
                    assert status == 200, (path, body)
                    if path == "/api/v1/symbols/stocks/AAPL":
                        assert '"last_event":null' in body
    finally:
        await runner.cleanup()
    metrics = values(text)
    aapl_labels = frozenset({"feed": "stocks", "symbol": "AAPL"}.items())
    # The two bad samples are gone; the symbol's staleness and state, which alerts read, are not.
    assert ("feedwatch_symbol_last_event_timestamp_seconds", aapl_labels) not in metrics
    assert ("feedwatch_symbol_price", aapl_labels) not in metrics
    assert ("feedwatch_symbol_staleness_seconds", aapl_labels) in metrics
    assert ("feedwatch_symbol_state", aapl_labels) in metrics
    assert metrics[("feedwatch_symbol_price", frozenset({"feed": "stocks", "symbol": "MSFT"}.items()))] == 370.0
    assert ("feedwatch_trading_positions_limit", frozenset({"account": "main"}.items())) not in metrics
    # Counted per scrape (2 scrapes), logged once per collector (rate-limited).
    assert metrics[("feedwatch_render_errors_total", frozenset({"collector": "book"}.items()))] == 4
    assert metrics[("feedwatch_render_errors_total", frozenset({"collector": "trading"}.items()))] == 2
    logged = [r.getMessage() for r in caplog.records if r.name == "feedwatch.collector"]
    assert len(logged) == 2, logged
    assert any("feedwatch_symbol_last_event_timestamp_seconds" in m and 'symbol="AAPL"' in m for m in logged)
    assert any("collector trading" in m and "feedwatch_trading_positions_limit" in m for m in logged)
