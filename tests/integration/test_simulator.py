"""The simulator on its own: the Polygon dialect on the wire, the control API, the CLI.

Clients here are plain aiohttp WebSocket/HTTP clients speaking the protocol by hand (not the
feedwatch runner), so the simulator is checked independently of the code it tests.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

import aiohttp
import pytest

from exporter.simulator.control import ControlServer
from exporter.simulator.server import Simulator
from tests.waiting import async_wait_for


@pytest.fixture
async def sim():
    simulator = Simulator("polygon", ("AAPL", "MSFT"), rate=50, api_key="K")
    await simulator.start()
    control = ControlServer(simulator)
    await control.start()
    simulator.control_url = control.url  # type: ignore[attr-defined]
    yield simulator
    await control.stop()
    await simulator.stop()


async def read_json(ws) -> list:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def login(ws, key="K") -> list:
    assert await read_json(ws) == [{"ev": "status", "status": "connected", "message": "Connected Successfully"}]
    await ws.send_str(json.dumps({"action": "auth", "params": key}))
    return await read_json(ws)


async def test_polygon_dialect_auth_subscribe_stream_unsubscribe(sim):
    async with aiohttp.ClientSession() as http, http.ws_connect(sim.ws_url) as ws:
        await ws.send_str('{"action":"subscribe","params":"T.AAPL"}')   # before auth: refused
        assert (await read_json(ws))[0]["status"] == "connected"
        assert (await read_json(ws))[0] == {"ev": "status", "status": "error", "message": "not authorized"}
        await ws.send_str(json.dumps({"action": "auth", "params": "K"}))
        assert (await read_json(ws))[0]["status"] == "auth_success"

        await ws.send_str('{"action":"subscribe","params":"T.AAPL,Q.AAPL,X.MSFT"}')
        acks = await read_json(ws)
        assert [a["message"] for a in acks] == [
            "subscribed to: T.AAPL", "subscribed to: Q.AAPL", "invalid subscription param 'X.MSFT'"]
        events = await read_json(ws)
        assert {e["ev"] for e in events} == {"T", "Q"} and {e["sym"] for e in events} == {"AAPL"}
        trade = next(e for e in events if e["ev"] == "T")
        quote = next(e for e in events if e["ev"] == "Q")
        assert trade["p"] > 0 and quote["bp"] < quote["ap"]
        assert 1e12 < trade["t"] < 1e13                    # Unix milliseconds

        await ws.send_str('{"action":"unsubscribe","params":"T.AAPL,Q.AAPL"}')
        while True:  # data frames may still be in flight before the acknowledgement
            frame = await read_json(ws)
            if frame[0]["ev"] == "status":
                break
        assert [a["message"] for a in frame] == ["unsubscribed to: T.AAPL", "unsubscribed to: Q.AAPL"]
        assert sim.state()["subscriptions"] == []


async def test_wrong_key_is_refused_and_closed(sim):
    async with aiohttp.ClientSession() as http, http.ws_connect(sim.ws_url) as ws:
        reply = await login(ws, key="wrong")
        assert reply == [{"ev": "status", "status": "auth_failed", "message": "authentication failed"}]
        closing = await asyncio.wait_for(ws.receive(), 5)
        assert closing.type is aiohttp.WSMsgType.CLOSE
    assert sim.stats.auth_rejected == 1 and sim.stats.auth_ok == 0


async def test_control_api_switches_faults_and_reports_counts(sim):
    base = sim.control_url
    async with aiohttp.ClientSession() as http, http.ws_connect(sim.ws_url) as ws:
        await login(ws)
        await ws.send_str('{"action":"subscribe","params":"Q.AAPL,Q.MSFT"}')
        await async_wait_for(lambda: sim.stats.sent.get("AAPL", 0) > 5 and sim.stats.sent.get("MSFT", 0) > 5,
                             what="both symbols streaming")

        async with http.post(f"{base}/faults/stall?symbol=AAPL") as resp:
            assert resp.status == 200
            state = await resp.json()
        assert state["faults"]["stalled"] == ["AAPL"]
        frozen = state["sent"]["AAPL"]
        msft = state["sent"]["MSFT"]
        await async_wait_for(lambda: sim.stats.sent["MSFT"] > msft + 10, what="MSFT keeps streaming")
        async with http.get(f"{base}/state") as resp:
            state = await resp.json()
        assert state["sent"]["AAPL"] == frozen              # not one more AAPL event
        assert state["connections_open"] == 1 and state["auth_ok"] == 1

        async with http.post(f"{base}/faults/nonsense") as resp:
            assert resp.status == 400
            assert "unknown fault" in (await resp.json())["error"]
        async with http.post(f"{base}/faults/stall") as resp:   # stall needs a symbol
            assert resp.status == 400

        async with http.post(f"{base}/faults/resume") as resp:
            assert (await resp.json())["faults"]["stalled"] == []
        await async_wait_for(lambda: sim.stats.sent["AAPL"] > frozen, what="AAPL streams again")

        async with http.post(f"{base}/faults/drop") as resp:
            assert resp.status == 200
        msg = await asyncio.wait_for(ws.receive(), 5)
        while msg.type is aiohttp.WSMsgType.TEXT:           # frames already on the wire
            msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)  # no close frame
    await async_wait_for(lambda: sim.stats.connections_open == 0, what="connection gone")


async def test_freeze_skew_and_resume_over_the_control_api(sim):
    """freeze: the symbol's trade, bid and ask stop moving while its updates keep coming (new
    times, new sequence numbers); skew: its prices are off by the ratio asked; resume with the
    symbol clears both."""
    base = sim.control_url
    async with aiohttp.ClientSession() as http, http.ws_connect(sim.ws_url) as ws:
        await login(ws)
        await ws.send_str('{"action":"subscribe","params":"T.AAPL,Q.AAPL"}')
        await read_json(ws)
        async with http.post(f"{base}/faults/freeze?symbol=AAPL") as resp:
            assert (await resp.json())["faults"]["frozen"] == ["AAPL"]
        events: list[dict] = []
        while len(events) < 40:
            events += [e for e in await read_json(ws) if e.get("ev") in ("T", "Q")]
        later = events[10:]                                   # well after the switch
        assert len({(e["ev"], e.get("p"), e.get("bp"), e.get("ap")) for e in later}) == 2   # one trade, one quote
        assert len({e["t"] for e in later}) > 5 and len({e["q"] for e in later}) > 5
        async with http.post(f"{base}/faults/skew?symbol=AAPL&value=1.5") as resp:
            assert (await resp.json())["faults"]["skewed"] == {"AAPL": 1.5}
        async with http.post(f"{base}/faults/skew?symbol=AAPL&value=zero") as resp:
            assert resp.status == 400 and "value must be a number" in (await resp.json())["error"]
        async with http.post(f"{base}/faults/garbage?value=2") as resp:
            assert resp.status == 400 and "takes no value" in (await resp.json())["error"]
        async with http.post(f"{base}/faults/resume?symbol=AAPL") as resp:
            faults = (await resp.json())["faults"]
        assert faults["frozen"] == [] and faults["skewed"] == {}
    # The skew itself, on the market every dialect ticks from (the same instant, two venues).
    other = Simulator("polygon", ("AAPL",), seed=99)
    sim.fault("skew", "AAPL", 1.02)
    assert sim.market.tick("AAPL", 1e9).price / other.market.tick("AAPL", 1e9).price == pytest.approx(1.02, rel=0.005)


async def test_two_venues_agree_on_a_symbols_price():
    """Every simulator follows one anchor per symbol (with its own small noise), so the same
    instrument on two simulated venues shows no cross-feed deviation unless a fault makes one."""
    a, b = Simulator("polygon", seed=1), Simulator("binance", seed=2)
    for i in range(3000):
        now = 1_800_000_000 + i * 0.1
        assert a.market.tick("BTCUSDT", now).price / b.market.tick("BTCUSDT", now).price == pytest.approx(1, abs=0.005)


async def test_flood_stamps_each_batch_when_it_was_due(sim):
    """A client that stops reading falls behind: the batches it gets next carry the times they were
    due, ever older, and nothing piles up in the simulator (TCP holds the frames back)."""
    async with aiohttp.ClientSession() as http, http.ws_connect(sim.ws_url, max_msg_size=0) as ws:
        await login(ws)
        await ws.send_str('{"action":"subscribe","params":"Q.AAPL,Q.MSFT"}')
        await read_json(ws)
        async with http.post(f"{sim.control_url}/faults/flood?value=200000") as resp:
            assert (await resp.json())["faults"]["flood"] == 200000
        loop = asyncio.get_running_loop()
        first = [e for e in await read_json(ws) if e.get("ev") == "Q"]
        await asyncio.sleep(1.5)                              # not reading: frames wait in the socket
        behind = []
        started = loop.time()
        while loop.time() - started < 0.5:                    # read what waited, and on
            behind = [e for e in await read_json(ws) if e.get("ev") == "Q"] or behind
        assert behind and len(behind) >= 100                  # batches of many events
        assert time.time() - behind[0]["t"] / 1000 > 1.0      # stamped when due, long ago
        assert {e["sym"] for e in behind} == {"AAPL", "MSFT"} and first
        assert sim.stats.flood_frames > 0
        sim.fault("resume")


async def test_ignore_pings_fault_stops_pongs(sim):
    async with aiohttp.ClientSession() as http, http.ws_connect(sim.ws_url, autoping=False) as ws:
        await login(ws)
        await ws.ping(b"one")
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"one")
        sim.fault("ignore_pings")
        await ws.ping(b"two")
        await async_wait_for(lambda: sim.stats.pings_ignored == 1, what="ping ignored")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.receive(), 0.3)      # nothing comes back (no subscriptions)


async def test_simulate_command_prints_urls_and_applies_faults_from_the_command_line():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter.cli", "simulate", "--venue", "polygon", "--symbols", "AAPL,MSFT",
        "--rate", "20", "--port", "0", "--control-port", "0", "--api-key", "K", "--fault", "stall:AAPL",
        "--fault", "garbage", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        ws_line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
        control_line = (await asyncio.wait_for(proc.stdout.readline(), 5)).decode().strip()
        assert ws_line.startswith("ws: ws://127.0.0.1:")
        assert control_line.startswith("control: http://127.0.0.1:")
        ws_url, control_url = ws_line.split(" ", 1)[1], control_line.split(" ", 1)[1]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{control_url}/state") as resp:
                state = await resp.json()
            assert state["faults"]["stalled"] == ["AAPL"] and state["faults"]["garbage"] is True
            async with http.ws_connect(ws_url) as ws:
                await login(ws, "K")
                await ws.send_str('{"action":"subscribe","params":"Q.AAPL,Q.MSFT"}')
                symbols, garbage = set(), 0
                while garbage < 2 or "MSFT" not in symbols:
                    msg = await asyncio.wait_for(ws.receive(), 5)
                    try:
                        symbols.update(e.get("sym") for e in json.loads(msg.data) if e.get("ev") == "Q")
                    except ValueError:
                        garbage += 1
                assert "AAPL" not in symbols
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 10)
    assert rc == 0


async def test_simulate_command_rejects_an_unknown_fault():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter.cli", "simulate", "--fault", "meltdown",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert b"unknown fault 'meltdown'" in err


async def test_simulate_command_applies_scenarios_from_the_command_line():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter.cli", "simulate", "--venue", "trading", "--symbols", "BTCUSDT",
        "--rate", "20", "--api-key", "K", "--scenario", "kill_switch:desk",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        ws_url = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().split(" ", 1)[1].strip()
        control_url = (await asyncio.wait_for(proc.stdout.readline(), 5)).decode().split(" ", 1)[1].strip()
        async with aiohttp.ClientSession() as http:
            async with http.get(control_url) as resp:
                assert "POST /scenarios/kill_switch[?account=ACCOUNT]" in await resp.text()
            async with http.ws_connect(f"{ws_url}?account=desk") as ws:
                await ws.send_str('{"type":"auth","token":"K"}')
                # The desk's stream carries the switch thrown before anyone connected.
                async def kill_switch_event() -> dict:
                    while True:
                        for event in await read_json(ws):
                            if event["type"] == "safety" and event.get("kill_switch"):
                                return event

                safety = await asyncio.wait_for(kill_switch_event(), 10)
                assert (safety["account"], safety["reason"]) == ("desk", "operator stop")
            async with http.get(f"{control_url}/state") as resp:
                assert (await resp.json())["connections_total"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 10)
    assert rc == 0


@pytest.mark.parametrize("argv, message", [
    (["--venue", "trading", "--scenario", "meteor"], b"unknown trading scenario 'meteor' (known: drawdown,"),
    (["--venue", "polygon", "--scenario", "kill_switch"], b"the polygon dialect has no scenarios"),
])
async def test_simulate_command_rejects_a_scenario_the_dialect_lacks(argv, message):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter.cli", "simulate", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert message in err
