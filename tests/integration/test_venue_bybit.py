"""Bybit against the strict simulator: batched subscriptions, the client ping as heartbeat, and
proof that the simulator's rules are real (a client that breaks one is refused or dropped)."""

from __future__ import annotations

import json
import logging
import math

import pytest

from exporter.feeds.bybit import BybitAdapter
from exporter.simulator import bybit as venue
from tests.integration.feedharness import TRANSPORTS
from tests.integration.venues import next_json, raw_client, venue_feed

# Heartbeats compressed 40x: feedwatch pings every 0.5 s; the venue drops a client silent for 1.5 s.
PINGS = {"ping_timeout": 1.5}


def spot(symbols, **extra):
    return {"name": "bybit", "kind": "bybit", "url": "{ws}/v5/public/spot", "symbols": list(symbols),
            "channels": ["publicTrade"], "ping_interval": "0.5s", **extra}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_25_spot_symbols_in_three_batches_stay_connected_across_ping_periods(clock, transport):
    symbols = [f"S{i:02d}USDT" for i in range(25)]
    async with venue_feed(clock, "bybit", spot(symbols, transport=transport), rate=10, options=PINGS) as h:
        rules = venue.rules(h.sim)
        await h.wait(lambda: all(s.acknowledged for s in h.feed.symbols.values()), "25 symbols acknowledged")
        assert rules.subscribe_args == [10, 10, 5]
        beats = h.feed.messages["heartbeat"]
        await h.wait(lambda: h.feed.messages["heartbeat"] >= beats + 6, "six more ping periods", timeout=15)
        await h.wait(lambda: all(s.updates for s in h.feed.symbols.values()), "every symbol updated")
        assert h.feed.connects == 1 and sum(h.feed.disconnects.values()) == 0
        assert not rules.drops and not rules.refused
        assert rules.pings >= 6 and sum(h.feed.errors.values()) == 0


async def test_linear_tickers_merge_deltas_into_a_mid(clock):
    symbols = ["BTCUSDT", "ETHUSDT"]
    feed = spot(symbols, url="{ws}/v5/public/linear", category="linear", channels=["tickers"])
    async with venue_feed(clock, "bybit", feed, rate=20, options=PINGS) as h:
        await h.wait(lambda: all(h.feed.symbols[s].updates >= 5 for s in symbols), "ticker deltas applied")
        assert h.feed.messages["quote"] >= 10 and h.feed.messages["trade"] == 0  # mids, from bid and ask
        assert all(math.isfinite(h.feed.symbols[s].price) for s in symbols)
        assert sum(h.feed.rejected.values()) == 0 and sum(h.feed.errors.values()) == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_feedwatch_without_its_ping_is_dropped(clock, transport, caplog):
    caplog.set_level(logging.INFO, logger="exporter.feeds.runner")
    async with venue_feed(clock, "bybit", spot(["BTCUSDT"], ping_interval=0, transport=transport), options=PINGS) as h:
        await h.wait(lambda: venue.rules(h.sim).drops["no_ping"] >= 1, "dropped for not pinging")
        await h.wait(lambda: h.feed.disconnects["server_closed"] >= 1, "the disconnect counted")
        # The venue's close code and words, in the reconnect line.
        await h.wait(lambda: any("server_closed: close code 1008 '" in r.getMessage() for r in caplog.records),
                     "the close code and reason logged")


async def test_an_over_long_subscribe_batch_is_refused(clock):
    async with venue_feed(clock, "bybit", spot(["BTCUSDT"]), options=PINGS) as h:
        async with raw_client(h.sim.ws_url + "/v5/public/spot") as ws:
            args = [f"publicTrade.S{i:02d}USDT" for i in range(11)]
            await ws.send_str(json.dumps({"req_id": "r1", "op": "subscribe", "args": args}))
            reply = await next_json(ws)
            assert reply["success"] is False and reply["req_id"] == "r1" and "limit of 10" in reply["ret_msg"]
            await ws.send_str(json.dumps({"req_id": "r2", "op": "subscribe", "args": args[:10]}))
            assert (await next_json(ws))["success"] is True
        assert venue.rules(h.sim).refused["too_many_args"] == 1


async def test_a_refused_batch_is_a_subscribe_error_logged_with_the_venues_words(clock, caplog):
    class Greedy(BybitAdapter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.args_per_request = 11  # one more than spot allows

    symbols = [f"S{i:02d}USDT" for i in range(11)]
    caplog.set_level(logging.WARNING, logger="exporter.feeds.runner")
    async with venue_feed(clock, "bybit", spot(symbols), options=PINGS, adapter_class=Greedy) as h:
        await h.wait(lambda: h.feed.errors["subscribe"] >= 1, "subscribe error counted")
        assert not any(s.acknowledged for s in h.feed.symbols.values())
        logged = [r.getMessage() for r in caplog.records if "subscribe error" in r.getMessage()]
        assert len(logged) == 1 and "exceeds the limit of 10" in logged[0]
