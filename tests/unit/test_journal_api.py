"""The journal, the trading view and the recorder over HTTP, and their /metrics lines.

A real ``Service`` (not started: no sockets to venues) gives the app its journal, recorder and
renderers exactly as ``feedwatch run`` does; requests go through aiohttp's test client.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from exporter.clock import FakeClock
from exporter.config import load_data
from exporter.service import Service
from exporter.web.app import Settings, create_app, notify_reload

TOKEN = "t"


def config(tmp_path: Path, **top):
    return load_data({
        "feeds": [{"name": "stocks", "kind": "polygon", "url": "wss://x.invalid", "api_key": "k",
                   "symbols": ["AAPL", "MSFT"]}],
        "trading": {"accounts": [{"name": "main"}], "api": {"token": TOKEN}},
        "journal": {"path": str(tmp_path / "journal.sqlite"), "flush_interval": "20ms", "replica": "r1"},
        **top}, environ={})


@pytest.fixture
async def running(tmp_path: Path, clock: FakeClock):
    service = Service(config(tmp_path), clock)
    # What Service.start does for the journal, without connecting the feed.
    from exporter.trading.tracker import attach, detach

    tracker = attach(service.config, clock.time())
    service.journal.tracker = tracker
    tracker.listeners.append(service.journal.on_trading)
    await service.journal.start()
    app = create_app(service.book, service.config, clock, service=service, settings=Settings(history_interval=0.05))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield service, client, clock
    finally:
        await client.close()
        await service.journal.stop()
        detach(service.config)


async def test_incidents_are_listed_with_their_filters(running):
    service, client, clock = running
    feed = service.book.feeds["stocks"]
    feed.connected("0", clock.time())
    for symbol in ("AAPL", "MSFT"):
        feed.record(symbol, 10.0, 0, clock.time(), quote=True)
    clock.advance(200)
    feed.record("MSFT", 10.0, 0, clock.time(), quote=True)
    service.book.sweep(clock.time())                                  # AAPL degraded
    feed.disconnected("0", "network_error", clock.advance(1))         # the feed down
    assert await service.journal.writer.drained(10)

    resp = await client.get("/api/v1/incidents")
    answer = await resp.json()
    assert resp.status == 200 and answer["source"] == "sqlite" and not answer["partial"]
    assert [(i["kind"], i["symbol"]) for i in answer["incidents"]] == [("feed", ""), ("symbol", "AAPL")]
    resp = await client.get("/api/v1/incidents", params={"symbol": "AAPL", "open": "true", "since": "5m"})
    assert [i["level"] for i in (await resp.json())["incidents"]] == ["degraded"]
    resp = await client.get("/api/v1/incidents", params={"feed": "stocks", "kind": "feed", "open": "false"})
    assert (await resp.json())["incidents"] == []
    since = clock.time() + 60                                         # nothing active after the future
    resp = await client.get("/api/v1/incidents", params={"since": str(since), "open": "false"})
    assert (await resp.json())["incidents"] == []
    for bad, message in ((("open", "maybe"), "open: expected true or false"), (("since", "soon"), "since:"),
                         (("kind", "x"), "kind: expected one of"), (("color", "red"), "unknown parameter")):
        resp = await client.get("/api/v1/incidents", params=dict([bad]))
        assert resp.status == 400 and message in (await resp.json())["error"]

    events = await (await client.get("/api/v1/journal", params={"since": "1h"})).json()
    assert [e["kind"] for e in reversed(events["events"])] == ["connect", "transition", "disconnect"]


async def test_the_trading_view_answers_as_json(running):
    service, client, clock = running
    resp = await client.post("/api/v1/events", headers={"Authorization": f"Bearer {TOKEN}"}, json=[
        {"type": "equity", "account": "main", "id": "e1", "ts": clock.time(), "equity": 1000.0},
        {"type": "safety", "account": "main", "id": "s1", "ts": clock.time(), "kill_switch": True, "reason": "r"}])
    assert (await resp.json())["accepted"] == 2
    view = await (await client.get("/api/v1/trading/main")).json()
    assert view["equity"] == 1000.0 and view["kill_switch"] == {"active": True, "reason": "r"}
    assert view["levels"]["kill_switch"] == "breach" and view["desk"]["profit_factor"] is None
    assert [a["account"] for a in (await (await client.get("/api/v1/trading")).json())["accounts"]] == ["main"]
    assert (await client.get("/api/v1/trading/other")).status == 404
    # The kill switch is an open trading incident too, and the snapshot carries both parts.
    snapshot = await (await client.get("/api/v1/snapshot")).json()
    assert snapshot["trading"]["accounts"][0]["kill_switch"]["active"] is True
    assert snapshot["trading"]["feeds"] == []
    assert [(i["kind"], i["level"]) for i in snapshot["incidents"]] == [("trading", "kill_switch")]


async def test_reloads_reach_the_journal_through_the_apps_listeners(running):
    service, client, clock = running
    notify_reload(client.server.app, False, ["listen: bad"])
    assert await service.journal.writer.drained(10)
    (event,) = await service.journal.sink.events()
    assert (event.kind, event.state, event.detail) == ("reload", "failed", "listen: bad")


async def test_new_metrics_are_documented_and_pass_promtool(running, tmp_path):
    service, client, clock = running
    text = await (await client.get("/metrics")).text()
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE feedwatch_journal_")
                or line.startswith("# TYPE feedwatch_recorder_")}
    assert {"feedwatch_journal_writes_total", "feedwatch_journal_buffer_records",
            "feedwatch_journal_dropped_records_total", "feedwatch_recorder_buffered_frames"} <= families
    docs = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    missing = sorted(f for f in families if f"`{f}`" not in docs)
    assert not missing, f"missing from docs/metrics.md: {missing}"
    result = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


async def test_without_a_journal_the_routes_say_it_is_off(tmp_path, clock):
    off = config(tmp_path, journal={"enabled": False})
    service = Service(off, clock)
    assert service.journal is None and service.renderers == (service.recorder,)
    client = TestClient(TestServer(create_app(service.book, off, clock, service=service)))
    await client.start_server()
    try:
        resp = await client.get("/api/v1/incidents")
        assert resp.status == 503 and "journal is off" in (await resp.json())["error"]
    finally:
        await client.close()
        from exporter.trading.tracker import detach

        detach(off)


def test_journal_config_is_strict_and_checked(tmp_path):
    from exporter.config import ConfigError

    with pytest.raises(ConfigError) as exc:
        load_data({"feeds": [], "journal": {"sink": "postgres", "buffer_limit": 0, "retension": "1d"}}, environ={})
    assert exc.value.errors == [
        "journal.retension: unknown key (did you mean 'retention'?)",
        "journal.dsn: required with sink: postgres (a libpq connection string, e.g. 'host=db dbname=feedwatch "
        "user=feedwatch password=${PGPASSWORD}')",
        "journal.buffer_limit: must be at least 1, got 0"]
    dsn = tmp_path / "dsn"
    dsn.write_text("host=db dbname=fw\n")
    loaded = load_data({"feeds": [], "journal": {"sink": "postgres", "dsn_file": str(dsn)}}, environ={})
    assert loaded.journal.dsn == "host=db dbname=fw"
    assert json.dumps(loaded.journal.retention) == "2592000.0"


async def test_the_cli_lists_incidents_from_the_api_and_from_the_database(running, tmp_path):
    import asyncio
    import sys

    import yaml

    service, client, clock = running
    feed = service.book.feeds["stocks"]
    feed.connected("0", clock.time())
    feed.disconnected("0", "auth_failed", clock.advance(1))
    clock.advance(30)
    feed.connected("0", clock.time())
    feed.disconnected("0", "network_error", clock.advance(5))      # a second outage, still open
    assert await service.journal.writer.drained(10)
    config_file = tmp_path / "feedwatch.yml"
    config_file.write_text(yaml.safe_dump({
        "feeds": [{"name": "stocks", "kind": "polygon", "url": "wss://x.invalid", "api_key": "k", "symbols": ["AAPL"]}],
        "journal": {"path": str(tmp_path / "journal.sqlite")}}))

    async def cli(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "exporter.cli", "incidents", *args,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode, out.decode() + err.decode()

    url = f"http://127.0.0.1:{client.server.port}"
    code, out = await cli("--url", url, "--kind", "feed", "--json")
    assert code == 0, out
    answer = json.loads(out)
    assert [(i["reason"].split(";")[0], i["resolved_at"] is None) for i in answer["incidents"]] == [
        ("network_error", True), ("auth_failed", False)]
    code, table = await cli("-c", str(config_file), "--kind", "feed", "--open")  # the database, no exporter
    assert code == 0, table
    lines = table.splitlines()
    assert lines[0].split() == ["OPENED", "(UTC)", "DURATION", "KIND", "SUBJECT", "LEVEL", "(WORST)", "VALUE", "REASON"]
    assert len(lines) == 2 and " open " in lines[1] and "network_error" in lines[1]
    code, out = await cli("--url", url, "--since", "yesterday")
    assert code == 2 and "since:" in out
