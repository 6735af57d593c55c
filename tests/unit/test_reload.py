"""Reload bookkeeping without sockets: which feeds a new file restarts, what only a restart may
change, and the Reloader's metrics and refusals (the running service is in
tests/integration/test_reload.py)."""

from __future__ import annotations

import subprocess

import pytest

from exporter.clock import FakeClock
from exporter.config import ConfigError, load_data
from exporter.reload import Reloader, feed_changes, restart_only

POLYGON = {"name": "stocks", "kind": "polygon", "url": "wss://socket.polygon.io/stocks", "api_key": "k",
           "symbols": ["AAPL", "MSFT"]}
BINANCE = {"name": "crypto", "kind": "binance", "url": "wss://stream.binance.com:9443", "symbols": ["BTCUSDT"]}


def config(*feeds, **top):
    return load_data({**top, "feeds": list(feeds)}, {})


@pytest.mark.parametrize("change, restarted", [
    ({"symbols": ["AAPL", "NVDA"]}, None),
    ({"thresholds": {"stale": "10m"}}, None),
    ({"heartbeat_timeout": "40s", "ping_interval": "15s"}, None),
    ({"reconnect": {"max_delay": "10s"}}, None),
    ({"market": "us-equities"}, None),
    ({"url": "wss://delayed.polygon.io/stocks"}, ["url"]),
    ({"api_key": "rotated"}, ["api_key"]),
    ({"channels": ["T"]}, ["options"]),                  # a venue key: what is subscribed
    ({"connect_timeout": "5s"}, ["connect_timeout"]),
    ({"transport": "picows"}, ["transport"]),            # another WebSocket client: new sockets
])
def test_what_restarts_a_feed_and_what_is_applied_in_place(change, restarted):
    changes = feed_changes(config(POLYGON, BINANCE), config({**POLYGON, **change}, BINANCE))
    assert not changes.added and not changes.removed
    if restarted is None:
        assert [f.name for f in changes.updated] == ["stocks"] and not changes.restarted
    else:
        assert [(f.name, keys) for f, keys in changes.restarted] == [("stocks", restarted)]
        assert not changes.updated


def test_added_removed_and_untouched_feeds():
    changes = feed_changes(config(POLYGON, BINANCE), config(BINANCE, {**POLYGON, "name": "more"}))
    assert changes.removed == ["stocks"] and [f.name for f in changes.added] == ["more"]
    assert not changes.restarted and not changes.updated   # crypto did not change at all
    # Global thresholds reach every feed through its resolved thresholds: an update, not a restart.
    changes = feed_changes(config(POLYGON), config(POLYGON, thresholds={"degraded": "1m"}))
    assert [f.name for f in changes.updated] == ["stocks"]


def test_the_http_servers_settings_take_a_restart():
    old = config(POLYGON)
    assert restart_only(old, config(POLYGON)) == []
    problems = restart_only(old, config(POLYGON, listen="127.0.0.1:9999", telemetry_path="/m"))
    assert problems == [
        "listen: changed from ':10119' to '127.0.0.1:9999'; this takes a restart (the reload changed nothing)",
        "telemetry_path: changed from '/metrics' to '/m'; this takes a restart (the reload changed nothing)",
    ]


def test_a_replicas_shard_takes_a_restart():
    """A reload is cut to the share the replica started with; moving it is a restart (scaling.md)."""
    old = config(POLYGON, shard="1/3")
    assert restart_only(old, config(POLYGON, shard="1/3")) == []
    assert restart_only(old, config(POLYGON, shard="2/3")) == [
        "shard: changed from '1/3' to '2/3'; this takes a restart (the reload changed nothing)"]


async def test_a_failed_reload_keeps_the_last_success_and_says_why(caplog):
    clock = FakeClock(1_700_000_000.0)
    outcome: list = [config(POLYGON)]
    applied = []

    def load():
        result = outcome[0]
        if isinstance(result, Exception):
            raise result
        return result

    async def apply(new):
        applied.append(new)
        return []

    reloader = Reloader(load, apply, clock, "/etc/feedwatch/feedwatch.yml")
    assert "feedwatch_config_last_reload_successful 1\n" in reloader.render(clock.time())
    assert "feedwatch_config_last_reload_success_timestamp_seconds 1700000000.0\n" in reloader.render(0)

    clock.advance(60)
    assert await reloader.reload("SIGHUP") == [] and len(applied) == 1
    assert "feedwatch_config_last_reload_success_timestamp_seconds 1700000060.0\n" in reloader.render(0)

    clock.advance(60)
    outcome[0] = ConfigError(["feeds[0].symbls: unknown key (did you mean 'symbols'?)",
                              "thresholds.degraded: invalid duration '3q'"])
    problems = await reloader.reload("POST /-/reload")
    assert problems == outcome[0].errors and len(applied) == 1
    text = reloader.render(0)
    assert "feedwatch_config_last_reload_successful 0\n" in text
    assert "feedwatch_config_last_reload_success_timestamp_seconds 1700000060.0\n" in text
    # Each problem on a line of its own, with its key path.
    logged = [r.getMessage() for r in caplog.records if r.name == "exporter.reload"]
    assert "configuration reload: feeds[0].symbls: unknown key (did you mean 'symbols'?)" in logged
    assert "configuration reload: thresholds.degraded: invalid duration '3q'" in logged

    # An apply step that refuses (a restart-only change) counts as a failure too; one that
    # raises is contained and reported, never fatal.
    outcome[0] = config(POLYGON)

    async def refuse(new):
        return ["listen: changed from ':10119' to ':1'; this takes a restart (the reload changed nothing)"]

    reloader.apply = refuse
    assert (await reloader.reload("SIGHUP"))[0].startswith("listen: changed")

    async def explode(new):
        raise RuntimeError("boom")

    reloader.apply = explode
    assert "RuntimeError('boom')" in (await reloader.reload("SIGHUP"))[0]
    assert "feedwatch_config_last_reload_successful 0\n" in reloader.render(0)

    reloader.apply = apply
    assert await reloader.reload("SIGHUP") == []
    assert "feedwatch_config_last_reload_successful 1\n" in reloader.render(0)


def test_the_reload_metrics_pass_promtool():
    reloader = Reloader(lambda: config(), None, FakeClock(), "f.yml")  # type: ignore[arg-type]
    done = subprocess.run(["promtool", "check", "metrics"], input=reloader.render(0).encode(),
                          capture_output=True, timeout=60)
    assert done.returncode == 0 and not done.stdout and not done.stderr, done


def test_a_feed_book_takes_new_thresholds_and_market_keeping_its_symbols():
    from exporter.book import Book, CLOSED, DEGRADED, HEALTHY, STALE

    clock = FakeClock(1_700_000_000.0)   # a Tuesday, 17:13 in New York: the stock market is closed
    book = Book(config(POLYGON).feeds, clock.time())
    feed = book.feeds["stocks"]
    feed.record("AAPL", 190.0, 0, clock.time(), quote=True)
    aapl = feed.symbols["AAPL"]
    clock.advance(200)                     # 200 s without an update: degraded by the defaults
    assert feed.classify(aapl, clock.time()) == DEGRADED

    feed.reconfigure(config({**POLYGON, "thresholds": {"degraded": "10m", "stale": "20m"}}).feeds[0], clock.time())
    assert feed.symbols["AAPL"] is aapl and aapl.updates == 1 and aapl.price == 190.0
    assert feed.classify(aapl, clock.time()) == HEALTHY

    feed.reconfigure(config({**POLYGON, "thresholds": {"degraded": "1m", "stale": "2m"}}).feeds[0], clock.time())
    assert feed.classify(aapl, clock.time()) == STALE
    assert feed.staleness(aapl, clock.time()) == 200.0

    # A session calendar now: closed at this hour. Switching it never restarts the symbols'
    # clocks (that would make a stale symbol look fresh).
    feed.reconfigure(config({**POLYGON, "market": "us-equities"}).feeds[0], clock.time())
    feed.refresh_market(clock.time())
    assert feed.classify(aapl, clock.time()) == CLOSED
    feed.reconfigure(config(POLYGON).feeds[0], clock.time())
    feed.refresh_market(clock.time())
    assert feed.staleness(aapl, clock.time()) == 200.0
