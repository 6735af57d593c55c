"""exporter.Monitor: freshness checks, trading events, /metrics from the bot's process, the example."""

from __future__ import annotations

import importlib.util
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from exporter import Monitor
from exporter.config import ConfigError
from exporter.web.app import serve

ROOT = Path(__file__).resolve().parents[2]
TRADING = {"accounts": [{"name": "main", "symbols": {"BTCUSDT": "binance"}}]}


def test_freshness_follows_the_health_model(clock):
    monitor = Monitor(feeds={"binance": ["BTCUSDT"]}, thresholds={"degraded": "10s", "stale": "30s"}, clock=clock)
    assert not monitor.is_fresh("binance", "BTCUSDT")          # subscribed, no price yet
    assert monitor.update_price("binance", "BTCUSDT", 43_000.0, ts=clock.time() * 1000)
    assert monitor.is_fresh("binance", "BTCUSDT")
    clock.advance(5)
    assert not monitor.is_fresh("binance", "BTCUSDT", max_staleness=2)
    clock.advance(10)
    view = monitor.check("binance", "BTCUSDT")
    assert (view.state, view.fresh, view.price, view.staleness_seconds) == ("degraded", False, 43_000.0, 15.0)
    clock.advance(20)
    assert monitor.check("binance", "BTCUSDT").state == "stale"
    assert not monitor.update_price("binance", "BTCUSDT", -1.0)  # refused and counted
    assert monitor.book.feeds["binance"].rejected["nonpositive_price"] == 1
    assert monitor.update_price("binance", "SOLUSDT", 150.0)       # a new symbol joins the feed
    assert monitor.is_fresh("binance", "SOLUSDT")
    assert not monitor.is_fresh("binance", "NOPE")
    with pytest.raises(KeyError, match="unknown feed"):
        monitor.update_price("kraken", "BTCUSDT", 1.0)


def test_trading_events_ids_and_errors(clock):
    monitor = Monitor(feeds={"binance": ["BTCUSDT"]}, trading=TRADING, clock=clock)
    assert monitor.record_equity("main", 1000.0)
    assert monitor.record_trade("main", "BTCUSDT", "long", quantity=1, entry_price=10, exit_price=9,
                                pnl=-1.0, fees=0.5, id="t1")
    assert not monitor.record_trade("main", "BTCUSDT", "long", quantity=1, entry_price=10, exit_price=9,
                                    pnl=-1.0, id="t1")  # a replayed id
    assert monitor.record_positions("main", {"BTCUSDT": 0.2}, limit=3)
    assert monitor.set_kill_switch("main", True, "manual")
    assert monitor.set_circuit_breaker("main", True, "vol")
    assert monitor.record_api_call("main", "GET /x", ok=False, latency=0.1)
    clock.advance(1)
    assert monitor.record_equity("main", 950.0)
    account = monitor.account("main")
    assert (account.pnl_total, account.losing_streak, account.drawdown()) == (-1.5, 1, 0.05)
    assert account.kill_switch and account.breaker_open and account.api_errors == 1
    with pytest.raises(ValueError, match="side"):
        monitor.record_trade("main", "BTCUSDT", "up", quantity=1, entry_price=1, exit_price=1, pnl=0)
    with pytest.raises(ValueError, match="unknown_account"):
        monitor.record_equity("ghost", 1.0)
    text = monitor.render()
    assert 'feedwatch_trading_position{account="main",symbol="BTCUSDT",feed="binance"} 0.2' in text
    assert 'feedwatch_symbol_state{feed="binance",symbol="BTCUSDT"} 0' in text


def test_configuration_errors_are_reported_with_paths():
    with pytest.raises(ConfigError) as caught:
        Monitor(feeds={"binance": ["BTCUSDT"]}, thresholds={"stale": "soon"},
                trading={"accounts": [{"name": "main", "symbols": {"ETHUSDT": "binance"}}]})
    text = "\n".join(caught.value.errors)
    assert "thresholds.stale: invalid duration 'soon'" in text
    assert "trading.accounts[0].symbols.ETHUSDT: feed 'binance' does not watch 'ETHUSDT'" in text


def test_state_survives_a_restart_of_the_bot(tmp_path, clock):
    trading = {**TRADING, "state_file": str(tmp_path / "bot.sqlite")}
    with Monitor(feeds={"binance": ["BTCUSDT"]}, trading=trading, clock=clock) as monitor:
        monitor.record_equity("main", 1000.0, id="e1")
        monitor.record_equity("main", 900.0, id="e2")
    with Monitor(feeds={"binance": ["BTCUSDT"]}, trading=trading, clock=clock) as monitor:
        assert not monitor.record_equity("main", 900.0, id="e2")   # remembered across the restart
        assert monitor.account("main").drawdown() == pytest.approx(0.1)


def test_metrics_served_from_a_thread(clock):
    monitor = Monitor(feeds={"binance": ["BTCUSDT"]}, trading=TRADING, clock=clock)
    try:
        port = monitor.serve()
        monitor.record_equity("main", 1234.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert 'feedwatch_trading_equity{account="main"} 1234.5' in response.read().decode()
        # OpenMetrics and name[] as on the exporter's own /metrics (exporter/exposition.py).
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics?name[]=feedwatch_trading_equity&name[]=feedwatch_feed_connects",
            headers={"Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
            families = list(parse_openmetrics(response.read().decode()))
        assert [f.name for f in families] == ["feedwatch_feed_connects", "feedwatch_trading_equity"]
        assert families[1].samples[0].value == 1234.5
    finally:
        monitor.close()


async def test_the_full_app_shares_the_monitors_tracker(clock):
    monitor = Monitor(feeds={"binance": ["BTCUSDT"]}, trading=TRADING, clock=clock)
    runner, port = await serve(monitor.app(), "127.0.0.1:0")
    try:
        monitor.record_equity("main", 777.0)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
        assert text.count('feedwatch_trading_equity{account="main"} 777.0') == 1
    finally:
        await runner.cleanup()
        monitor.close()


def test_the_example_skips_the_stale_position(clock):
    spec = importlib.util.spec_from_file_location("monitor_example", ROOT / "examples" / "monitor_position_check.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    lines = example.run(clock, wait=clock.advance)
    assert "round 0: ETHUSDT: price 2,300.00, stop 2,450: hold" in lines
    assert "round 3: ETHUSDT: SKIPPED, price is stale (3.0s old)" in lines
    assert all("SKIPPED" not in line for line in lines if "BTCUSDT:" in line)
    assert 'feedwatch_symbol_state{feed="binance",symbol="ETHUSDT"} 2' in lines
    assert 'feedwatch_trading_position{account="main",symbol="ETHUSDT",feed="binance"} -4.0' in lines


def test_an_event_the_state_file_cannot_keep_raises_and_is_not_applied(clock):
    from exporter.trading.store import MemoryStore, StoreError

    class FullDisk(MemoryStore):
        def commit(self) -> None:
            raise StoreError("trading state file /x: COMMIT failed: database or disk is full")

    monitor = Monitor(feeds={"binance": ["BTCUSDT"]}, trading=TRADING, clock=clock)
    monitor.tracker.store = FullDisk()
    with pytest.raises(StoreError, match="disk is full"):
        monitor.set_kill_switch("main", True)
    assert monitor.account("main").kill_switch is False
