"""Configuration reload: SIGHUP to a real ``feedwatch run``, ``POST /-/reload`` behind basic auth,
and what a reload keeps (symbol state, sockets) and replaces (feeds, connections, rules).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
from pathlib import Path

import aiohttp
import bcrypt
import yaml

from exporter.commands.run import Exporter
from exporter.config import load_data, load_file
from exporter.simulator.server import Simulator
from exporter.web.webaccess import WebAccess
from tests.integration.feedharness import API_KEY, feed_config, simulated_feed
from tests.integration.test_cli import FEEDWATCH
from tests.waiting import async_wait_for, free_port


def sample(text: str, name: str, **labels: str) -> float | None:
    """One sample's value from exposition text (None when absent)."""
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + selector + '}') if labels else ''} (\S+)$"
    match = re.search(pattern, text, re.M)
    return float(match.group(1)) if match else None


# --- what Service.apply keeps and replaces (in process, real sockets) ---------------------------

async def test_an_updated_feed_keeps_its_socket_and_its_symbols_state(clock):
    async with simulated_feed(clock, symbols=("AAPL", "MSFT"), sim_symbols=("AAPL", "MSFT", "NVDA")) as h:
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscribed")
        await h.flowing("AAPL", "MSFT")
        aapl = h.feed.symbols["AAPL"]
        before = aapl.updates
        config = load_data({"thresholds": {"degraded": "100s"},
                            "feeds": [feed_config(h.sim.ws_url, symbols=("AAPL", "NVDA"), ping_interval="200ms")]})
        assert h.service.check(config) == []
        done = await h.service.apply(config)
        assert done == ["feed stocks: settings reloaded, connections kept; symbols +NVDA -MSFT"]

        await h.wait(lambda: h.acked("NVDA"), "NVDA subscribed on the same socket")
        await h.flowing("AAPL", "NVDA")
        assert "MSFT" not in h.feed.symbols
        assert h.feed.symbols["AAPL"] is aapl and aapl.updates > before   # same state, counting on
        assert aapl.th.degraded == 100.0                                  # the new thresholds
        assert h.feed.connects == 1 and h.sim.stats.connections_total == 1
        assert h.runner.config is config.feeds[0] and h.service.config is config


async def test_a_feed_whose_url_changed_reconnects_and_keeps_its_symbols_state(clock):
    async with simulated_feed(clock) as h:
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscribed")
        await h.flowing("AAPL", "MSFT")
        aapl = h.feed.symbols["AAPL"]
        other = Simulator("polygon", ("AAPL", "MSFT"), rate=40, api_key=API_KEY)
        await other.start()
        try:
            old_runner = h.runner
            config = load_data({"feeds": [feed_config(other.ws_url)]})
            done = await h.service.apply(config)
            assert done == ["feed stocks: reconnected (url changed)"]
            assert h.runner is not old_runner
            await h.wait(lambda: h.feed.is_up() and h.acked("AAPL", "MSFT"), "connected to the new url")
            before = aapl.updates
            await h.wait(lambda: aapl.updates >= before + 2, "updates from the new venue")
            assert h.feed.symbols["AAPL"] is aapl
            assert h.feed.disconnects["reload"] == 1 and h.feed.connects == 2
            assert other.stats.connections_total == 1
            await h.wait(lambda: h.sim.stats.connections_open == 0, "the old venue's socket closed")
        finally:
            await h.service.stop()
            await other.stop()


async def test_feeds_added_and_removed(clock):
    async with simulated_feed(clock) as h:
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscribed")
        config = load_data({"feeds": [feed_config(h.sim.ws_url, name="second", symbols=("MSFT",))]})
        done = await h.service.apply(config)
        assert done == ["feed stocks: removed", "feed second: added"]
        assert list(h.service.book.feeds) == ["second"] and list(h.service.runners) == ["second"]
        second = h.service.book.feeds["second"]
        await h.wait(lambda: second.is_up() and second.symbols["MSFT"].updates > 0, "the new feed streaming")
        await h.wait(lambda: h.sim.stats.connections_open == 1, "the removed feed's socket closed")


# --- POST /-/reload (in process, behind basic auth) -------------------------------------------

TRADING = {"accounts": [{"name": "main"}], "api": {"token": "t0ken"}, "limits": {"consecutive_losses": 5}}


def write(path: Path, data: dict) -> None:
    path.write_text(yaml.safe_dump(data))


async def test_post_reload_applies_the_file_behind_basic_auth(tmp_path, clock):
    sim = Simulator("polygon", ("AAPL", "MSFT"), rate=40, api_key=API_KEY)
    await sim.start()
    path = tmp_path / "feedwatch.yml"
    original = {"listen": "127.0.0.1:0", "feeds": [feed_config(sim.ws_url, symbols=["AAPL"])], "trading": TRADING}
    write(path, original)
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  ops: '{bcrypt.hashpw(b'pw', bcrypt.gensalt(rounds=4)).decode()}'\n")
    exporter = Exporter(load_file(str(path)), WebAccess(str(web)), clock,
                        load=lambda: load_file(str(path)), source=str(path))
    await exporter.start()
    auth = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
    url = f"{exporter.base_url}/-/reload"
    try:
        async with aiohttp.ClientSession() as http:
            async def metrics() -> str:
                async with http.get(f"{exporter.base_url}/metrics", headers=auth) as resp:
                    return await resp.text()

            async def post(headers=auth) -> tuple[int, str]:
                async with http.post(url, headers=headers) as resp:
                    return resp.status, await resp.text()

            stocks = exporter.service.book.feeds["stocks"]
            await async_wait_for(lambda: stocks.symbols["AAPL"].updates > 2, what="AAPL streaming")
            text = await metrics()
            assert sample(text, "feedwatch_config_last_reload_successful") == 1
            started = sample(text, "feedwatch_config_last_reload_success_timestamp_seconds")
            assert started == clock.time()
            assert sample(text, "feedwatch_trading_limit_consecutive_losses", account="main") == 5

            # The route: behind the web config's basic auth, POST or PUT only.
            assert (await post(headers={}))[0] == 401
            async with http.get(url, headers=auth) as resp:
                assert resp.status == 405

            # A valid change: a symbol, a threshold, a trading limit. 200, applied, state kept.
            aapl = stocks.symbols["AAPL"]
            clock.advance(60)
            write(path, {**original, "thresholds": {"degraded": "90s"},
                         "feeds": [feed_config(sim.ws_url, symbols=["AAPL", "MSFT"])],
                         "trading": {**TRADING, "limits": {"consecutive_losses": 7}}})
            assert await post() == (200, "configuration reloaded\n")
            text = await metrics()
            assert sample(text, "feedwatch_config_last_reload_successful") == 1
            assert sample(text, "feedwatch_config_last_reload_success_timestamp_seconds") == started + 60
            assert sample(text, "feedwatch_trading_limit_consecutive_losses", account="main") == 7
            assert stocks.symbols["AAPL"] is aapl and aapl.th.degraded == 90
            await async_wait_for(lambda: stocks.symbols["MSFT"].updates > 0, what="MSFT added and streaming")
            assert stocks.connects == 1

            # An invalid file: 500 naming every problem by its path; the running config stays.
            write(path, {**original, "feeds": [{**feed_config(sim.ws_url), "symbls": ["X"],
                                                "heartbeat_timeout": "soon"}]})
            status, body = await post()
            assert status == 500
            assert "feeds[0].symbls: unknown key" in body and "feeds[0].heartbeat_timeout: invalid duration" in body
            text = await metrics()
            assert sample(text, "feedwatch_config_last_reload_successful") == 0
            assert sample(text, "feedwatch_config_last_reload_success_timestamp_seconds") == started + 60
            assert sample(text, "feedwatch_trading_limit_consecutive_losses", account="main") == 7
            assert set(stocks.symbols) == {"AAPL", "MSFT"}

            # Valid YAML that only a restart can apply: refused whole, with the reason.
            write(path, {**original, "listen": "127.0.0.1:1", "feeds": [feed_config(sim.ws_url, symbols=["AAPL"])]})
            status, body = await post()
            assert status == 500 and "listen: changed from '127.0.0.1:0' to '127.0.0.1:1'" in body
            assert set(stocks.symbols) == {"AAPL", "MSFT"}

            write(path, original)   # back to the start (PUT works too): successful again, MSFT gone
            async with http.put(url, headers=auth) as resp:
                assert resp.status == 200
            assert sample(await metrics(), "feedwatch_config_last_reload_successful") == 1
            assert set(stocks.symbols) == {"AAPL"} and stocks.symbols["AAPL"] is aapl
    finally:
        await exporter.stop()
        await sim.stop()


# --- SIGHUP to a real `feedwatch run` ---------------------------------------------------------

async def test_sighup_reloads_a_running_exporter_and_survives_a_bad_file(tmp_path):
    sim = Simulator("polygon", ("AAPL", "MSFT", "NVDA"), rate=20, api_key="K")
    await sim.start()
    path = tmp_path / "feedwatch.yml"
    feed = {"name": "stocks", "kind": "polygon", "url": sim.ws_url, "api_key": "${TEST_KEY}",
            "symbols": ["AAPL", "MSFT"], "reconnect": {"initial_delay": "100ms", "max_delay": "1s"}}
    write(path, {"feeds": [feed]})
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *FEEDWATCH, "run", "-c", str(path), "--web.listen-address", f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "TEST_KEY": "K"})
    lines: list[str] = []

    async def collect() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            lines.append(line.decode())

    reader = asyncio.create_task(collect())
    try:
        async with aiohttp.ClientSession() as http:
            async def metrics() -> str:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    return await resp.text() if resp.status == 200 else ""

            async def scrape_until(what: str, predicate) -> str:
                async def check():
                    text = await metrics()
                    return text if predicate(text) else None
                return await async_wait_for(check, timeout=20, what=what)

            def updates(text: str, symbol: str) -> float | None:
                return sample(text, "feedwatch_symbol_updates_total", feed="stocks", symbol=symbol)

            text = await scrape_until("AAPL and MSFT updating",
                                      lambda t: (updates(t, "AAPL") or 0) > 2 and (updates(t, "MSFT") or 0) > 0)
            assert sample(text, "feedwatch_config_last_reload_successful") == 1
            started = sample(text, "feedwatch_config_last_reload_success_timestamp_seconds")

            # NVDA in, MSFT out; AAPL stays.
            aapl = updates(await metrics(), "AAPL")
            write(path, {"feeds": [{**feed, "symbols": ["AAPL", "NVDA"]}]})
            proc.send_signal(signal.SIGHUP)
            text = await scrape_until("NVDA updating after SIGHUP", lambda t: (updates(t, "NVDA") or 0) > 0)
            assert updates(text, "MSFT") is None                 # removed: its series are gone
            assert updates(text, "AAPL") >= aapl                  # kept: its counter did not reset
            assert sample(text, "feedwatch_feed_connects_total", feed="stocks") == 1   # same socket
            assert sample(text, "feedwatch_config_last_reload_successful") == 1
            assert sample(text, "feedwatch_config_last_reload_success_timestamp_seconds") > started
            reloaded_at = sample(text, "feedwatch_config_last_reload_success_timestamp_seconds")

            # A broken file: the process keeps running on the old configuration and says why.
            path.write_text("feeds:\n  - name: stocks\n    kind: polygon\n    url: x\n    symbls: [AAPL]\n"
                            "thresholds: {degraded: 3q}\n")
            proc.send_signal(signal.SIGHUP)
            text = await scrape_until("the failed reload in the metrics",
                                      lambda t: sample(t, "feedwatch_config_last_reload_successful") == 0)
            assert sample(text, "feedwatch_config_last_reload_success_timestamp_seconds") == reloaded_at
            assert (updates(text, "NVDA") or 0) > 0 and updates(text, "MSFT") is None
            await async_wait_for(lambda: any("feeds[0].symbls: unknown key" in line for line in lines),
                                 what="the unknown key logged with its path")
            assert any("thresholds.degraded: invalid duration '3q'" in line for line in lines)
            assert proc.returncode is None
            before = updates(text, "AAPL")
            await scrape_until("still streaming", lambda t: (updates(t, "AAPL") or 0) > before)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = await asyncio.wait_for(proc.wait(), 15)
        except asyncio.TimeoutError:
            proc.kill()
            rc = await proc.wait()
        await reader
        await sim.stop()
    assert rc == 0, "".join(lines)
