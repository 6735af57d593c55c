"""A bot's event stream end to end on 127.0.0.1: trading simulator -> runner -> tracker -> /metrics.

Real sockets both ways: the simulator's ``trading`` dialect serves the bot's WebSocket, the
shared runner connects to it like any feed, and the exporter's HTTP app renders the result.
"""

from __future__ import annotations

import aiohttp
import pytest

from exporter.clock import SystemClock
from exporter.config import load_data
from exporter.web.app import create_app, serve
from exporter.service import Service
from exporter.simulator import trading as bot_sim
from exporter.simulator.server import Simulator
from exporter.trading.api import TRACKER
from tests.integration.feedharness import FAST
from tests.waiting import async_wait_for

BOT_KEY = "bot-key"


@pytest.fixture
async def stack(tmp_path):
    """(simulator, service, tracker, metrics URL): a trading feed with a restart-safe state file."""
    sim = Simulator("trading", ("BTCUSDT", "ETHUSDT"), rate=20, api_key=BOT_KEY, seed=3)
    await sim.start()
    config = load_data({"feeds": [{"name": "bot", "kind": "trading", "url": sim.ws_url, "api_key": BOT_KEY, **FAST}],
                        "trading": {"state_file": str(tmp_path / "trading.sqlite"),
                                    "accounts": [{"name": bot_sim.DEFAULT_ACCOUNT}]}}, {})
    clock = SystemClock()
    service = Service(config, clock, sweep_interval=0.05)
    await service.start()
    app = create_app(service.book, config, clock, service=service)
    runner, port = await serve(app, "127.0.0.1:0")
    try:
        yield sim, service, app[TRACKER], f"http://127.0.0.1:{port}/metrics"
    finally:
        await runner.cleanup()
        await service.stop()
        await sim.stop()


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            return await response.text()


def sample(text: str, prefix: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_events_flow_replays_count_once_and_scenarios_show(stack):
    sim, service, tracker, url = stack
    feed = service.book.feeds["bot"]
    account = tracker.accounts["demo"]
    await async_wait_for(lambda: feed.is_up() and account.trades["win"] + account.trades["loss"] >= 3,
                         what="connected and trading")
    assert sim.stats.auth_ok == 1  # the adapter sent the feed's api_key

    # The connection drops; the bot resends its recent events on the new one.
    duplicates_before = tracker.rejected["duplicate"]
    sim.fault("drop")
    await async_wait_for(lambda: feed.connects >= 2 and feed.is_up(), what="reconnected")
    await async_wait_for(lambda: tracker.rejected["duplicate"] > duplicates_before, what="resent events recognised")
    # An explicit replay of the last 200 events.
    duplicates_before = tracker.rejected["duplicate"]
    replayed = min(bot_sim.REPLAY_EVENTS, len(bot_sim.bot(sim, "demo").log))
    bot_sim.run_scenario(sim, "replay")
    await async_wait_for(lambda: tracker.rejected["duplicate"] >= duplicates_before + replayed,
                         what="the replay counted as duplicates")

    # Quiesce the bot, then every distinct event it ever logged is applied exactly once.
    sim.fault("stall_all")
    log = bot_sim.bot(sim, "demo").log
    distinct = {e["id"]: e for e in log}

    def applied() -> int:
        return sum(count for (name, _), count in tracker.events.items() if name == "demo")

    await async_wait_for(lambda: applied() == len(distinct), what="every distinct event applied once")
    trades = [e for e in distinct.values() if e["type"] == "trade"]
    assert sum(account.trades.values()) == len(trades)
    assert account.pnl_total == pytest.approx(sum(t["pnl"] - t["fees"] for t in trades), abs=1e-6)
    assert account.equity == [e for e in distinct.values() if e["type"] == "equity"][-1]["equity"]
    assert tracker.rejected["duplicate"] >= len(log) - len(distinct)

    text = await scrape(url)
    assert sample(text, 'feedwatch_feed_up{feed="bot",connection="0"}') == 1
    assert sample(text, 'feedwatch_trading_sharpe_ratio{account="demo"}') is not None  # from the bot's history
    assert sample(text, 'feedwatch_trading_positions_limit{account="demo"}') == 5
    assert sample(text, 'feedwatch_trading_position{account="demo",symbol="BTCUSDT",feed=""}') == 0.5

    # Scenarios: the bot's trouble shows in the metrics.
    sim.fault("resume")
    for name in ("drawdown", "kill_switch", "circuit_breaker", "losing_streak", "api_errors"):
        bot_sim.run_scenario(sim, name)

    async def troubled() -> bool:
        text = await scrape(url)
        return (sample(text, 'feedwatch_trading_drawdown_ratio{account="demo",window="current"}') >= 0.2
                and sample(text, 'feedwatch_trading_kill_switch_active{account="demo"}') == 1
                and sample(text, 'feedwatch_trading_circuit_breaker_open{account="demo"}') == 1
                and 'feedwatch_trading_circuit_breaker_info{account="demo",reason="volatility halt"} 1' in text
                and sample(text, 'feedwatch_trading_consecutive_losses{account="demo"}') >= 10
                and sample(text, 'feedwatch_trading_api_errors_total{account="demo"}') >= 10)

    await async_wait_for(troubled, what="every scenario visible in /metrics")
    bot_sim.run_scenario(sim, "recover")
    await async_wait_for(lambda: not account.kill_switch and not account.breaker_open, what="recovered")


async def test_scenarios_over_the_control_api():
    from exporter.simulator.control import ControlServer

    sims = [Simulator("trading", ("BTCUSDT",), rate=5), Simulator("polygon", ("AAPL",), rate=5)]
    controls = [ControlServer(sim) for sim in sims]
    try:
        for sim, control in zip(sims, controls):
            await sim.start()
            await control.start()
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{controls[0].url}/scenarios/kill_switch?account=desk") as response:
                body = await response.json()
                assert response.status == 200 and body["scenario"]["accounts"] == ["desk"]
            assert bot_sim.bot(sims[0], "desk").kill_switch
            assert bot_sim.bot(sims[0], "desk").log[-1]["reason"] == "operator stop"
            async with session.post(f"{controls[0].url}/scenarios/meteor") as response:
                assert response.status == 400 and "unknown trading scenario" in (await response.json())["error"]
            async with session.post(f"{controls[1].url}/scenarios/kill_switch") as response:
                assert response.status == 400 and "no scenarios" in (await response.json())["error"]
    finally:
        for sim, control in zip(sims, controls):
            await control.stop()
            await sim.stop()
