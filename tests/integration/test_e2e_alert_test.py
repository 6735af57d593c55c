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
from pathlib import Path
from typing import Any, AsyncIterator

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
