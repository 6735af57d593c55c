"""Test harness: a real simulator and a real Service on 127.0.0.1, with compressed timings.

    async with simulated_feed(clock, symbols=("AAPL", "MSFT")) as h:
        await h.wait(lambda: h.feed.connects == 1, "connected")
        h.sim.fault("stall", "AAPL")

Only quotes (``channels: [Q]``) by default: every event the simulator sends is then accepted by
the book one for one (no first-print guard), so tests can compare the simulator's sent counts
with the book's update counts exactly.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

from exporter.book import FeedBook
from exporter.config import load_data
from exporter.feeds.runner import FeedRunner
from exporter.service import Service
from exporter.simulator.server import Simulator
from tests.waiting import async_wait_for

API_KEY = "test-key"

# A feed's WebSocket clients (``transport:``, exporter/feeds/transport.py): the tests of what a
# transport carries (frames, pings, closes, reasons, TLS) run over each.
TRANSPORTS = ("aiohttp", "picows")

# Fast enough that a reconnect or a timeout happens in well under a second, slow enough that a
# busy 2-core machine does not trip a heartbeat deadline by accident.
FAST = {
    "ping_interval": "100ms",
    "heartbeat_timeout": "3s",
    "silence_timeout": "10m",
    "connect_timeout": "5s",
    "reconnect": {"initial_delay": "50ms", "max_delay": "300ms", "multiplier": 2.0, "reset_after": "1s"},
}


@dataclass
class Harness:
    sim: Simulator
    service: Service
    name: str

    @property
    def feed(self) -> FeedBook:
        return self.service.book.feeds[self.name]

    @property
    def runner(self) -> FeedRunner:
        return self.service.runners[self.name]

    def sent(self, symbol: str) -> int:
        return self.sim.stats.sent.get(symbol, 0)

    def updates(self, symbol: str) -> int:
        state = self.feed.symbols.get(symbol)
        return state.updates if state is not None else -1

    def acked(self, *symbols: str) -> bool:
        return all(self.feed.symbols[s].acknowledged for s in symbols)

    async def wait(self, condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
        return await async_wait_for(condition, timeout=timeout, what=what)

    async def flowing(self, *symbols: str) -> None:
        """Wait until each symbol has received at least two more updates than now."""
        before = {s: self.updates(s) for s in symbols}
        await self.wait(lambda: all(self.updates(s) >= before[s] + 2 for s in symbols),
                        f"updates flowing for {', '.join(symbols)}")

    async def settled(self, symbol: str) -> int:
        """After a stall of ``symbol``: wait until the book has every update the simulator sent."""
        await self.wait(lambda: self.updates(symbol) == self.sent(symbol),
                        f"book to catch up with the simulator for {symbol}")
        return self.sent(symbol)


def feed_config(url: str, name: str = "stocks", kind: str = "polygon", symbols=("AAPL", "MSFT"),
                **overrides: Any) -> dict[str, Any]:
    feed = {"name": name, "kind": kind, "url": url, "api_key": API_KEY, "symbols": list(symbols),
            "channels": ["Q"], **FAST}
    feed.update(overrides)
    return feed


@contextlib.asynccontextmanager
async def simulated_feed(clock: Any, symbols=("AAPL", "MSFT"), rate: float = 40.0,
                         sim_symbols=None, top: dict[str, Any] | None = None,
                         sim_faults=(), adapter_class: type | None = None, sim_ping_interval=None,
                         connection_listener: Callable[[Any], None] | None = None,
                         **overrides: Any) -> AsyncIterator[Harness]:
    """A simulator and a Service watching it. ``adapter_class`` replaces the registry's adapter
    (a subclass of a shipped adapter with different limits, e.g. a tiny capacity);
    ``connection_listener`` is told of every connection change from the very first connect."""
    sim = Simulator("polygon", sim_symbols if sim_symbols is not None else symbols, rate=rate,
                    api_key=API_KEY, faults=sim_faults, ping_interval=sim_ping_interval)
    await sim.start()
    config = load_data({**(top or {}), "feeds": [feed_config(sim.ws_url, symbols=symbols, **overrides)]})
    service = Service(config, clock, sweep_interval=0.05)
    if adapter_class is not None:
        name = config.feeds[0].name
        service.runners[name] = FeedRunner(config.feeds[0], service.book.feeds[name], clock, adapter_class)
    if connection_listener is not None:
        service.book.connection_listeners.append(connection_listener)
    try:
        await service.start()
        yield Harness(sim, service, config.feeds[0].name)
    finally:
        await service.stop()
        await sim.stop()
