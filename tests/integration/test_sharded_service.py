"""One shard of a sharded deployment, over a real socket: it connects and subscribes for its share
only, keeps a feed it holds no symbol of on standby (no connection, no series), and honours the
trigger files of the symbols it owns, bringing a standby feed up for them and back down after; a
configuration reload is cut to the same share; two shards split the price checker's files and the
watchlist API between them (421 from the non-owner) and poll REST for their own symbols only.
"""

from __future__ import annotations

import json
import os

import aiohttp

from exporter.collector import BookCollector
from exporter.config import load_data
from exporter.service import Service
from exporter.sharding import Shard, owner
from exporter.simulator.control import ControlServer
from exporter.simulator.server import Simulator
from exporter.web.app import create_app, serve
from tests.integration.feedharness import API_KEY, feed_config
from tests.waiting import async_wait_for

SHARD = Shard(1, 3)
STOCKS = [f"S{i:02d}" for i in range(24)]


def symbols_of(feed: str, shard: int, candidates) -> list[str]:
    return [s for s in candidates if owner(feed, s, SHARD.count) == shard]


async def test_a_shard_watches_its_share_and_honours_only_its_own_triggers(clock, tmp_path):
    mine = symbols_of("stocks", SHARD.index, STOCKS)
    # "extra" is configured with one symbol another shard owns, so this shard holds none of it.
    extra_symbol = symbols_of("extra", 0, (f"X{i}" for i in range(50)))[0]
    extra_mine, extra_theirs = (symbols_of("extra", i, (f"T{i}" for i in range(50)))[0] for i in (SHARD.index, 2))
    stocks_theirs = symbols_of("stocks", 0, (f"U{i}" for i in range(50)))[0]
    stocks_trigger = symbols_of("stocks", SHARD.index, (f"U{i}" for i in range(50)))[0]
    every = [*STOCKS, extra_symbol, extra_mine, extra_theirs, stocks_theirs, stocks_trigger]
    sim = Simulator("polygon", every, rate=40.0, api_key=API_KEY)
    await sim.start()
    config = load_data({
        "watchlist": {"trigger_dir": str(tmp_path), "ttl": "60s", "scan_interval": "50ms"},
        "feeds": [feed_config(sim.ws_url, symbols=STOCKS),
                  feed_config(sim.ws_url, name="extra", symbols=[extra_symbol])],
    })
    service = Service(config, clock, sweep_interval=0.05, shard=SHARD)
    collector = BookCollector(service.book)
    try:
        assert mine and set(service.book.feeds) == {"stocks"} and "extra" in service.standby
        await service.start()
        stocks = service.book.feeds["stocks"]
        await async_wait_for(lambda: all(s.acknowledged for s in stocks.symbols.values()), what="share subscribed")
        assert sorted(stocks.symbols) == sorted(mine)
        assert sorted(sim.state()["subscriptions"]) == sorted(mine), "only the share is subscribed at the venue"
        assert sim.state()["connections_open"] == 1, "no connection for the standby feed"
        assert 'feed="extra"' not in collector.render(clock.time())

        # Triggers: this shard's own symbols are added (bringing "extra" up); the others' are not.
        for feed, symbol in (("extra", extra_mine), ("extra", extra_theirs), ("stocks", stocks_theirs),
                             ("stocks", stocks_trigger)):
            (tmp_path / feed).mkdir(exist_ok=True)
            (tmp_path / feed / symbol).touch()
            os.utime(tmp_path / feed / symbol, (clock.time(), clock.time()))
        await async_wait_for(lambda: "extra" in service.book.feeds
                             and set(service.book.feeds["extra"].symbols) == {extra_mine}
                             and service.book.feeds["extra"].symbols[extra_mine].updates > 0,
                             what=f"standby feed brought up for {extra_mine}, prices flowing")
        await async_wait_for(lambda: stocks_trigger in stocks.symbols and stocks.symbols[stocks_trigger].updates,
                             what=f"{stocks_trigger} added to the share")
        assert stocks_theirs not in stocks.symbols and extra_theirs not in sim.state()["subscriptions"]
        assert 'feed="extra",symbol="' + extra_mine + '"' in collector.render(clock.time())

        clock.advance(61)  # every trigger expired: "extra" goes back to standby, its socket closed
        await async_wait_for(lambda: "extra" not in service.book.feeds and "extra" not in service.runners,
                             what="extra back on standby")
        await async_wait_for(lambda: sim.state()["connections_open"] == 1, what="its connection closed")
        await async_wait_for(lambda: stocks_trigger not in stocks.symbols, what=f"{stocks_trigger} expired")
        assert sorted(stocks.symbols) == sorted(mine)
        assert 'feed="extra"' not in collector.render(clock.time())
    finally:
        await service.stop()
        await sim.stop()


async def test_a_reload_is_cut_to_the_same_share(clock, tmp_path):
    """SIGHUP/POST /-/reload hand Service.apply the whole file: it is re-sharded like at the start.
    A feed up only for a trigger file stays up with its trigger symbol; a trading section on
    another shard's side is no restart-only change here."""
    stocks = [f"S{i:02d}" for i in range(12)]
    more = [f"N{i:02d}" for i in range(12)]
    trigger = symbols_of("extra", SHARD.index, (f"T{i}" for i in range(50)))[0]
    extra_symbol = symbols_of("extra", 0, (f"X{i}" for i in range(50)))[0]
    sim = Simulator("polygon", [*stocks, *more, trigger, extra_symbol], rate=40.0, api_key=API_KEY)
    await sim.start()
    top = {"watchlist": {"trigger_dir": str(tmp_path), "ttl": "60s", "scan_interval": "50ms"}}
    bot = {"name": "bot", "kind": "trading", "url": "ws://127.0.0.1:1/ws"}
    trading = {"accounts": [{"name": "main", "symbols": {stocks[0]: "stocks"}}]}

    def whole(symbols, *extra_feeds, **sections):
        return load_data({**top, **sections, "feeds": [feed_config(sim.ws_url, symbols=symbols), *extra_feeds,
                                                       feed_config(sim.ws_url, name="extra", symbols=[extra_symbol])]})

    service = Service(whole(stocks), clock, sweep_interval=0.05, shard=SHARD)
    try:
        await service.start()
        (tmp_path / "extra").mkdir()
        (tmp_path / "extra" / trigger).touch()
        os.utime(tmp_path / "extra" / trigger, (clock.time(), clock.time()))
        await async_wait_for(lambda: "extra" in service.book.feeds and trigger in service.book.feeds["extra"].symbols,
                             what="extra up for its trigger")
        extra_runner = service.runners["extra"]

        # More symbols, and a trading stream with its section (shard 0's, so nothing to restart here).
        reloaded = whole(stocks + more, bot, trading=trading)
        assert service.check(reloaded) == []
        done = await service.apply(reloaded)
        mine = symbols_of("stocks", SHARD.index, stocks + more)
        assert sorted(service.book.feeds["stocks"].symbols) == sorted(mine), done
        assert "bot" not in service.runners and service.config.trading is None
        assert service.runners["extra"] is extra_runner and trigger in service.book.feeds["extra"].symbols
        await async_wait_for(lambda: all(s.acknowledged for s in service.book.feeds["stocks"].symbols.values()),
                             what="the new share subscribed")
        assert sorted(set(sim.state()["subscriptions"]) - {trigger}) == sorted(mine)

        clock.advance(61)  # the trigger expires after the reload: back to standby all the same
        await async_wait_for(lambda: "extra" not in service.runners, what="extra back on standby")
    finally:
        await service.stop()
        await sim.stop()


async def test_two_shards_split_run_time_symbols_and_poll_rest_for_their_own_only(clock, tmp_path):
    """Shards 0 and 1 of 2 share one trigger directory. An immediate_*.json with one ticker of
    each adds each to its owner only; the watchlist API of the shard that does not own a symbol
    answers 421 naming the owner (message and Feedwatch-Shard header) and adds nothing; with their
    sockets down, each polls REST for its own symbols only. (Each shard has its own simulator, a
    venue each, so the venue's REST counts tell the shards apart.)"""
    shards = (Shard(0, 2), Shard(1, 2))
    configured = [f"S{i:02d}" for i in range(8)]
    extra = [f"R{i:02d}" for i in range(16)]
    own = [[s for s in extra if owner("stocks", s, 2) == i] for i in (0, 1)]
    assert all(len(o) >= 2 for o in own), own
    immediate, by_api = [own[0][0], own[1][0]], own[1][1]
    token = "watchlist-token-for-tests"
    sims, controls, services, web = [], [], [], []
    try:
        for shard in shards:
            sim = Simulator("polygon", configured + extra, rate=20.0, api_key=API_KEY)
            control = ControlServer(sim)
            sims.append(sim)
            controls.append(control)
            await sim.start()
            await control.start()
            rest = {"enabled": True, "url": control.url, "interval": "100ms", "max_requests_per_second": 50}
            config = load_data({
                "watchlist": {"trigger_dir": str(tmp_path), "ttl": "60s", "scan_interval": "50ms",
                              "api": {"token": token}},
                "feeds": [feed_config(sim.ws_url, symbols=configured, rest=rest)],
            }, {}, shard=str(shard))
            service = Service(config, clock, sweep_interval=0.05, shard=shard)
            services.append(service)
            runner, port = await serve(create_app(service.book, config, clock, service=service), "127.0.0.1:0")
            web.append((runner, f"http://127.0.0.1:{port}"))
            await service.start()
        books = [service.book.feeds["stocks"] for service in services]
        for i, book in enumerate(books):
            assert sorted(book.symbols) == sorted(s for s in configured if owner("stocks", s, 2) == i)

        # The price checker's file: each ticker on its owner only.
        (tmp_path / "immediate_screener.json").write_text(json.dumps({"tickers": immediate, "feed": "stocks"}))
        os.utime(tmp_path / "immediate_screener.json", (clock.time(), clock.time()))
        await async_wait_for(lambda: all(immediate[i] in books[i].symbols for i in (0, 1)),
                             what="each immediate ticker added on its owner")
        assert immediate[1] not in books[0].symbols and immediate[0] not in books[1].symbols
        assert (tmp_path / "immediate_screener.json").exists(), "a usable file stays for the other shard"

        # The watchlist API: the non-owner refuses, naming the owner; the owner adds it.
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
            for method in ("POST", "DELETE"):
                async with session.request(method, f"{web[0][1]}/api/v1/watchlist/stocks/{by_api}") as response:
                    assert response.status == 421, await response.text()
                    assert response.headers["Feedwatch-Shard"] == "1"
                    assert "belongs to shard 1 of 2" in (await response.json())["error"]
            assert by_api not in books[0].symbols
            async with session.post(f"{web[1][1]}/api/v1/watchlist/stocks/{by_api}") as response:
                assert response.status == 200, await response.text()
        assert by_api in books[1].symbols

        # Sockets down on both venues: each shard polls REST, for its own symbols and no others.
        for sim in sims:
            sim.fault("accept_and_drop")
            sim.fault("drop")

        def polled(i: int) -> bool:
            clock.advance(0.05)  # time passes (the fake clock)
            return set(books[i].symbols) <= set(sims[i].state()["rest_symbols"])

        for i in (0, 1):
            await async_wait_for(lambda: polled(i), what=f"shard {i} polls every symbol of its share")
            polled_here = set(sims[i].state()["rest_symbols"])
            assert polled_here <= set(books[i].symbols), polled_here - set(books[i].symbols)
            assert all(owner("stocks", s, 2) == i for s in polled_here)
    finally:
        for runner, _ in web:
            await runner.cleanup()
        for service in services:
            await service.stop()
        for control in controls:
            await control.stop()
        for sim in sims:
            await sim.stop()
