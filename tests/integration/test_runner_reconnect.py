"""Reconnects over a real socket: drops, a restarted venue, refusals, dead heartbeats, silence."""

from __future__ import annotations

import pytest

from exporter.book import ConnectionChange
from exporter.collector import BookCollector
from exporter.feeds.polygon import PolygonAdapter
from exporter.simulator.server import Simulator
from tests.integration.feedharness import API_KEY, TRANSPORTS, simulated_feed

# Every test here over both transports (exporter/feeds/transport.py): reconnects, refusals,
# deadlines and pings are the link's, the sockets they happen on the transport's.
pytestmark = pytest.mark.parametrize("transport", TRANSPORTS)


async def test_dropped_socket_reconnects_and_resubscribes(clock, transport):
    async with simulated_feed(clock, transport=transport) as h:
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscriptions acknowledged")
        await h.flowing("AAPL", "MSFT")

        h.sim.fault("drop")   # TCP connection cut, no close frame
        await h.wait(lambda: h.feed.connects == 2, "reconnected")
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "symbols acknowledged again")
        await h.flowing("AAPL", "MSFT")
        assert h.feed.disconnects["network_error"] == 1
        assert h.feed.reconnect_attempts == 1
        assert h.sim.stats.connections_total == 2
        assert h.feed.connection("0").up


async def test_restarted_venue_on_the_same_port_is_reconnected_to(clock, transport):
    async with simulated_feed(clock, transport=transport) as h:
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscriptions acknowledged")
        port = h.sim.port
        await h.sim.stop(abort=True)  # killed: every connection cut
        await h.wait(lambda: not h.feed.is_up(), "feed down while the venue is gone")
        # Refused connects are retried with backoff and counted, without a process restart.
        await h.wait(lambda: h.feed.errors["connect"] >= 1, "failed connect attempts counted")

        replacement = Simulator("polygon", ("AAPL", "MSFT"), rate=40, api_key=API_KEY, port=port)
        await replacement.start()
        try:
            await h.wait(lambda: h.feed.is_up() and h.acked("AAPL", "MSFT"), "reconnected to the new venue")
            before = h.updates("AAPL")
            await h.wait(lambda: h.updates("AAPL") > before + 2, "updates from the new venue")
            assert replacement.stats.connections_total == 1
            assert h.feed.reconnect_attempts >= 2
        finally:
            await replacement.stop()


async def test_rejected_auth_is_disconnect_reason_auth_failed(clock, transport):
    async with simulated_feed(clock, transport=transport, sim_faults=("reject_auth",)) as h:
        await h.wait(lambda: h.feed.disconnects["auth_failed"] >= 1, "auth_failed disconnect")
        assert h.feed.errors["auth"] >= 1
        assert not h.feed.is_up()
        assert not h.acked("AAPL")
        # Fatal, so the runner waits the capped delay between attempts, but it does retry: once
        # the venue accepts the key again the feed comes back by itself.
        h.sim.fault("resume")
        await h.wait(lambda: h.feed.is_up() and h.acked("AAPL", "MSFT"), "recovered after the venue accepts us")


@pytest.mark.parametrize("fault, reason", [
    ("reject_auth", "auth_failed"),          # Polygon's auth_failed status, then a close
    ("max_connections", "max_connections"),  # refused as over the connection limit
    ("accept_and_drop", "network_error"),    # a venue that cuts each connection right after it opens
])
async def test_a_venue_that_refuses_us_never_reads_up(clock, transport, fault, reason):
    """Up means the venue accepted us (authenticated, first subscription acknowledged), not that a
    socket opened: through a loop of refused logins the connection must never read up, or FeedDown
    resolves and lifts its inhibition of the symbol alerts (a false all-clear)."""
    changes: list[ConnectionChange] = []
    async with simulated_feed(clock, transport=transport, sim_faults=(fault,), connection_listener=changes.append) as h:
        collector = BookCollector(h.service.book)
        up_line = 'feedwatch_feed_up{feed="stocks",connection="0"} 1'

        seen_up: list[str] = []

        def refused_three_times() -> bool:
            # Every poll, through the whole loop: the book and the exposition (the change log,
            # which sees even an up too short for a poll, is checked below).
            if h.feed.is_up():
                seen_up.append("book")
            if up_line in collector.render(clock.time()):
                seen_up.append("/metrics")
            return h.feed.disconnects[reason] >= 3

        await h.wait(refused_three_times, f"three {reason} disconnects")
        assert seen_up == [], "the connection read up while the venue refused us"
        assert [c for c in changes if c.up] == [], "the feed was reported up while the venue refused us"
        assert h.feed.connects >= 3   # the sockets did open: counted as connects, not as up
        assert not h.acked("AAPL")

        h.sim.fault("resume")
        await h.wait(lambda: h.feed.is_up() and h.acked("AAPL", "MSFT"), "up once the venue accepts us")
        assert [c.up for c in changes] == [True]
        assert up_line in collector.render(clock.time())


async def test_wrong_api_key_is_auth_failed(clock, transport):
    async with simulated_feed(clock, transport=transport, api_key="not-the-key") as h:
        await h.wait(lambda: h.feed.disconnects["auth_failed"] >= 1, "auth_failed disconnect")
        assert h.sim.stats.auth_rejected >= 1
        assert h.feed.connects >= 1 and not h.feed.is_up()


async def test_max_connections_is_its_own_disconnect_reason(clock, transport):
    async with simulated_feed(clock, transport=transport, sim_faults=("max_connections",)) as h:
        await h.wait(lambda: h.feed.disconnects["max_connections"] >= 2, "max_connections, retried")
        assert h.feed.disconnects["auth_failed"] == 0
        h.sim.fault("resume")
        await h.wait(lambda: h.feed.is_up() and h.acked("AAPL"), "connected once the venue has room")


async def test_unanswered_pings_on_a_silent_socket_time_out(clock, transport):
    # heartbeat_timeout short; pings every 100 ms. While the venue answers pings a stalled feed
    # stays connected (pongs are proof of life); once it stops answering, the deadline fires.
    async with simulated_feed(clock, transport=transport, heartbeat_timeout="600ms") as h:
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscriptions acknowledged")
        h.sim.fault("stall_all")
        pings = h.sim.stats.pings_received
        await h.wait(lambda: h.sim.stats.pings_received >= pings + 10, "pings answered on a silent socket")
        assert h.feed.connects == 1 and h.feed.disconnects["heartbeat_timeout"] == 0
        assert h.feed.connection("0").last_heartbeat > 0

        h.sim.fault("ignore_pings")
        await h.wait(lambda: h.feed.disconnects["heartbeat_timeout"] == 1, "heartbeat_timeout disconnect")
        await h.wait(lambda: h.feed.connects >= 2, "reconnected after the heartbeat timeout")
        assert h.sim.stats.pings_ignored >= 1


async def test_silent_stall_reconnects_while_socket_is_up(clock, transport):
    async with simulated_feed(clock, transport=transport, silence_timeout="30s") as h:
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscriptions acknowledged")
        await h.flowing("AAPL", "MSFT")
        h.sim.fault("stall_all")  # socket stays up, pings answered: only silence is wrong
        await h.settled("AAPL")
        await h.settled("MSFT")
        clock.advance(25)         # silent, but not for long enough
        pings = h.sim.stats.pings_received   # let the watch (every 250 ms) look a few times
        await h.wait(lambda: h.sim.stats.pings_received >= pings + 6, "a few watch periods")
        assert h.feed.disconnects["silent_stall"] == 0
        clock.advance(10)         # 35 s of book time without an update
        await h.wait(lambda: h.feed.disconnects["silent_stall"] == 1, "silent_stall disconnect")
        await h.wait(lambda: h.feed.connects == 2 and h.acked("AAPL", "MSFT"), "reconnected, resubscribed")
        # One reconnect per silent period: the clock is not moving, so no second one follows.
        assert h.feed.disconnects["silent_stall"] == 1
        h.sim.fault("resume")
        await h.flowing("AAPL", "MSFT")


async def test_garbage_frames_and_bad_prices_are_counted_and_survived(clock, transport):
    async with simulated_feed(clock, transport=transport, channels=["T", "Q"]) as h:
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscriptions acknowledged")
        await h.flowing("AAPL", "MSFT")

        h.sim.fault("garbage")
        await h.wait(lambda: h.feed.errors["decode"] >= 5, "decode errors counted")
        await h.flowing("AAPL", "MSFT")   # good frames still land between the bad ones
        h.sim.fault("resume")

        h.sim.fault("bad_prices")
        await h.wait(lambda: h.feed.rejected["nonpositive_price"] >= 5 and h.feed.rejected["crossed_quote"] >= 5,
                     "bad trades and crossed quotes rejected")
        price = h.feed.symbols["AAPL"].price
        assert price > 0                  # the last good price stands
        h.sim.fault("resume")
        await h.flowing("AAPL", "MSFT")
        assert h.feed.symbols["AAPL"].price > 0
        assert h.feed.connects == 1       # survived on the same connection
        assert h.sim.stats.garbage_sent >= h.feed.errors["decode"] >= 5


class AppLevelPing(PolygonAdapter):
    def ping_message(self) -> str:
        return '{"action":"ping"}'


class VenuePings(PolygonAdapter):
    server_pings = True


async def test_ping_mode_follows_the_adapter(clock, transport):
    # Default: WebSocket pings every ping_interval (100 ms here).
    async with simulated_feed(clock, transport=transport) as h:
        await h.wait(lambda: h.sim.stats.pings_received >= 3, "WebSocket pings")
        assert not any('"ping"' in text for _, text in h.sim.stats.control_log)
    # An adapter with an application-level ping sends that instead, never a WebSocket ping.
    async with simulated_feed(clock, transport=transport, adapter_class=AppLevelPing) as h:
        await h.wait(lambda: sum('"action":"ping"' in t for _, t in h.sim.stats.control_log) >= 3, "app pings")
        assert h.sim.stats.pings_received == 0
    # A venue that pings us itself: we send neither, and answer its pings with pongs (the
    # simulator, like Binance, disconnects a client that does not). Its pings are heartbeats.
    async with simulated_feed(clock, transport=transport, adapter_class=VenuePings, sim_ping_interval=0.1) as h:
        await h.wait(lambda: h.sim.stats.pongs_received >= 5, "pongs to the venue's pings")
        assert h.feed.messages["heartbeat"] >= 5 and h.feed.connection("0").last_heartbeat > 0
        assert h.sim.stats.pings_received == 0
        assert not any('"ping"' in text for _, text in h.sim.stats.control_log)
        assert h.feed.connects == 1
