"""The REST fallback over real sockets: a real simulator (WebSocket and its HTTP server with the
venue's REST snapshot), the real Service, the real HTTP app and API.

The socket goes down -> REST keeps prices moving, with source "rest" in the API and the metrics
-> the socket comes back -> source "ws" again; a 429 fault is counted and backed off as its
Retry-After asks; Binance's batched book ticker does the same for a crypto feed.
"""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

import aiohttp

from exporter.config import load_data
from exporter.service import Service
from exporter.simulator.control import ControlServer
from exporter.simulator.server import Simulator
from exporter.web.app import create_app, serve
from tests.integration.feedharness import API_KEY, FAST, Harness
from tests.waiting import async_wait_for


@contextlib.asynccontextmanager
async def fallback_feed(clock: Any, venue: str = "polygon", symbols=("AAPL", "MSFT"),
                        rest: dict | None = None, **feed: Any) -> AsyncIterator[tuple[Harness, ControlServer, str]]:
    sim = Simulator(venue, symbols, rate=20.0, api_key=API_KEY if venue == "polygon" else None)
    control = ControlServer(sim)
    await sim.start()
    await control.start()
    spec = {"name": "stocks", "kind": venue, "url": sim.ws_url, "api_key": API_KEY, "symbols": list(symbols),
            **FAST, "thresholds": {"degraded": "2s", "stale": "4s", "critical": "1h"},
            "rest": {"enabled": True, "url": control.url, "interval": "100ms", "max_requests_per_second": 50,
                     **(rest or {})}, **feed}
    if venue == "polygon":
        spec["channels"] = ["Q"]
    config = load_data({"feeds": [spec]}, {})
    service = Service(config, clock, sweep_interval=0.05)
    app = create_app(service.book, config, clock, service=service)
    runner, port = await serve(app, "127.0.0.1:0")
    try:
        await service.start()
        yield Harness(sim, service, "stocks"), control, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await service.stop()
        await control.stop()
        await sim.stop()


def ticking(clock: Any) -> bool:
    """Move the fake clock a little (called from a wait condition): time passes, as it does."""
    clock.advance(0.05)
    return True


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            return await response.json()


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/metrics") as response:
            return await response.text()


async def test_socket_down_rest_keeps_prices_moving_then_the_socket_takes_over_again(clock):
    async with fallback_feed(clock) as (h, control, url):
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscribed")
        # Until the socket first connects the fallback covers every symbol (a feed that never
        # connected included); once both deliver over the socket, it has nothing to poll.
        await h.flowing("AAPL", "MSFT")
        await h.wait(lambda: not h.feed.rest_active, "REST fallback idle on a healthy socket")
        view = await get_json(url + "/api/v1/symbols/stocks/AAPL")
        assert view["source"] == "ws" and view["rest_timestamp"] is None

        # The venue's socket falls over (every connection cut at once) while its REST API stays up.
        h.sim.fault("accept_and_drop")
        h.sim.fault("drop")
        await h.wait(lambda: not h.feed.is_up(), "the feed is down")
        aapl = h.feed.symbols["AAPL"]
        # A REST price is dated by the venue, capped at the book's clock, and applied only when newer
        # than what the book has: the fake clock must move for each one to count.
        await h.wait(lambda: ticking(clock) and aapl.from_rest and h.feed.symbols["MSFT"].from_rest,
                     "both priced from REST")
        first = aapl.updates
        await h.wait(lambda: ticking(clock) and aapl.updates >= first + 3, "REST keeps the price moving")
        # What a bot's gate sees, field by field as docs/configuration.md documents it.
        view = await get_json(url + "/api/v1/symbols/stocks/AAPL")
        assert view["source"] == "rest" and view["rest_timestamp"] == view["last_update"]
        assert view["price"] == aapl.price > 0 and view["update_count"] == aapl.updates
        assert (view["state"], view["fresh"], view["required_source"]) == ("healthy", True, None)
        assert view["staleness_seconds"] == clock.time() - view["last_update"]
        assert view["last_event"] == aapl.event_time > 0           # the venue's time of the REST price
        assert view["acknowledged"] is False                   # the socket's subscription is gone
        strict = await get_json(url + "/api/v1/symbols/stocks/AAPL?source=ws")
        assert strict["fresh"] is False and strict["required_source"] == "ws" and strict["state"] == "healthy"
        assert (view["reason"], strict["reason"], view["frozen"]) == (None, "source", False)
        status = next(f for f in (await get_json(url + "/api/v1/status"))["feeds"] if f["name"] == "stocks")
        assert status["up"] is False and status["is_healthy"] is False  # REST never makes the socket look alive
        text = await scrape(url)
        assert 'feedwatch_symbol_source{feed="stocks",symbol="AAPL",source="rest"} 1\n' in text
        assert 'feedwatch_symbol_source{feed="stocks",symbol="AAPL",source="ws"} 0\n' in text
        assert 'feedwatch_feed_rest_symbols{feed="stocks"} 2\n' in text
        assert 'feedwatch_feed_rest_active{feed="stocks"} 1\n' in text
        assert 'feedwatch_feed_rest_requests_total{feed="stocks",result="rate_limited"} 0\n' in text
        assert h.feed.rest_requests["ok"] >= 3 and h.feed.last_update < clock.time()

        # The socket comes back: the stream takes over and the poller goes quiet.
        h.sim.fault("resume")
        await h.wait(lambda: h.feed.is_up() and not aapl.from_rest and not h.feed.symbols["MSFT"].from_rest,
                     "socket prices again")
        await h.wait(lambda: not h.feed.rest_active, "REST fallback idle")
        view = await get_json(url + "/api/v1/symbols/stocks/AAPL?source=ws")
        assert view["source"] == "ws" and view["fresh"] is True
        settled = h.sim.state()["rest_requests"]
        await h.flowing("AAPL", "MSFT")
        assert h.sim.state()["rest_requests"] == settled         # no polling while the socket delivers


async def test_a_stale_symbol_on_a_live_socket_is_polled(clock):
    async with fallback_feed(clock) as (h, control, url):
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscribed")
        await h.flowing("AAPL", "MSFT")
        h.sim.fault("stall", "MSFT")                            # the socket stays up; MSFT goes quiet
        clock.advance(5)                                        # past stale (4s)
        msft = h.feed.symbols["MSFT"]
        await h.wait(lambda: ticking(clock) and msft.from_rest, "MSFT priced from REST")
        assert not h.feed.symbols["AAPL"].from_rest and h.feed.is_up()


async def test_a_rate_limit_is_counted_and_backed_off_as_retry_after_asks(clock):
    async with fallback_feed(clock) as (h, control, url):
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscribed")
        # Both priced by the socket and the fallback idle (it may have polled before the socket
        # first connected): from here on, every REST answer is the rate limit's.
        await h.flowing("AAPL", "MSFT")
        await h.wait(lambda: not h.feed.rest_active, "REST fallback idle on a healthy socket")
        ok_before = h.feed.rest_requests["ok"]
        h.sim.fault("rest_rate_limit")
        h.sim.fault("accept_and_drop")
        h.sim.fault("drop")
        await h.wait(lambda: h.feed.rest_requests["rate_limited"] >= 3, "three rate-limited answers", timeout=15)
        log = [(t, status) for t, status in h.sim.stats.rest_log if status == 429]
        gaps = [b[0] - a[0] for a, b in zip(log, log[1:])]
        # Retry-After: 1 -> no request within a second of a 429 (at 50 per second without it).
        assert min(gaps) >= 0.95, gaps
        assert h.feed.rest_requests["ok"] == ok_before and not h.feed.symbols["AAPL"].from_rest
        text = await scrape(url)
        assert 'feedwatch_feed_rest_requests_total{feed="stocks",result="rate_limited"}' in text

        h.sim.faults.rest_rate_limit = False                    # the limit lifts: prices flow again
        await h.wait(lambda: ticking(clock) and h.feed.symbols["AAPL"].from_rest, "REST prices after the pause",
                     timeout=15)


async def test_binance_book_tickers_are_batched(clock):
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    async with fallback_feed(clock, "binance", symbols, streams=["bookTicker"]) as (h, control, url):
        await h.wait(lambda: h.acked(*symbols), "subscribed")
        h.sim.fault("accept_and_drop")
        h.sim.fault("drop")
        await h.wait(lambda: ticking(clock) and all(h.feed.symbols[s].from_rest for s in symbols),
                     "all three from REST")
        # One request covers all three (weight 4), not three (weight 2 each).
        assert h.sim.stats.rest_requests <= h.feed.rest_requests["ok"] + h.feed.rest_requests["http_error"]
        assert h.feed.rest_updates >= 3 and h.sim.stats.rest_requests < h.feed.rest_updates


async def test_server_errors_back_off(clock):
    async with fallback_feed(clock) as (h, control, url):
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscribed")
        h.sim.fault("rest_error")
        h.sim.fault("accept_and_drop")
        h.sim.fault("drop")
        await h.wait(lambda: h.feed.rest_requests["http_error"] >= 3, "three failures", timeout=15)
        log = [t for t, status in h.sim.stats.rest_log if status == 500]
        gaps = [b - a for a, b in zip(log, log[1:])]
        assert gaps[1] >= 1.9, gaps                              # 1 s, then 2 s: doubling, not 50 per second
