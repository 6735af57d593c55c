"""Sharded replicas, as real processes: three ``feedwatch run --shard i/3`` against one venue
simulator watch every symbol exactly once between them; restarted as four (``--shard i/4``) they
do again, and the symbols that moved all moved to the new shard.

Checked from both ends: each replica's /metrics (the symbols it renders, each updating, its
``feedwatch_shard_info``; ``promtool check metrics`` clean) and the venue's side (the simulator's subscriptions per connection:
disjoint, together every symbol, one connection per replica and feed it holds symbols of). The
``small`` feed has two symbols, so some shard holds none of it and must not connect to it; the
trading bot's stream, like the ``trading:`` section, belongs to shard 0 alone.
"""

from __future__ import annotations

import collections
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from exporter.sharding import owner
from tests.integration.replicas import (
    ExporterProcess, simulator_state, start_exporter, start_simulator, stop_popen, wait_ready,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

STOCKS = [f"S{i:02d}" for i in range(30)]
# Two symbols of a second feed, picked so that with 3 shards and with 4 at least one shard holds none.
SMALL = [s for s in (f"M{i}" for i in range(100))
         if owner("small", s, 3) == 0 and owner("small", s, 4) == 0][:2]

CONFIG = f"""
thresholds: {{degraded: 30s, stale: 60s, critical: 1h}}
feeds:
  - name: stocks
    kind: polygon
    url: ${{SIM_STOCKS_URL}}
    api_key: k
    channels: [Q]
    symbols: [{", ".join(STOCKS)}]
    reconnect: {{initial_delay: 200ms, max_delay: 1s}}
  - name: small
    kind: polygon
    url: ${{SIM_STOCKS_URL}}
    api_key: k
    channels: [Q]
    symbols: [{", ".join(SMALL)}]
    reconnect: {{initial_delay: 200ms, max_delay: 1s}}
  - name: bot
    kind: trading
    url: ${{SIM_BOT_URL}}
    reconnect: {{initial_delay: 200ms, max_delay: 1s}}
trading:
  state_file: ${{STATE_DIR}}/trading.sqlite
  accounts:
    - name: demo
      symbols: {{{STOCKS[0]}: stocks}}
"""

EVERY = {("stocks", s) for s in STOCKS} | {("small", s) for s in SMALL}


def watched(replica: ExporterProcess) -> dict[str, object]:
    """What one replica's /metrics says it watches."""
    samples = replica.samples()
    symbols = {(labels["feed"], labels["symbol"]): value for name, labels, value in samples
               if name == "feedwatch_symbol_updates_total"}
    return {
        "symbols": symbols,
        "feeds": {labels["feed"] for name, labels, _ in samples if name == "feedwatch_feed_info"},
        "shard": [(labels["shard"], labels["shards"]) for name, labels, _ in samples if name == "feedwatch_shard_info"],
        "trading": any(name.startswith("feedwatch_trading_") for name, _, _ in samples),
    }


def check_shards(replicas: list[ExporterProcess], sims: dict, count: int) -> dict[tuple[str, str], int]:
    """Every symbol watched (and updating) on exactly its owner; returns (feed, symbol) -> shard."""
    def all_flowing() -> list[dict[str, object]] | None:
        views = [watched(r) for r in replicas]
        flowing = all(v > 0 for view in views for v in view["symbols"].values())  # type: ignore[union-attr]
        return views if flowing else None

    views = wait_for(all_flowing, timeout=30, interval=0.2, what="every watched symbol updating on every replica")
    placed: dict[tuple[str, str], int] = {}
    for index, view in enumerate(views):
        assert view["shard"] == [(str(index), str(count))]
        mine = set(view["symbols"])  # type: ignore[arg-type]
        assert mine == {key for key in EVERY if owner(*key, count) == index}, f"shard {index}/{count}"
        for key in mine:
            assert key not in placed, f"{key} watched by shards {placed[key]} and {index}"
            placed[key] = index
        # A replica renders (and connects) only the feeds it holds symbols of; the bot is shard 0's.
        assert view["feeds"] == {feed for feed, _ in mine} | ({"bot"} if index == 0 else set())
        assert view["trading"] == (index == 0)
    assert set(placed) == EVERY, f"not watched: {sorted(EVERY - set(placed))}"

    # The venue's view: one connection per (replica, feed) share, disjoint, covering every symbol.
    expected_connections = sum(len(view["feeds"] - {"bot"}) for view in views)  # type: ignore[operator]
    state = wait_for(lambda: (s := simulator_state(sims["stocks"]))["connections_open"] == expected_connections
                     and s, timeout=15, what=f"{expected_connections} connections at the price venue")
    per_connection = [set(subs) for subs in state["sessions"]]
    counted = collections.Counter(s for subs in per_connection for s in subs)
    assert set(counted) == {s for _, s in EVERY} and set(counted.values()) == {1}, counted
    assert simulator_state(sims["bot"])["connections_open"] == 1, "the bot's stream: shard 0 only"

    # A bot asking the wrong replica about a symbol is told which shard has it (421), for a feed
    # that replica watches or keeps on standby alike.
    for feed, symbol in (("stocks", STOCKS[0]), ("small", SMALL[0])):
        for index, replica in enumerate(replicas):
            code, body = api_get(f"{replica.url}/api/v1/symbols/{feed}/{symbol}")
            if index == placed[(feed, symbol)]:
                assert code == 200 and body["symbol"] == symbol, body
            else:
                assert code == 421, (code, body)
                assert body["error"].startswith(f"{symbol!r} on feed {feed!r} belongs to shard "
                                                f"{placed[(feed, symbol)]} of {count}"), body
    return placed


def api_get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_three_shards_then_four_watch_every_symbol_exactly_once(tmp_path: Path):
    assert len(SMALL) == 2
    sims = {
        "stocks": start_simulator("stocks", ["--venue", "polygon", "--rate", "5", "--api-key", "k",
                                             "--seed", "3"], tmp_path),
        "bot": start_simulator("bot", ["--venue", "trading", "--symbols", STOCKS[0], "--rate", "2",
                                       "--seed", "4"], tmp_path),
    }
    config = tmp_path / "feedwatch.yml"
    config.write_text(CONFIG)
    env = {"SIM_STOCKS_URL": sims["stocks"].ws_url, "SIM_BOT_URL": sims["bot"].ws_url, "STATE_DIR": str(tmp_path)}
    replicas: list[ExporterProcess] = []
    try:
        for count in (3, 4):
            for replica in replicas:
                replica.stop()
            replicas = [start_exporter(config, tmp_path, f"shard-{i}-of-{count}", "--shard", f"{i}/{count}", env=env)
                        for i in range(count)]
            for replica in replicas:
                wait_ready(replica)
            try:
                placed = check_shards(replicas, sims, count)
                lint = subprocess.run(["promtool", "check", "metrics"], input=replicas[0].metrics().encode(),
                                      capture_output=True, timeout=60)
                assert lint.returncode == 0 and not lint.stdout and not lint.stderr, lint
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n" + "\n".join(r.describe() for r in replicas)) from None
            if count == 3:
                before = placed
        moved = {key for key in EVERY if before[key] != placed[key]}
        assert moved and {placed[key] for key in moved} == {3}, "symbols move only to the new shard"
    finally:
        for replica in replicas:
            replica.stop()
        for sim in sims.values():
            stop_popen(sim.popen)
