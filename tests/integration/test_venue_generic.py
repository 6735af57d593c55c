"""A generic (YAML-configured) feed against a JSON venue no built-in adapter speaks."""

from __future__ import annotations

import dataclasses
import logging
import re
import subprocess
import sys
from pathlib import Path

import yaml

from exporter.collector import BookCollector
from exporter.config import load_data, load_file
from exporter.simulator import generic as venue
from tests.integration.venues import venue_feed

# The worked example of docs/configuration.md, pointed at the simulator.
EXAMPLE = yaml.safe_load("""
name: mine
kind: generic
url: "{ws}"
symbols: [BTC-USD, ETH-USD, SOL-USD]
subscribe: '{"type":"subscribe","channels":["ticker"],"product_ids":{symbols}}'
ping_message: '{"type":"ping"}'
ping_interval: 500ms
pong: {type: pong}
match: {type: ticker}
fields: {symbol: product_id, bid: best_bid, ask: best_ask, timestamp: time}
timestamp_unit: iso
""")
PINGS = {"ping_timeout": 1.5}  # the venue drops a client that has not pinged for 1.5 s


async def test_generic_feed_runs_against_the_strict_simulator(clock):
    async with venue_feed(clock, "generic", EXAMPLE, rate=10, options=PINGS) as h:
        symbols = list(h.feed.symbols)
        await h.wait(lambda: all(s.acknowledged for s in h.feed.symbols.values()), "acknowledged by first records")
        beats = h.feed.messages["heartbeat"]
        await h.wait(lambda: h.feed.messages["heartbeat"] >= beats + 6, "six ping periods answered", timeout=15)
        await h.flowing(*symbols)
        assert h.feed.connects == 1 and sum(h.feed.disconnects.values()) == 0
        assert not venue.rules(h.sim).drops
        assert sum(h.feed.errors.values()) == 0 and sum(h.feed.rejected.values()) == 0
        assert all(s.event_time > 1.6e9 for s in h.feed.symbols.values())  # ISO time parsed


async def test_a_field_path_that_never_appears_is_an_error_metric_and_a_log_line(clock, caplog):
    caplog.set_level(logging.WARNING, logger="exporter.feeds.runner")
    wrong = {**EXAMPLE, "fields": {"symbol": "product_id", "price": "last_trade_price", "timestamp": "time"}}
    async with venue_feed(clock, "generic", wrong, rate=20, options=PINGS) as h:
        await h.wait(lambda: h.feed.errors["missing_field"] >= 3, "missing_field errors counted")
        exposition = BookCollector(h.service.book).render(clock.time())
        value = re.search(r'feedwatch_feed_errors_total\{feed="mine",kind="missing_field"\} (\d+)', exposition)
        assert value and int(value.group(1)) >= 3
        logged = [r.getMessage() for r in caplog.records if "missing_field" in r.getMessage()]
        assert len(logged) == 1  # once, however many frames lack it
        assert "fields.price path 'last_trade_price' has not appeared" in logged[0]
        assert all(s.updates == 0 for s in h.feed.symbols.values())
        assert h.feed.is_up()  # a config mistake is loud, but it does not cost the connection


async def test_a_generic_client_that_stops_pinging_is_dropped(clock):
    silent = {k: v for k, v in EXAMPLE.items() if k not in ("ping_message", "pong")}
    async with venue_feed(clock, "generic", silent, options=PINGS) as h:
        await h.wait(lambda: venue.rules(h.sim).drops["no_ping"] >= 1, "dropped for not pinging")
        await h.wait(lambda: h.feed.disconnects["server_closed"] >= 1, "the disconnect counted")


def _worked_example() -> str:
    """The YAML of docs/configuration.md's generic worked example, as a user would copy it."""
    text = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    section = text[text.index("### Worked example: a feed of your own"):]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_the_documented_example_is_a_valid_config_and_the_one_tested_above(tmp_path):
    path = tmp_path / "feedwatch.yml"
    path.write_text(_worked_example())
    documented = load_file(str(path)).feeds[0]
    tested = load_data({"feeds": [{**EXAMPLE, "url": "ws://127.0.0.1:1", "ping_interval": "20s"}]}).feeds[0]
    assert dataclasses.replace(documented, url="x") == dataclasses.replace(tested, url="x")


def test_check_config_shows_the_binance_sharding(tmp_path):
    symbols = ", ".join(f"S{i:04d}USDT" for i in range(2500))
    path = tmp_path / "feedwatch.yml"
    path.write_text(f"feeds:\n  - name: binance\n    kind: binance\n    url: wss://stream.binance.com:9443\n"
                    f"    streams: [trade]\n    symbols: [{symbols}]\n" + _worked_example().replace("feeds:\n", ""))
    done = subprocess.run([sys.executable, "-m", "exporter.cli", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "binance (binance): 2500 symbol(s) on 3 connection(s)" in done.stdout
    assert "mine (generic): 3 symbol(s) on 1 connection(s)" in done.stdout
