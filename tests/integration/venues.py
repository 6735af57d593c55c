"""Test harness for the venue dialects: a strict simulator and a real Service on 127.0.0.1.

    async with venue_feed(clock, "binance", {"name": "b", "kind": "binance", "url": "{ws}", ...},
                          options={"ping_interval": 0.5}) as h:
        await h.wait(lambda: h.feed.is_up(), "connected")

``{ws}`` in the feed's url becomes the simulator's address; ``options`` are the dialect's
settings (``sim.options``: compressed heartbeat periods, limits). Timings default to compressed
values so reconnects and deadlines happen in a second or two.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, AsyncIterator

import aiohttp

from exporter.config import load_data
from exporter.feeds.runner import FeedRunner
from exporter.service import Service
from exporter.simulator.server import Simulator
from tests.integration.feedharness import Harness

FAST = {
    "heartbeat_timeout": "3s",
    "silence_timeout": "10m",
    "connect_timeout": "5s",
    "reconnect": {"initial_delay": "50ms", "max_delay": "300ms", "multiplier": 2.0, "reset_after": "1s"},
}


@contextlib.asynccontextmanager
async def venue_feed(clock: Any, venue: str, feed: dict[str, Any], rate: float = 10.0,
                     options: dict[str, float] | None = None, sim_symbols=(),
                     adapter_class: type | None = None) -> AsyncIterator[Harness]:
    sim = Simulator(venue, sim_symbols, rate=rate, seed=1)
    sim.options = dict(options or {})  # type: ignore[attr-defined]
    await sim.start()
    feed = {**FAST, **feed, "url": feed["url"].replace("{ws}", sim.ws_url)}
    config = load_data({"feeds": [feed]})
    service = Service(config, clock, sweep_interval=0.05)
    name = config.feeds[0].name
    if adapter_class is not None:  # a shipped adapter with one rule broken on purpose
        service.runners[name] = FeedRunner(config.feeds[0], service.book.feeds[name], clock, adapter_class)
    try:
        await service.start()
        yield Harness(sim, service, name)
    finally:
        await service.stop()
        await sim.stop()


@contextlib.asynccontextmanager
async def raw_client(url: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A bare WebSocket client that follows no venue rule unless the test makes it: no pongs."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, autoping=False, heartbeat=None) as ws:
            yield ws


async def closed_with(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10.0) -> int | None:
    """Read until the venue closes the socket; its close code (None if it never did)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                msg = await ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    return ws.close_code
    except TimeoutError:
        return None


async def next_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> Any:
    """The next text frame, decoded (pings and pongs skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                return json.loads(msg.data)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                raise AssertionError(f"socket closed while waiting for a reply ({ws.close_code})")
