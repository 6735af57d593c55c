"""Symbols at run time over a real socket: add/remove without reconnecting, sharding by
capacity, make-before-break rollover at the connection age limit, control-message pacing, and
the trigger-file watchlist.

Venue limits are exercised with subclasses of the shipped Polygon adapter that change only the
limit under test (a capacity of 2, a 1-second age limit, one message per symbol); everything
else, including the socket and the simulator, is the real thing.
"""

from __future__ import annotations

import asyncio
import os
from typing import Sequence

import pytest

from exporter.feeds.base import Close
from exporter.feeds.polygon import PolygonAdapter
from tests.integration.feedharness import TRANSPORTS, simulated_feed


class TwoPerConnection(PolygonAdapter):
    def capacity(self) -> int:
        return 2


class OneSecondConnections(PolygonAdapter):
    def max_connection_age(self) -> float:
        return 1.0


class AnnouncesMaintenance(PolygonAdapter):
    """Reads the simulator's garbage frame as a maintenance notice (like Binance's serverShutdown)."""

    def handle(self, data: str | bytes, now: float):
        if b"this is not a frame" in (data if isinstance(data, bytes) else data.encode()):
            return (Close("server_shutdown", "maintenance announced"),)
        return super().handle(data, now)


class PacedOnePerSymbol(PolygonAdapter):
    control_rate = 20.0  # at most 20 control messages per second

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        one_each = super().subscribe_messages
        return [message for symbol in symbols for message in one_each([symbol])]


def subscribed_at_venue(h) -> set[str]:
    return set(h.sim.state()["subscriptions"])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_add_and_remove_symbols_without_reconnecting(clock, transport):
    async with simulated_feed(clock, transport=transport, sim_symbols=("AAPL", "MSFT", "NVDA")) as h:
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscriptions acknowledged")

        assert await h.runner.add_symbols(["NVDA", "AAPL"]) == ["NVDA"]   # AAPL already watched
        await h.wait(lambda: "NVDA" in h.feed.symbols and h.acked("NVDA"), "NVDA acknowledged")
        await h.flowing("NVDA", "AAPL")
        assert subscribed_at_venue(h) == {"AAPL", "MSFT", "NVDA"}

        assert await h.runner.remove_symbols(["MSFT"]) == ["MSFT"]
        assert "MSFT" not in h.feed.symbols                    # no longer rendered
        await h.wait(lambda: subscribed_at_venue(h) == {"AAPL", "NVDA"}, "MSFT unsubscribed at the venue")
        await h.flowing("AAPL", "NVDA")

        assert h.feed.connects == 1 and h.sim.stats.connections_total == 1
        assert sum(h.feed.disconnects.values()) == 0


async def test_symbols_are_sharded_by_capacity_and_new_shards_open_when_full(clock):
    symbols = ("AAPL", "MSFT", "NVDA")
    async with simulated_feed(clock, symbols=symbols, sim_symbols=(), adapter_class=TwoPerConnection) as h:
        await h.wait(lambda: h.acked(*symbols), "all acknowledged")
        assert sorted(h.runner.shards) == ["0", "1"]
        assert h.feed.connection("0").symbols == ("AAPL", "MSFT")
        assert h.feed.connection("1").symbols == ("NVDA",)
        assert h.sim.stats.connections_open == 2

        await h.runner.add_symbols(["TSLA"])                   # fits in shard 1
        await h.wait(lambda: h.acked("TSLA"), "TSLA acknowledged")
        assert h.sim.stats.connections_total == 2
        await h.runner.add_symbols(["AMZN"])                   # everything full: shard 2
        await h.wait(lambda: h.acked("AMZN") and h.feed.connection("2").up, "AMZN on a new connection")
        assert h.feed.connects == 3 and h.sim.stats.connections_open == 3
        await h.flowing("AMZN", "AAPL", "TSLA")

        await h.runner.remove_symbols(["AMZN"])                # shard 2 empty: retired
        await h.wait(lambda: h.sim.stats.connections_open == 2, "empty shard closed")
        assert "2" not in h.feed.connections
        assert h.feed.disconnects["resharding"] == 1
        assert sorted(h.runner.shards) == ["0", "1"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_rollover_is_make_before_break(clock, transport):
    async with simulated_feed(clock, transport=transport, adapter_class=OneSecondConnections) as h:
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscriptions acknowledged")
        gaps: list[str] = []

        async def watch() -> None:
            # Sample continuously: at no point may the feed look down or a symbol unsubscribed.
            while True:
                if not h.feed.connection("0").up:
                    gaps.append("connection down")
                if not h.acked("AAPL", "MSFT"):
                    gaps.append("subscription unacknowledged")
                await asyncio.sleep(0.001)

        watcher = asyncio.create_task(watch())
        try:
            await h.wait(lambda: h.feed.disconnects["rollover"] >= 2, "two rollovers")
            await h.flowing("AAPL", "MSFT")
        finally:
            watcher.cancel()
        assert gaps == []
        rollovers = h.feed.disconnects["rollover"]
        assert h.feed.connects == 1 + rollovers
        assert sum(h.feed.disconnects.values()) == rollovers   # nothing but planned switches
        assert h.feed.reconnect_attempts == 0                  # no backoff path taken
        await h.wait(lambda: h.sim.stats.connections_open == 1, "old connections closed")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_announced_server_shutdown_is_a_planned_make_before_break_switch(clock, transport):
    async with simulated_feed(clock, transport=transport, adapter_class=AnnouncesMaintenance) as h:
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscriptions acknowledged")
        gaps: list[str] = []

        async def watch() -> None:
            while True:
                if not h.feed.connection("0").up or not h.acked("AAPL", "MSFT"):
                    gaps.append(f"gap at connects={h.feed.connects}")
                await asyncio.sleep(0.001)

        watcher = asyncio.create_task(watch())
        try:
            h.sim.fault("garbage")      # the venue announces maintenance on every tick
            await h.wait(lambda: h.feed.disconnects["server_shutdown"] >= 1, "planned switch")
            h.sim.fault("resume")
            await h.flowing("AAPL", "MSFT")
        finally:
            watcher.cancel()
        assert gaps == []
        assert h.feed.reconnect_attempts == 0
        assert h.feed.connects == 1 + h.feed.disconnects["server_shutdown"]
        assert h.feed.errors["decode"] == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_control_messages_are_paced_at_the_venue_rate(clock, transport):
    symbols = ("A", "B", "C", "D", "E", "F")
    async with simulated_feed(clock, transport=transport, symbols=symbols, sim_symbols=(), adapter_class=PacedOnePerSymbol) as h:
        await h.wait(lambda: h.acked(*symbols), "all acknowledged")
        times = [t for t, _ in h.sim.stats.control_log]
        assert len(times) == 7                                 # auth + one subscribe per symbol
        spacing = [b - a for a, b in zip(times, times[1:])]
        # Pacing is a lower bound (never faster than 20/s), so a slow machine cannot fail it. The
        # times are the simulator's receive times, so one message read late (a busy loop) can
        # shorten the next gap by that delay: the span of all six gaps takes the rate itself
        # (at most 5 % lost to jitter at its two ends); each gap must still show pacing at all
        # (an unpaced burst arrives with gaps of a millisecond or less).
        assert times[-1] - times[0] >= (len(times) - 1) / 20 * 0.95, spacing
        assert min(spacing) >= 1 / 20 * 0.5, spacing


async def test_watchlist_trigger_files_add_and_expire_symbols(clock, tmp_path):
    top = {"watchlist": {"trigger_dir": str(tmp_path), "ttl": "60s", "scan_interval": "50ms"}}
    async with simulated_feed(clock, sim_symbols=("AAPL", "MSFT", "NVDA"), top=top) as h:
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscriptions acknowledged")
        stocks = tmp_path / "stocks"
        stocks.mkdir()
        (tmp_path / "nosuchfeed").mkdir()                       # reported once, ignored
        for name in ("NVDA", "AAPL", ".NVDA.swp"):
            path = stocks / name
            path.touch()
            os.utime(path, (clock.time(), clock.time()))

        await h.wait(lambda: "NVDA" in h.feed.symbols and h.acked("NVDA"), "NVDA added by its trigger file")
        await h.flowing("NVDA")
        assert ".NVDA.swp" not in h.feed.symbols

        clock.advance(61)                                       # every trigger expired
        await h.wait(lambda: "NVDA" not in h.feed.symbols, "NVDA removed when its trigger expired")
        await h.wait(lambda: "NVDA" not in subscribed_at_venue(h), "NVDA unsubscribed at the venue")
        assert "AAPL" in h.feed.symbols                         # configured symbols are never removed
        assert h.feed.connects == 1

        # Touching the file again (a fresh mtime) brings it back.
        os.utime(stocks / "NVDA", (clock.time(), clock.time()))
        await h.wait(lambda: "NVDA" in h.feed.symbols and h.acked("NVDA"), "NVDA re-added")
