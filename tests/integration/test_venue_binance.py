"""Binance against the strict simulator: sharding, pings, pacing, rollover, shutdown, and proof
that the simulator's rules are real (a client that breaks one is dropped)."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest

from exporter.feeds.binance import BinanceAdapter
from exporter.simulator import binance as venue
from exporter.simulator.control import ControlServer
from exporter.web.status import feed_status
from tests.integration.feedharness import TRANSPORTS
from tests.integration.venues import closed_with, next_json, raw_client, venue_feed

# Heartbeat periods compressed 40x: a ping every 0.5 s, answered within 1.5 s (the venue: 20 s / 60 s).
PINGS = {"ping_interval": 0.5, "pong_timeout": 1.5}


def binance(symbols, **extra):
    return {"name": "binance", "kind": "binance", "url": "{ws}", "symbols": list(symbols),
            "streams": ["trade"], **extra}


# 2,500 symbols on a busy 2-core machine: the test process (exporter and venue in one event loop)
# can stall for more than PINGS' 1.5 s, and the venue then drops a client that did nothing wrong
# (pong_timeout; requests queued meanwhile are also read as a message_rate burst). Here pongs get
# 6 s, and the test watches 14 ping periods (7 s), so a ping left unanswered would still end in a
# drop inside the window; one tick every 5 s keeps the CPU the test needs low (at one every 2 s
# the loop still fell 5 s behind at load 17). The message rate is judged over 10 s (50 messages,
# the venue's 5 a second on average): a stall of the shared loop delivers the client's paced
# requests and pongs together, and a 1 s window read that as a burst (dropped for message_rate
# at load 11 with the pong budget above); a client that really sends too fast is still dropped
# (test_an_unpaced_client_is_dropped_for_its_message_rate, at the venue's own window).
PINGS_2500 = {"ping_interval": 0.5, "pong_timeout": 6.0, "message_window": 10.0, "max_messages": 50}


async def test_2500_symbols_on_three_connections_survive_several_heartbeat_periods(clock):
    symbols = [f"S{i:04d}USDT" for i in range(2500)]
    async with venue_feed(clock, "binance", binance(symbols), rate=0.2, options=PINGS_2500) as h:
        rules = venue.rules(h.sim)
        await h.wait(lambda: all(s.acknowledged for s in h.feed.symbols.values()), "2500 symbols acknowledged",
                     timeout=30)
        assert sorted(h.feed.connections) == ["0", "1", "2"]  # 2,500 streams / 1,024 per connection
        assert all(len(c.symbols) <= 1024 for c in h.feed.connections.values())
        beats = h.feed.messages["heartbeat"]
        # 14 more ping periods on each connection, longer than pong_timeout: every ping answered,
        # or the venue drops us.
        await h.wait(lambda: h.feed.messages["heartbeat"] >= beats + 3 * 14, "14 more heartbeat periods", timeout=60)
        await h.wait(lambda: all(s.updates for s in h.feed.symbols.values()), "every symbol updated", timeout=20)
        assert sum(h.feed.disconnects.values()) == 0 and h.feed.connects == 3, (dict(rules.drops), h.feed.disconnects)
        assert not rules.drops and not rules.refused
        assert h.feed.sequence_gaps == 0 and sum(h.feed.errors.values()) == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_venues_pings_are_answered(clock, transport):
    """Binance pings us (every 0.5 s here) and drops a client that leaves one unanswered for 1.5 s:
    one connection stays up through several times that, each ping a heartbeat."""
    async with venue_feed(clock, "binance", binance(["BTCUSDT", "ETHUSDT"], transport=transport), rate=5,
                          options=PINGS) as h:
        await h.wait(lambda: h.feed.is_up(), "connected")
        beats = h.feed.messages["heartbeat"]
        await h.wait(lambda: h.feed.messages["heartbeat"] >= beats + 5, "five more of the venue's pings")
        assert h.feed.connects == 1 and sum(h.feed.disconnects.values()) == 0
        assert not venue.rules(h.sim).drops


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_unpaced_client_is_dropped_for_its_message_rate(clock, transport, caplog):
    class Unpaced(BinanceAdapter):
        control_rate = None  # breaks the venue's 5-messages-per-second rule

    symbols = [f"S{i:04d}USDT" for i in range(1000)]  # 5 SUBSCRIBE + 1 LIST at once
    caplog.set_level(logging.INFO, logger="exporter.feeds.runner")
    async with venue_feed(clock, "binance", binance(symbols, transport=transport), rate=1, options=PINGS,
                          adapter_class=Unpaced) as h:
        await h.wait(lambda: venue.rules(h.sim).drops["message_rate"] >= 1, "dropped for its message rate")
        await h.wait(lambda: h.feed.disconnects["server_closed"] >= 1, "the client saw the disconnect")
        # The venue's close code and words, in the reconnect line.
        await h.wait(lambda: any("server_closed: close code 1008 'more than" in r.getMessage() for r in caplog.records),
                     "the close code and reason logged")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_forced_rollover_loses_no_updates(clock, transport):
    """The venue cuts at 2 s (its 24 h, compressed); feedwatch rolls over at 1.5 s, make-before-break."""
    symbols = [f"R{i:02d}USDT" for i in range(20)]
    async with venue_feed(clock, "binance", binance(symbols, max_connection_age="1.5s", transport=transport), rate=20,
                          options={**PINGS, "max_age": 2.0}) as h:
        rules = venue.rules(h.sim)
        await h.wait(lambda: h.feed.disconnects["rollover"] >= 3, "three rollovers", timeout=20)
        h.sim.fault("stall_all")  # trading stops: let the book catch up, then count
        market = h.sim.market
        await h.wait(lambda: all(h.feed.symbols[s].last_seq == market.seqs[s] for s in symbols),
                     "book caught up with every trade")
        assert rules.drops["max_age"] == 0  # feedwatch always left before the venue's cut
        for s in symbols:
            state = h.feed.symbols[s]
            traded = market.seqs[s] - rules.first_seq[s] + 1
            # Every trade arrived once: no id skipped, and each counted (the very first print,
            # held back by the first-print guard, counts once the second confirms it).
            assert state.gaps == 0, s
            assert state.updates == traded, (s, state.updates, traded)
        assert h.feed.disconnects["rollover"] == h.feed.connects - 1
        assert sum(h.feed.disconnects.values()) == h.feed.disconnects["rollover"]


async def test_the_count_catches_loss_when_the_venue_cuts_first(clock):
    """The same count, with feedwatch's age limit above the venue's: each cut loses trades."""
    symbols = [f"R{i:02d}USDT" for i in range(20)]
    async with venue_feed(clock, "binance", binance(symbols, max_connection_age="1h"), rate=20,
                          options={**PINGS, "max_age": 1.0}) as h:
        rules = venue.rules(h.sim)
        await h.wait(lambda: rules.drops["max_age"] >= 2 and h.feed.sequence_gaps > 0, "cut, and trades lost")
        market = h.sim.market
        received = sum(h.feed.symbols[s].updates for s in symbols)
        traded = sum(market.seqs[s] - rules.first_seq[s] + 1 for s in symbols)
        assert received < traded
        assert h.feed.sequence_gaps == sum(h.feed.symbols[s].gaps for s in symbols) > 0
        # The status API names them: the symbols with the most gaps first.
        worst = feed_status(h.feed, clock.time()).most_gaps
        assert worst and worst[0].gaps == max(h.feed.symbols[s].gaps for s in symbols)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_server_shutdown_is_a_planned_reconnect(clock, transport):
    symbols = [f"D{i:02d}USDT" for i in range(10)]
    async with venue_feed(clock, "binance", binance(symbols, transport=transport), rate=20, options=PINGS) as h:
        rules = venue.rules(h.sim)
        await h.wait(lambda: all(s.acknowledged for s in h.feed.symbols.values()), "acknowledged")
        await h.flowing(*symbols)
        control = ControlServer(h.sim)  # the command, as an operator gives it: over HTTP
        await control.start()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{control.url}/scenarios/server_shutdown?grace=5") as response:
                    assert response.status == 200
                    assert (await response.json())["scenario"] == {"notified": 1}
        finally:
            await control.stop()
        await h.wait(lambda: h.feed.disconnects["server_shutdown"] == 1, "planned reconnect")
        await h.wait(lambda: h.sim.stats.connections_open == 1, "old connection closed by feedwatch")
        await h.flowing(*symbols)
        assert h.feed.connects == 2 and h.feed.is_up()
        assert sum(h.feed.disconnects.values()) == 1       # nothing else: no network error, no cut
        assert rules.drops["server_shutdown"] == 0          # left before the venue had to close it
        h.sim.fault("stall_all")
        market = h.sim.market
        await h.wait(lambda: all(h.feed.symbols[s].last_seq == market.seqs[s] for s in symbols), "caught up")
        assert h.feed.sequence_gaps == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_venue_cut_at_24_hours_is_survived(clock, transport):
    """``expire`` cuts every connection now, as the 24-hour mark does: feedwatch reconnects."""
    async with venue_feed(clock, "binance", binance(["BTCUSDT", "ETHUSDT"], transport=transport), rate=20,
                          options=PINGS) as h:
        await h.flowing("BTCUSDT", "ETHUSDT")
        assert venue.expire(h.sim) == 1
        await h.wait(lambda: h.feed.connects == 2 and h.feed.is_up(), "reconnected after the cut")
        await h.flowing("BTCUSDT", "ETHUSDT")
        assert venue.rules(h.sim).drops["max_age"] == 1
        assert h.feed.disconnects["server_closed"] == 1


async def test_a_client_that_does_not_pong_is_dropped(clock):
    async with venue_feed(clock, "binance", binance(["BTCUSDT"]), options=PINGS) as h:
        async with raw_client(h.sim.ws_url + "/stream") as ws:
            await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}))
            assert await closed_with(ws) == 1008
        assert venue.rules(h.sim).drops["pong_timeout"] == 1
        assert h.feed.is_up() and sum(h.feed.disconnects.values()) == 0  # feedwatch, pinged alike, stays


async def test_a_client_over_the_message_rate_is_dropped(clock):
    async with venue_feed(clock, "binance", binance(["BTCUSDT"]), options=PINGS) as h:
        async with raw_client(h.sim.ws_url + "/stream") as ws:
            for i in range(6):  # one more than the venue's 5 per second
                await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i + 1}))
            assert await closed_with(ws) == 1008
        assert venue.rules(h.sim).drops["message_rate"] == 1


async def test_more_than_1024_streams_on_a_connection_are_refused(clock):
    async with venue_feed(clock, "binance", binance(["BTCUSDT"]), options=PINGS) as h:
        async with raw_client(h.sim.ws_url + "/stream") as ws:
            streams = [f"s{i:04d}usdt@trade" for i in range(1025)]
            await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": streams, "id": 7}))
            reply = await next_json(ws)
            assert reply["id"] == 7 and reply["code"] == 2 and "at most 1024" in reply["msg"]
            await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": streams[:1024], "id": 8}))
            assert await next_json(ws) == {"result": None, "id": 8}
        assert venue.rules(h.sim).refused["too_many_streams"] == 1
