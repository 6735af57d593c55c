"""``feedwatch alertmanager-config``: the channels set in the environment, and only those, are
added to the committed routing; secrets stay in files where Alertmanager 0.25 can read them; the
result passes ``amtool check-config``."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.alerting import receivers as alerting

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "alertmanager" / "alertmanager.yml"
RECEIVERS = ["data-critical", "data-warning", "data-info", "trading-critical", "trading-warning",
             "trading-info", "watchdog", "alert-test", "alert-test-slack", "alert-test-telegram",
             "alert-test-email", "alert-test-webhook"]


def render(env: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    config, _ = alerting.render(BASE.read_text(), env, BASE.parent, **kwargs)
    return config


def receiver(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in config["receivers"] if r["name"] == name)


def integrations(config: dict[str, Any], name: str) -> list[str]:
    return sorted(k[: -len("_configs")] for k in receiver(config, name) if k.endswith("_configs"))


def amtool_check(path: Path) -> None:
    binary = shutil.which("amtool")
    assert binary, "amtool is not installed: apt-get install prometheus-alertmanager"
    done = subprocess.run([binary, "check-config", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def secrets(tmp_path: Path) -> dict[str, str]:
    """Every channel configured, secrets in files (as a deployment would mount them)."""
    slack = tmp_path / "slack_url"
    slack.write_text("https://hooks.slack.com/services/T000/B000/SECRETSLACK\n")
    smtp = tmp_path / "smtp_password"
    smtp.write_text("SECRETSMTP\n")
    token = tmp_path / "telegram_token"
    token.write_text("123456:SECRETTELEGRAM\n")
    return {
        "FEEDWATCH_SLACK_API_URL_FILE": str(slack),
        "FEEDWATCH_SLACK_CHANNEL": "#market-data",
        "FEEDWATCH_TRADING_SLACK_CHANNEL": "#trading-desk",
        "FEEDWATCH_TELEGRAM_BOT_TOKEN_FILE": str(token),
        "FEEDWATCH_TELEGRAM_CHAT_ID": "-1001234",
        "FEEDWATCH_EMAIL_TO": "oncall@example.com",
        "FEEDWATCH_EMAIL_FROM": "feedwatch@example.com",
        "FEEDWATCH_EMAIL_SMARTHOST": "smtp.example.com:587",
        "FEEDWATCH_EMAIL_AUTH_USERNAME": "feedwatch",
        "FEEDWATCH_EMAIL_AUTH_PASSWORD_FILE": str(smtp),
        "FEEDWATCH_WEBHOOK_URL": "https://hooks.example.com/feedwatch",
    }


def test_no_variables_no_channels(tmp_path: Path) -> None:
    config = render({})
    for name in RECEIVERS:
        assert integrations(config, name) == [], name
    assert config["templates"] == [str(ROOT / "alertmanager" / "templates" / "*.tmpl")]
    path = tmp_path / "am.yml"
    text, channels = alerting.render_file(BASE, {})
    assert channels == []
    alerting.write(path, text)
    amtool_check(path)


def test_every_channel_by_severity(secrets: dict[str, str]) -> None:
    config = render(secrets)
    assert integrations(config, "data-critical") == ["email", "slack", "telegram", "webhook"]
    assert integrations(config, "data-warning") == ["slack", "telegram", "webhook"]
    assert integrations(config, "data-info") == ["slack", "webhook"]
    assert integrations(config, "trading-critical") == ["email", "slack", "telegram", "webhook"]
    assert integrations(config, "alert-test") == ["email", "slack", "telegram", "webhook"]
    assert all(i["send_resolved"] is False for key, value in receiver(config, "alert-test").items()
               if key.endswith("_configs") for i in value)
    for channel in ("email", "slack", "telegram", "webhook"):  # a test of one channel: that one alone
        assert integrations(config, f"alert-test-{channel}") == [channel]
    assert integrations(render({"FEEDWATCH_WEBHOOK_URL": "https://hooks.example.com/x"}), "alert-test-slack") == []
    # Watchdog falls back to the generic webhook.
    assert receiver(config, "watchdog")["webhook_configs"] == [
        {"send_resolved": False, "url": "https://hooks.example.com/feedwatch"}]
    telegram = receiver(config, "data-critical")["telegram_configs"][0]
    assert telegram["chat_id"] == -1001234 and telegram["parse_mode"] == "HTML"
    assert telegram["message"] == '{{ template "feedwatch.telegram" . }}'


def test_trading_overrides(secrets: dict[str, str]) -> None:
    config = render({**secrets, "FEEDWATCH_TRADING_TELEGRAM_CHAT_ID": "-42",
                     "FEEDWATCH_TRADING_EMAIL_TO": "desk@example.com",
                     "FEEDWATCH_TRADING_WEBHOOK_URL": "https://desk.example.com/hook"})
    trading = receiver(config, "trading-critical")
    data = receiver(config, "data-critical")
    assert trading["slack_configs"][0]["channel"] == "#trading-desk"
    assert data["slack_configs"][0]["channel"] == "#market-data"
    assert trading["telegram_configs"][0]["chat_id"] == -42
    assert trading["email_configs"][0]["to"] == "desk@example.com"
    assert trading["webhook_configs"][0]["url"] == "https://desk.example.com/hook"
    assert data["webhook_configs"][0]["url"] == "https://hooks.example.com/feedwatch"


def test_secrets_stay_in_files_and_the_file_is_private(secrets: dict[str, str], tmp_path: Path) -> None:
    text, channels = alerting.render_file(BASE, secrets)
    assert [c.name for c in channels] == ["slack", "telegram", "email", "webhook"]
    assert "SECRETSLACK" not in text and "SECRETSMTP" not in text
    assert f"api_url_file: {secrets['FEEDWATCH_SLACK_API_URL_FILE']}" in text
    assert f"auth_password_file: {secrets['FEEDWATCH_EMAIL_AUTH_PASSWORD_FILE']}" in text
    # Alertmanager 0.25 has no bot_token_file: the token goes in, and the file is 0600.
    assert "123456:SECRETTELEGRAM" in text
    path = tmp_path / "out" / "alertmanager.yml"
    alerting.write(path, text)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    amtool_check(path)


def test_severities_can_be_chosen_per_channel(secrets: dict[str, str]) -> None:
    config = render({**secrets, "FEEDWATCH_EMAIL_SEVERITIES": "critical, warning",
                     "FEEDWATCH_SLACK_SEVERITIES": "critical"})
    assert integrations(config, "data-warning") == ["email", "telegram", "webhook"]
    assert integrations(config, "data-info") == ["webhook"]


@pytest.mark.parametrize("env,expected", [
    ({"FEEDWATCH_EMAIL_TO": "a@example.com"},
     "FEEDWATCH_EMAIL_FROM, FEEDWATCH_EMAIL_SMARTHOST: required to enable email"),
    ({"FEEDWATCH_TELEGRAM_CHAT_ID": "12"}, "FEEDWATCH_TELEGRAM_BOT_TOKEN: required to enable telegram"),
    ({"FEEDWATCH_TELEGRAM_BOT_TOKEN": "1:x", "FEEDWATCH_TELEGRAM_CHAT_ID": "general"},
     "FEEDWATCH_TELEGRAM_CHAT_ID: expected an integer chat id"),
    ({"FEEDWATCH_TELEGRAM_BOT_TOKEN": "1:x", "FEEDWATCH_TELEGRAM_BOT_TOKEN_FILE": "/t", "FEEDWATCH_TELEGRAM_CHAT_ID": "1"},
     "set one, not both"),
    ({"FEEDWATCH_TELEGRAM_BOT_TOKEN_FILE": "/nonexistent/token", "FEEDWATCH_TELEGRAM_CHAT_ID": "1"},
     "FEEDWATCH_TELEGRAM_BOT_TOKEN_FILE: cannot read /nonexistent/token"),
    ({"FEEDWATCH_SLACK_CHANNEL": "#x"}, "FEEDWATCH_SLACK_API_URL_FILE: required to enable slack"),
    ({"FEEDWATCH_WEBHOOK_URL": "hooks.example.com"}, "FEEDWATCH_WEBHOOK_URL: expected an http:// or https:// URL"),
    ({"FEEDWATCH_WEBHOOK_URL": "http://x", "FEEDWATCH_WEBHOOK_SEVERITIES": "page"},
     "FEEDWATCH_WEBHOOK_SEVERITIES: expected a comma-separated list"),
    ({"FEEDWATCH_EMAIL_TO": "a@b", "FEEDWATCH_EMAIL_FROM": "c@d", "FEEDWATCH_EMAIL_SMARTHOST": "smtp"},
     "FEEDWATCH_EMAIL_SMARTHOST: expected host:port"),
])
def test_incomplete_settings_are_errors_naming_the_variable(env: dict[str, str], expected: str) -> None:
    with pytest.raises(alerting.AlertingConfigError) as info:
        render(env)
    assert any(expected in error for error in info.value.errors), info.value.errors


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(alerting.AlertingConfigError) as info:
        render({"FEEDWATCH_EMAIL_TO": "a@b", "FEEDWATCH_SLACK_CHANNEL": "#x", "FEEDWATCH_WATCHDOG_URL": "nope"})
    assert len(info.value.errors) == 3


def _mute_matchers(config: dict[str, Any]) -> list[list[str]]:
    found = []

    def visit(route: dict[str, Any]) -> None:
        if route.get("mute_time_intervals"):
            found.append(route["matchers"])
        for child in route.get("routes", []) or []:
            visit(child)

    visit(config["route"])
    return found


def test_the_closed_market_mute_matches_the_market_label_not_feed_names() -> None:
    """The mute routes are the committed ones, by market: rendering neither adds nor drops them."""
    committed = _mute_matchers(yaml.safe_load(BASE.read_text()))
    assert committed == _mute_matchers(render({"FEEDWATCH_WEBHOOK_URL": "https://hooks.example.com/x"}))
    # us-equities, us-equities-extended and cme-globex, each for the critical and the warning variant.
    assert len(committed) == 6
    for matchers in committed:
        assert any(m.startswith('market="') for m in matchers), matchers
        assert not any(m.startswith("feed") for m in matchers), matchers


LSE = """
markets:
  lse:
    timezone: Europe/London
    sessions: [{days: [mon-fri], open: "08:00", close: "16:30"}]
    holidays: [2026-12-25, 2026-12-28]
    early_closes: {2026-12-24: "12:30"}
feeds:
  - {name: london, kind: polygon, url: "ws://127.0.0.1:1", market: lse, symbols: [VOD]}
"""


def test_a_custom_market_gets_its_mute_from_the_exporter_config(tmp_path: Path) -> None:
    """--config.file: the markets defined in the exporter's config get a `<name>-closed` interval
    that agrees with their calendar, and mute routes like the built-in markets'; amtool accepts it."""
    import datetime as dt

    from exporter.config import load_text
    from tests.unit.test_alertmanager import interval_matches

    exporter_config = tmp_path / "feedwatch.yml"
    exporter_config.write_text(LSE)
    out = tmp_path / "gen" / "alertmanager.yml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDWATCH_")}
    cmd = [sys.executable, "-c", "import sys; from exporter.cli import main; sys.exit(main())",
           "alertmanager-config"]
    done = subprocess.run([*cmd, "--config.file", str(exporter_config), "--output", str(out), "--check"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "closed-market mutes for: lse" in done.stderr
    rendered = yaml.safe_load(out.read_text())
    assert [m for m in _mute_matchers(rendered) if 'market="lse"' in m] == [
        ['alertname=~"FeedSymbolStale|FeedSymbolDead|FeedSilent"', 'market="lse"']] * 2
    entries = next(i["time_intervals"] for i in rendered["time_intervals"] if i["name"] == "lse-closed")
    cal = load_text(LSE, {}).feeds[0].resolved_calendar
    t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    mismatches = []
    while t < dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc).timestamp():  # every 30 minutes of 2026
        local = dt.datetime.fromtimestamp(t, cal.timezone)
        if any(interval_matches(e, local) for e in entries) == cal.is_open(t):
            mismatches.append(local.isoformat())
        t += 1800
    assert not mismatches, mismatches[:5]

    # A bad market is refused with its path, before anything is written.
    exporter_config.write_text(LSE.replace("Europe/London", "Europe/Londn"))
    done = subprocess.run([*cmd, "--config.file", str(exporter_config)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "markets.lse.timezone: unknown timezone 'Europe/Londn' (did you mean 'Europe/London'?)" in done.stderr


def test_command_line(secrets: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "gen" / "alertmanager.yml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDWATCH_")}
    cmd = [sys.executable, "-c", "import sys; from exporter.cli import main; sys.exit(main())",
           "alertmanager-config"]
    done = subprocess.run([*cmd, "--output", str(out), "--check"], env={**env, **secrets},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "channels: slack, telegram, email, webhook" in done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert yaml.safe_load(out.read_text())["route"]["receiver"] == "data-warning"

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert 'market="us-equities"' in done.stdout and "channels: none" in done.stderr

    done = subprocess.run(cmd, env={**env, "FEEDWATCH_TELEGRAM_CHAT_ID": "5"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "FEEDWATCH_TELEGRAM_BOT_TOKEN: required to enable telegram" in done.stderr
