"""Liveness over real sockets: a black-holed (half-open) connection, a venue that accepts and
drops, data frames as heartbeats, and error runs that control frames do not end.

The venue killed and restarted as a process is tests/integration/test_runner_killed_venue.py; the
default settings' detection bound is proven by construction in tests/unit/test_keepalive.py.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import AsyncIterator

import pytest

from exporter.collector import BookCollector
from exporter.config import load_data
from exporter.service import Service
from exporter.simulator.server import Simulator
from tests.integration.feedharness import API_KEY, TRANSPORTS, Harness, feed_config, simulated_feed
from tests.integration.proxy import BlackHoleProxy
from tests.integration.venues import venue_feed

# Every test here over both transports (exporter/feeds/transport.py): liveness is the link's, the
# pings, pongs, closes and their reasons pass through the transport.
pytestmark = pytest.mark.parametrize("transport", TRANSPORTS)

RECONNECT_LINE = re.compile(r"reconnecting in (?P<delay>[0-9.]+)s \((?P<why>.*); attempt (?P<attempt>\d+)\)")


def reconnect_waits(caplog) -> list[tuple[int, float, str]]:
    """(attempt, delay, why) of every "reconnecting in" line the runner logged, in order."""
    waits = []
    for record in caplog.records:
        match = RECONNECT_LINE.search(record.getMessage())
        if match and record.name == "exporter.feeds.runner":
            waits.append((int(match["attempt"]), float(match["delay"]), match["why"]))
    return waits


@contextlib.asynccontextmanager
async def feed_through_proxy(clock, **overrides) -> AsyncIterator[tuple[Harness, BlackHoleProxy]]:
    sim = Simulator("polygon", ("AAPL", "MSFT"), rate=40, api_key=API_KEY)
    await sim.start()
    proxy = BlackHoleProxy("127.0.0.1", sim.port)
    await proxy.start()
    service = Service(load_data({"feeds": [feed_config(proxy.url, **overrides)]}), clock, sweep_interval=0.05)
    try:
        await service.start()
        yield Harness(sim, service, "stocks"), proxy
    finally:
        await service.stop()
        await proxy.stop()
        await sim.stop()


def exposition(h: Harness) -> str:
    return BookCollector(h.service.book).render(h.service.clock.time())


async def test_a_black_holed_connection_goes_down_and_is_replaced(clock, transport, caplog):
    caplog.set_level(logging.INFO, logger="exporter.feeds.runner")
    # Compressed: pings every 100 ms, dead after 2 s of nothing. The proxy keeps both TCP
    # connections open but forwards nothing either way: no FIN, no RST, no close frame.
    async with feed_through_proxy(clock, transport=transport, heartbeat_timeout="2s") as (h, proxy):
        await h.wait(lambda: h.feed.is_up() and h.acked("AAPL", "MSFT"), "connected through the proxy")
        await h.flowing("AAPL", "MSFT")
        assert 'feedwatch_feed_up{feed="stocks",connection="0"} 1' in exposition(h)

        assert await proxy.black_hole() == 1
        await h.wait(lambda: 'feedwatch_feed_up{feed="stocks",connection="0"} 0' in exposition(h),
                     "feedwatch_feed_up 0 for the black-holed connection")
        # Down from the moment the deadline gave it up, not once the close handshake that a
        # dead peer never answers has timed out: the exporter has not even closed its end yet.
        assert not proxy.pairs[0].client_closed
        # Given up by the deadline, the one reason that tells an operator what happened: not
        # "the server closed" (it never said so) and not a network error (none was reported).
        assert h.feed.disconnects["heartbeat_timeout"] == 1
        assert h.feed.disconnects["server_closed"] == 0 and h.feed.disconnects["network_error"] == 0
        assert not h.acked("AAPL")

        # The next connection through the same proxy works: reconnected and streaming again.
        await h.wait(lambda: h.feed.is_up() and h.acked("AAPL", "MSFT"), "reconnected through the proxy")
        await h.flowing("AAPL", "MSFT")
        assert h.feed.connects == 2 and len(proxy.pairs) == 2
        # The close handshake the dead peer never answered is not swallowed: the reconnect line
        # says so, after the reason.
        (_, _, why), = reconnect_waits(caplog)
        assert why.startswith("heartbeat_timeout: close handshake unanswered"), why


async def test_a_venue_that_accepts_and_drops_is_retried_with_growing_delays(clock, transport, caplog):
    caplog.set_level(logging.INFO, logger="exporter.feeds.runner")
    async with simulated_feed(clock, transport=transport) as h:   # reconnect: 50 ms first, x2, capped at 300 ms
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscribed")
        await h.flowing("AAPL", "MSFT")

        h.sim.fault("accept_and_drop")   # from now on: handshake accepted, TCP cut at once
        h.sim.fault("drop")              # and the current connection goes
        await h.wait(lambda: len(reconnect_waits(caplog)) >= 7, "seven reconnect attempts")
        waits = reconnect_waits(caplog)[:7]
        attempts = [attempt for attempt, _, _ in waits]
        # The connection that streamed resets the backoff (attempt 1); the ones that were
        # accepted and dropped before delivering anything never do: 1, 2, 3, ... up to the cap.
        assert attempts == list(range(1, 8)), waits
        assert waits[0][1] <= 0.05                      # the random first delay
        assert all(delay >= 0.3 * 0.8 for _, delay, _ in waits[4:]), waits   # the cap, with jitter
        assert h.sim.stats.drops >= 6 and h.feed.connects >= 6

        h.sim.fault("resume")
        await h.wait(lambda: h.feed.is_up() and h.acked("AAPL", "MSFT"), "connected once the venue is well")
        await h.flowing("AAPL", "MSFT")


async def test_data_frames_keep_the_heartbeat_fresh_without_pings(clock, transport):
    # ping_interval 0 on a busy feed (40 updates a second, the venue never pings): the
    # connection's heartbeat timestamp must follow the data, or FeedHeartbeatMissing fires.
    async with simulated_feed(clock, transport=transport, ping_interval=0) as h:
        await h.wait(lambda: h.feed.is_up() and h.acked("AAPL", "MSFT"), "connected")
        await h.flowing("AAPL", "MSFT")
        connected_at = h.feed.connection("0").connected_at
        for minutes in (1, 2, 3):
            now = clock.advance(60)
            await h.wait(lambda: h.feed.connection("0").last_heartbeat == now,
                         f"the heartbeat to follow the data, {minutes} minute(s) after connecting")
            line = f'feedwatch_feed_last_heartbeat_timestamp_seconds{{feed="stocks",connection="0"}} {now!r}'
            assert line in exposition(h)
        assert h.feed.connection("0").connected_at == connected_at   # the same connection
        assert h.sim.stats.pings_received == 0
        # Data frames are not counted as heartbeat messages: that counter is pings and pongs.
        assert h.feed.messages["heartbeat"] == 0


async def test_pongs_do_not_end_a_run_of_bad_frames(clock, transport):
    # Bybit: feedwatch pings every 100 ms and each pong is a frame of its own. Every data frame
    # is garbage (both symbols stalled, garbage on): the consecutive errors must add up to the
    # unhealthy threshold (10) although a pong arrives every few bad frames.
    feed = {"name": "bybit", "kind": "bybit", "url": "{ws}/v5/public/spot", "symbols": ["BTCUSDT", "ETHUSDT"],
            "channels": ["publicTrade"], "ping_interval": "100ms", "transport": transport}
    async with venue_feed(clock, "bybit", feed, rate=20, sim_symbols=("BTCUSDT", "ETHUSDT")) as h:
        await h.wait(lambda: all(s.updates >= 2 for s in h.feed.symbols.values()), "trades flowing")
        assert h.feed.is_healthy(clock.time())
        for symbol in ("BTCUSDT", "ETHUSDT"):
            h.sim.fault("stall", symbol)
        h.sim.fault("garbage")
        beats = h.feed.messages["heartbeat"]
        await h.wait(lambda: h.feed.consecutive_errors >= 10, "ten bad frames in a row, pongs between them")
        assert h.feed.messages["heartbeat"] > beats       # the pongs did arrive meanwhile
        assert not h.feed.is_healthy(clock.time())
        assert 'feedwatch_feed_healthy{feed="bybit"} 0' in exposition(h)

        h.sim.fault("resume")   # good data again: the run ends
        await h.wait(lambda: h.feed.consecutive_errors == 0 and h.feed.is_healthy(clock.time()),
                     "healthy again after good frames")
