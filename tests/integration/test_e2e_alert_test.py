"""``feedwatch alert-test`` against a real Alertmanager, rendered by ``alertmanager-config`` with
all four channels pointed at 127.0.0.1:

- webhook -> a local aiohttp receiver (answers 200);
- Slack   -> a local stand-in for Slack's incoming-webhook endpoint (answers "ok"), its URL in a
             file read through api_url_file, as in production;
- Telegram -> a local stand-in for the Bot API (``api_url``), answering sendMessage like Telegram;
- email   -> an SMTP port where nothing listens, so delivery fails.

The report must say delivered for the first three and FAILED for email, and the stand-ins must
really have received the test alert (the counters are not taken on trust).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from exporter.alerting import receivers as alerting, stack as alertstack
from tests.waiting import async_wait_for, free_port

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-c", "import sys; from exporter.cli import main; sys.exit(main())"]


class Channels:
    """Local stand-ins for the channels' HTTP endpoints, recording what they receive."""

    def __init__(self) -> None:
        self.webhook: list[dict[str, Any]] = []
        self.slack: list[dict[str, Any]] = []
        self.telegram: list[dict[str, Any]] = []
        self.port = 0
        self.runner: web.AppRunner | None = None

    async def _webhook(self, request: web.Request) -> web.Response:
        self.webhook.append(await request.json())
        return web.Response(text="ok")

    async def _slack(self, request: web.Request) -> web.Response:
        self.slack.append(await request.json())
        return web.Response(text="ok")

    async def _telegram(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.telegram.append({"token": request.match_info["token"], "body": body.decode(errors="replace")})
        return web.json_response({"ok": True, "result": {
            "message_id": len(self.telegram), "date": 0, "chat": {"id": -1001234, "type": "group"}}})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhook", self._webhook)
        app.router.add_post("/slack", self._slack)
        app.router.add_post("/bot{token}/sendMessage", self._telegram)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def channels() -> AsyncIterator[Channels]:
    fakes = Channels()
    await fakes.start()
    yield fakes
    assert fakes.runner is not None
    await fakes.runner.cleanup()


async def _start_alertmanager(tmp_path: Path, env: dict[str, str]) -> alertstack.Process:
    if alertstack.find_binary(alertstack.ALERTMANAGER_BINARIES) is None:
        pytest.fail(f"prometheus-alertmanager is not installed ({alertstack.INSTALL_HINT})")
    base = alertstack.ALERTMANAGER_CONFIG
    config, _ = alerting.render(base.read_text(), env, base.parent)
    process = alertstack.start_alertmanager(config, tmp_path / "am", free_port())
    await async_wait_for(lambda: alertstack.is_ready(process), timeout=20, what="Alertmanager ready")
    return process


async def test_alert_test_reports_each_channel(channels: Channels, tmp_path: Path) -> None:
    slack_url_file = tmp_path / "slack_url"
    slack_url_file.write_text(f"{channels.base}/slack\n")
    env = {
        "FEEDWATCH_WEBHOOK_URL": f"{channels.base}/webhook",
        "FEEDWATCH_SLACK_API_URL_FILE": str(slack_url_file),
        "FEEDWATCH_TELEGRAM_BOT_TOKEN": "123456:TESTTOKEN",
        "FEEDWATCH_TELEGRAM_CHAT_ID": "-1001234",
        "FEEDWATCH_TELEGRAM_API_URL": channels.base,
        "FEEDWATCH_EMAIL_TO": "oncall@example.com",
        "FEEDWATCH_EMAIL_FROM": "feedwatch@example.com",
        "FEEDWATCH_EMAIL_SMARTHOST": f"127.0.0.1:{free_port()}",  # nothing listens there
        "FEEDWATCH_EMAIL_REQUIRE_TLS": "false",
    }
    am = await _start_alertmanager(tmp_path, env)
    try:
        report = await alerting.alert_test(am.url, timeout=20)
        verdicts = {r.integration: r for r in report.results}
        assert sorted(verdicts) == ["email", "slack", "telegram", "webhook"]
        assert verdicts["webhook"].delivered and verdicts["slack"].delivered and verdicts["telegram"].delivered
        assert not verdicts["email"].delivered and verdicts["email"].failures >= 1
        assert verdicts["email"].verdict.startswith("FAILED")
        assert not report.ok

        # What the counters said really happened.
        alert = channels.webhook[0]["alerts"][0]
        assert alert["labels"]["alertname"] == "FeedwatchAlertTest"
        assert alert["labels"]["run"] == report.run_id
        assert channels.webhook[0]["receiver"] == "alert-test"
        slack_text = json.dumps(channels.slack[0])
        assert "FeedwatchAlertTest" in slack_text and report.run_id in slack_text
        assert channels.telegram[0]["token"] == "123456:TESTTOKEN"
        assert "FeedwatchAlertTest" in channels.telegram[0]["body"]

        # The command line says the same, one line per channel, and exits 1 (email failed).
        proc = await asyncio.create_subprocess_exec(
            *CLI, "alert-test", "--alertmanager.url", am.url, "--timeout", "20s",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        lines = out.decode().splitlines()
        assert proc.returncode == 1, out.decode() + err.decode()
        assert lines[0].startswith("alert-test run ") and "(receiver alert-test)" in lines[0]
        printed = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:]}
        assert sorted(printed) == ["email", "slack", "telegram", "webhook"]
        assert printed["slack"] == printed["telegram"] == printed["webhook"] == "delivered"
        assert printed["email"].startswith("FAILED")
        # Each run is its own group: the second run was delivered again, not deduplicated.
        runs = {n["alerts"][0]["labels"]["run"] for n in channels.webhook}
        assert len(runs) == 2
    finally:
        am.stop()


async def test_alert_test_without_channels_says_how_to_add_them(tmp_path: Path) -> None:
    am = await _start_alertmanager(tmp_path, {})
    try:
        proc = await asyncio.create_subprocess_exec(
            *CLI, "alert-test", "--alertmanager.url", am.url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 1
        assert "no channel is configured" in out.decode()
    finally:
        am.stop()


async def test_alert_test_with_alertmanager_unreachable() -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI, "alert-test", "--alertmanager.url", f"http://127.0.0.1:{free_port()}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "cannot reach Alertmanager" in err.decode()


# --- the same over HTTP: POST /api/v1/alerts/test ------------------------------------------------

SECRET = "alert-test-secret"


async def _exporter_app(am_url: str):
    from exporter.alerting.api import ALERTMANAGER_URL
    from exporter.book import Book
    from exporter.clock import SystemClock
    from exporter.config import load_data
    from exporter.web.app import create_app, serve

    config = load_data({"trading": {"accounts": [{"name": "main"}], "api": {"hmac_secret": SECRET,
                                                                           "token": "push-token"}}}, environ={})
    app = create_app(Book(config.feeds, 0.0), config, SystemClock())
    app[ALERTMANAGER_URL] = am_url
    return await serve(app, "127.0.0.1:0")


async def _post(port: int, body: bytes, headers: dict[str, str] | None = None, sign: bool = True):
    from exporter.trading.api import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign as signature

    headers = dict(headers or {})
    if sign:
        stamp = str(time.time())
        headers.update({TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature(SECRET, stamp, body)})
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{port}/api/v1/alerts/test", data=body, headers=headers) as resp:
            return resp.status, await resp.json(), headers


async def test_alert_test_over_http_for_one_channel_or_all(channels: Channels, tmp_path: Path) -> None:
    slack_url_file = tmp_path / "slack_url"
    slack_url_file.write_text(f"{channels.base}/slack\n")
    am = await _start_alertmanager(tmp_path, {"FEEDWATCH_WEBHOOK_URL": f"{channels.base}/webhook",
                                              "FEEDWATCH_SLACK_API_URL_FILE": str(slack_url_file)})
    runner, port = await _exporter_app(am.url)
    try:
        # One channel: only the webhook is tried, through its own receiver.
        status, report, headers = await _post(port, b'{"channel": "webhook", "timeout": 20}')
        assert status == 200, report
        assert report["receiver"] == "alert-test-webhook" and report["channel"] == "webhook" and report["ok"]
        assert [(r["channel"], r["delivered"], r["verdict"]) for r in report["results"]] == [
            ("webhook", True, "delivered")]
        assert channels.webhook[-1]["receiver"] == "alert-test-webhook" and not channels.slack
        assert channels.webhook[-1]["alerts"][0]["labels"]["run"] == report["run_id"]

        # The same signed request again is a replay.
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{port}/api/v1/alerts/test", data=b'{"channel": "webhook", '
                                 b'"timeout": 20}', headers=headers) as resp:
                assert resp.status == 401 and "already used" in (await resp.json())["error"]

        # All channels (an empty body), answered exactly as the CLI's --json prints it.
        status, report, _ = await _post(port, b"")
        assert status == 200 and report["receiver"] == "alert-test" and report["ok"]
        assert sorted((r["channel"], r["delivered"]) for r in report["results"]) == [("slack", True),
                                                                                      ("webhook", True)]
        proc = await asyncio.create_subprocess_exec(
            *CLI, "alert-test", "--alertmanager.url", am.url, "--timeout", "20s", "--channel", "slack", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        printed = json.loads(out)
        assert set(printed) == set(report) and printed["receiver"] == "alert-test-slack"
        assert [(r["channel"], r["delivered"]) for r in printed["results"]] == [("slack", True)]

        # Refusals: unsigned, a bearer token (even the push API's), a bad signature, a bad channel.
        assert (await _post(port, b"{}", sign=False))[0] == 401
        assert (await _post(port, b"{}", {"Authorization": "Bearer push-token"}, sign=False))[0] == 401
        forged = {"X-Feedwatch-Timestamp": str(int(time.time())), "X-Feedwatch-Signature": "sha256=" + "0" * 64}
        status, problem, _ = await _post(port, b"{}", forged, sign=False)
        assert status == 401 and problem["error"] == "invalid signature"
        status, problem, _ = await _post(port, b'{"channel": "pager"}')
        assert status == 400 and "unknown channel 'pager'" in problem["error"]
    finally:
        await runner.cleanup()
        am.stop()
