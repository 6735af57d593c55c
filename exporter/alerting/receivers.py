"""Alertmanager notification channels from the environment, and the delivery check behind
``feedwatch alert-test``.

The committed ``alertmanager/alertmanager.yml`` holds the routing tree, inhibitions, time
intervals and templates; its receivers have no integrations, so every channel is off. ``render``
copies that file and fills each receiver with the channels whose settings are present in the
environment, and nothing else (a channel with none of its variables set stays off; one with only
some of them is an error naming what is missing):

    variable                              channel   meaning
    FEEDWATCH_SLACK_API_URL_FILE          slack     file holding the Slack incoming-webhook URL (read by Alertmanager)
    FEEDWATCH_SLACK_CHANNEL               slack     channel override, e.g. #market-data (optional)
    FEEDWATCH_TRADING_SLACK_CHANNEL       slack     channel for team="trading" alerts (optional)
    FEEDWATCH_TELEGRAM_BOT_TOKEN          telegram  bot token (or FEEDWATCH_TELEGRAM_BOT_TOKEN_FILE: a file holding it)
    FEEDWATCH_TELEGRAM_CHAT_ID            telegram  chat id (an integer; negative for groups)
    FEEDWATCH_TRADING_TELEGRAM_CHAT_ID    telegram  chat for team="trading" alerts (optional)
    FEEDWATCH_TELEGRAM_API_URL            telegram  Bot API base URL (optional; default Telegram's)
    FEEDWATCH_EMAIL_TO                    email     recipient(s), comma-separated
    FEEDWATCH_EMAIL_FROM                  email     sender address
    FEEDWATCH_EMAIL_SMARTHOST             email     SMTP server, host:port
    FEEDWATCH_EMAIL_AUTH_USERNAME         email     SMTP user (optional)
    FEEDWATCH_EMAIL_AUTH_PASSWORD_FILE    email     file holding the SMTP password (read by Alertmanager; optional)
    FEEDWATCH_EMAIL_REQUIRE_TLS           email     true (default) or false
    FEEDWATCH_TRADING_EMAIL_TO            email     recipient(s) for team="trading" alerts (optional)
    FEEDWATCH_WEBHOOK_URL                 webhook   URL receiving Alertmanager's JSON
    FEEDWATCH_TRADING_WEBHOOK_URL         webhook   URL for team="trading" alerts (optional)
    FEEDWATCH_WATCHDOG_URL                -         dead man's switch for Watchdog (default: FEEDWATCH_WEBHOOK_URL)
    FEEDWATCH_<CHANNEL>_SEVERITIES        any       severities a channel gets, comma-separated
                                                    (defaults: slack and webhook critical,warning,info;
                                                    telegram critical,warning; email critical)

The closed-market mutes need no setting: they match the ``market`` label the rules copy from the
exporter's ``feedwatch_feed_info``, so the routing is the committed one whatever the feeds are called.
Markets defined in the exporter's own config get theirs from ``exporter/alerting/mutes.py``
(``feedwatch alertmanager-config --config.file``).

Secrets: Slack's URL and the SMTP password never enter the rendered file (Alertmanager 0.25 reads
them from ``api_url_file`` / ``auth_password_file`` when it sends). Alertmanager 0.25 has no file
option for the Telegram token or a webhook URL, so those are written into the rendered file,
which ``write`` creates with mode 0600.

``alert_test`` posts a uniquely labelled test alert to Alertmanager (routed by the committed
config to the ``alert-test`` receiver, which ``render`` gives every configured channel, or with
``channel=NAME`` to ``alert-test-NAME``, which has that channel alone) and reads Alertmanager's
own per-integration counters (``alertmanager_notification_requests_total`` and
``..._failed_total`` on its /metrics) until every channel has delivered or failed. The CLI
(``feedwatch alert-test``) and ``POST /api/v1/alerts/test`` (``alerting/api.py``) both call it
and print or answer ``AlertTestReport.to_json()``'s content.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import aiohttp
import yaml

from exporter import resources

# The committed config as shipped (alertmanager/ in the repository, in the wheel as a resource).
BASE_CONFIG = resources.path(resources.ALERTMANAGER, "alertmanager.yml")

CHANNELS = ("slack", "telegram", "email", "webhook")
SEVERITIES = ("critical", "warning", "info")
TEAMS = ("data", "trading")
DEFAULT_SEVERITIES = {
    "slack": ("critical", "warning", "info"),
    "telegram": ("critical", "warning"),       # a phone buzzes: no price-move chatter
    "email": ("critical",),                    # inboxes are for what needs action
    "webhook": ("critical", "warning", "info"),
}
# Alertmanager's integration key for each channel, and the label its counters use.
CONFIG_KEYS = {"slack": "slack_configs", "telegram": "telegram_configs", "email": "email_configs",
               "webhook": "webhook_configs"}

TEST_ALERTNAME = "FeedwatchAlertTest"
RUNBOOK = "https://github.com/feedwatch/feedwatch/blob/main/docs/runbook.md"


class AlertingConfigError(Exception):
    """Every problem found in the environment, one "VARIABLE: message" string each."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class Channel:
    """One configured notification channel: its Alertmanager integration per team."""

    name: str
    severities: tuple[str, ...]
    data: dict[str, Any]                 # the integration for team="data" (and alert-test)
    trading: dict[str, Any]              # the same with the trading overrides applied

    def integration(self, team: str) -> dict[str, Any]:
        return copy.deepcopy(self.trading if team == "trading" else self.data)


# --- reading the environment --------------------------------------------------------------------

def _get(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip()


def _severities(env: Mapping[str, str], channel: str, errors: list[str]) -> tuple[str, ...]:
    var = f"FEEDWATCH_{channel.upper()}_SEVERITIES"
    raw = _get(env, var)
    if not raw:
        return DEFAULT_SEVERITIES[channel]
    chosen = tuple(s.strip().lower() for s in raw.split(",") if s.strip())
    unknown = [s for s in chosen if s not in SEVERITIES]
    if unknown or not chosen:
        errors.append(f"{var}: expected a comma-separated list of {', '.join(SEVERITIES)}, got {raw!r}")
    return tuple(s for s in chosen if s in SEVERITIES)


def _require(env: Mapping[str, str], channel: str, names: tuple[str, ...],
             optional: tuple[str, ...], errors: list[str]) -> bool:
    """True when the channel is configured; an error when only some required variables are set."""
    given = [n for n in names + optional if _get(env, n)]
    if not given:
        return False
    missing = [n for n in names if not _get(env, n)]
    if missing:
        errors.append(f"{', '.join(missing)}: required to enable {channel} "
                      f"(set: {', '.join(given)}); unset every {channel} variable to leave it off")
        return False
    return True


def _slack(env: Mapping[str, str], errors: list[str]) -> Channel | None:
    if not _require(env, "slack", ("FEEDWATCH_SLACK_API_URL_FILE",),
                    ("FEEDWATCH_SLACK_CHANNEL", "FEEDWATCH_TRADING_SLACK_CHANNEL"), errors):
        return None
    base: dict[str, Any] = {
        "send_resolved": True,
        "api_url_file": _get(env, "FEEDWATCH_SLACK_API_URL_FILE"),
        "title": '{{ template "feedwatch.slack.title" . }}',
        "text": '{{ template "feedwatch.slack.text" . }}',
        "color": '{{ template "feedwatch.slack.color" . }}',
    }
    if _get(env, "FEEDWATCH_SLACK_CHANNEL"):
        base["channel"] = _get(env, "FEEDWATCH_SLACK_CHANNEL")
    trading = dict(base)
    if _get(env, "FEEDWATCH_TRADING_SLACK_CHANNEL"):
        trading["channel"] = _get(env, "FEEDWATCH_TRADING_SLACK_CHANNEL")
    return Channel("slack", _severities(env, "slack", errors), base, trading)


def _chat_id(env: Mapping[str, str], name: str, errors: list[str]) -> int:
    raw = _get(env, name)
    try:
        return int(raw)
    except ValueError:
        errors.append(f"{name}: expected an integer chat id (negative for groups), got {raw!r}")
        return 0


def _telegram(env: Mapping[str, str], errors: list[str]) -> Channel | None:
    token = _get(env, "FEEDWATCH_TELEGRAM_BOT_TOKEN")
    token_file = _get(env, "FEEDWATCH_TELEGRAM_BOT_TOKEN_FILE")
    optional = ("FEEDWATCH_TELEGRAM_BOT_TOKEN", "FEEDWATCH_TELEGRAM_BOT_TOKEN_FILE",
                "FEEDWATCH_TRADING_TELEGRAM_CHAT_ID", "FEEDWATCH_TELEGRAM_API_URL")
    if not _require(env, "telegram", ("FEEDWATCH_TELEGRAM_CHAT_ID",), optional, errors):
        return None
    if token and token_file:
        errors.append("FEEDWATCH_TELEGRAM_BOT_TOKEN, FEEDWATCH_TELEGRAM_BOT_TOKEN_FILE: set one, not both")
        return None
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            errors.append(f"FEEDWATCH_TELEGRAM_BOT_TOKEN_FILE: cannot read {token_file}: {exc.strerror}")
            return None
    if not token:
        errors.append("FEEDWATCH_TELEGRAM_BOT_TOKEN: required to enable telegram "
                      "(or FEEDWATCH_TELEGRAM_BOT_TOKEN_FILE)")
        return None
    base: dict[str, Any] = {
        "send_resolved": True,
        "bot_token": token,
        "chat_id": _chat_id(env, "FEEDWATCH_TELEGRAM_CHAT_ID", errors),
        "parse_mode": "HTML",
        "message": '{{ template "feedwatch.telegram" . }}',
    }
    if _get(env, "FEEDWATCH_TELEGRAM_API_URL"):
        base["api_url"] = _get(env, "FEEDWATCH_TELEGRAM_API_URL")
    trading = dict(base)
    if _get(env, "FEEDWATCH_TRADING_TELEGRAM_CHAT_ID"):
        trading["chat_id"] = _chat_id(env, "FEEDWATCH_TRADING_TELEGRAM_CHAT_ID", errors)
    return Channel("telegram", _severities(env, "telegram", errors), base, trading)


def _email(env: Mapping[str, str], errors: list[str]) -> Channel | None:
    required = ("FEEDWATCH_EMAIL_TO", "FEEDWATCH_EMAIL_FROM", "FEEDWATCH_EMAIL_SMARTHOST")
    optional = ("FEEDWATCH_EMAIL_AUTH_USERNAME", "FEEDWATCH_EMAIL_AUTH_PASSWORD_FILE",
                "FEEDWATCH_TRADING_EMAIL_TO")
    if not _require(env, "email", required, optional, errors):
        return None
    smarthost = _get(env, "FEEDWATCH_EMAIL_SMARTHOST")
    if not re.fullmatch(r"[^\s:]+:\d+", smarthost):
        errors.append(f"FEEDWATCH_EMAIL_SMARTHOST: expected host:port, got {smarthost!r}")
    tls = _get(env, "FEEDWATCH_EMAIL_REQUIRE_TLS").lower() or "true"
    if tls not in ("true", "false"):
        errors.append(f"FEEDWATCH_EMAIL_REQUIRE_TLS: expected true or false, got {tls!r}")
    base: dict[str, Any] = {
        "send_resolved": True,
        "to": _get(env, "FEEDWATCH_EMAIL_TO"),
        "from": _get(env, "FEEDWATCH_EMAIL_FROM"),
        "smarthost": smarthost,
        "require_tls": tls != "false",
        "headers": {"Subject": '{{ template "feedwatch.email.subject" . }}'},
        "html": '{{ template "feedwatch.email.html" . }}',
        "text": '{{ template "feedwatch.text" . }}',
    }
    if _get(env, "FEEDWATCH_EMAIL_AUTH_USERNAME"):
        base["auth_username"] = _get(env, "FEEDWATCH_EMAIL_AUTH_USERNAME")
    if _get(env, "FEEDWATCH_EMAIL_AUTH_PASSWORD_FILE"):
        base["auth_password_file"] = _get(env, "FEEDWATCH_EMAIL_AUTH_PASSWORD_FILE")
    trading = copy.deepcopy(base)
    if _get(env, "FEEDWATCH_TRADING_EMAIL_TO"):
        trading["to"] = _get(env, "FEEDWATCH_TRADING_EMAIL_TO")
    return Channel("email", _severities(env, "email", errors), base, trading)


def _url(env: Mapping[str, str], name: str, errors: list[str]) -> str:
    value = _get(env, name)
    if value and not re.match(r"https?://[^/\s]+", value):
        errors.append(f"{name}: expected an http:// or https:// URL, got {value!r}")
    return value


def _webhook(env: Mapping[str, str], errors: list[str]) -> Channel | None:
    if not _require(env, "webhook", ("FEEDWATCH_WEBHOOK_URL",), ("FEEDWATCH_TRADING_WEBHOOK_URL",), errors):
        return None
    base = {"send_resolved": True, "url": _url(env, "FEEDWATCH_WEBHOOK_URL", errors)}
    trading = dict(base)
    if _get(env, "FEEDWATCH_TRADING_WEBHOOK_URL"):
        trading["url"] = _url(env, "FEEDWATCH_TRADING_WEBHOOK_URL", errors)
    return Channel("webhook", _severities(env, "webhook", errors), base, trading)


def channels_from_env(env: Mapping[str, str]) -> list[Channel]:
    """The configured channels, in CHANNELS order; raises AlertingConfigError with every problem."""
    errors: list[str] = []
    found = [c for c in (_slack(env, errors), _telegram(env, errors), _email(env, errors),
                         _webhook(env, errors)) if c is not None]
    _url(env, "FEEDWATCH_WATCHDOG_URL", errors)
    if errors:
        raise AlertingConfigError(errors)
    return found


# --- rendering ----------------------------------------------------------------------------------

def render(base_text: str, env: Mapping[str, str], base_dir: Path,
           templates: list[str] | None = None) -> tuple[dict[str, Any], list[Channel]]:
    """The committed config with the environment's channels added; returns (config, channels).

    ``templates`` replaces the config's template globs (as Alertmanager will see them); by
    default the committed globs are resolved against ``base_dir`` so the rendered file works
    from any directory.
    """
    config = yaml.safe_load(base_text)
    channels = channels_from_env(env)
    receivers = {r["name"]: r for r in config.get("receivers", [])}

    def add(receiver: str, channel: Channel, team: str, send_resolved: bool = True) -> None:
        integration = channel.integration(team)
        integration["send_resolved"] = send_resolved
        receivers[receiver].setdefault(CONFIG_KEYS[channel.name], []).append(integration)

    for team in TEAMS:
        for severity in SEVERITIES:
            name = f"{team}-{severity}"
            if name not in receivers:
                continue
            for channel in channels:
                if severity in channel.severities:
                    add(name, channel, team)
    # alert-test: every configured channel, so one run checks them all; alert-test-<channel>:
    # that channel alone (a test of one channel). No resolved message: the test alert is
    # resolved right after delivery and nobody needs to hear about it twice.
    for channel in channels:
        for name in ("alert-test", f"alert-test-{channel.name}"):
            if name in receivers:
                add(name, channel, "data", send_resolved=False)
    watchdog_url = _get(env, "FEEDWATCH_WATCHDOG_URL") or _get(env, "FEEDWATCH_WEBHOOK_URL")
    if watchdog_url and "watchdog" in receivers:
        receivers["watchdog"]["webhook_configs"] = [{"send_resolved": False, "url": watchdog_url}]

    if templates is not None:
        config["templates"] = list(templates)
    else:
        config["templates"] = [t if os.path.isabs(t) else str((base_dir / t).resolve())
                               for t in config.get("templates", [])]
    return config, channels


def dump(config: dict[str, Any], channels: list[Channel]) -> str:
    names = ", ".join(c.name for c in channels) or "none (every receiver is off)"
    header = ("# Generated by `feedwatch alertmanager-config` from alertmanager/alertmanager.yml: do not\n"
              "# edit; change the committed file or the environment and render again.\n"
              f"# Channels: {names}.\n")
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=120)


def write(path: Path, text: str) -> None:
    """Write the rendered config with mode 0600 (it may hold the Telegram token, a webhook URL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)  # atomic: a reloading Alertmanager never reads half a file


def render_file(base: Path, env: Mapping[str, str],
                templates: list[str] | None = None) -> tuple[str, list[Channel]]:
    config, channels = render(base.read_text(), env, base.parent, templates)
    return dump(config, channels), channels


# --- alert-test ---------------------------------------------------------------------------------

@dataclass
class ChannelResult:
    """What Alertmanager's counters say about one integration during a test."""

    integration: str
    attempts: int = 0
    failures: int = 0

    @property
    def delivered(self) -> bool:
        return self.attempts > self.failures

    @property
    def verdict(self) -> str:
        if self.delivered:
            return "delivered"
        if self.failures:
            return (f"FAILED ({self.failures} attempt{'s' if self.failures != 1 else ''} failed; "
                    "Alertmanager retries: see its log for the error)")
        return "no attempt seen (not routed to the alert-test receiver?)"


@dataclass
class AlertTestReport:
    run_id: str
    receiver: str
    results: list[ChannelResult] = field(default_factory=list)
    channel: str = "all"

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.delivered for r in self.results)

    def to_json(self) -> dict[str, Any]:
        """The report as the HTTP endpoint answers it (and ``alert-test --json`` prints it)."""
        return {"run_id": self.run_id, "receiver": self.receiver, "channel": self.channel, "ok": self.ok,
                "results": [{"channel": r.integration, "delivered": r.delivered, "attempts": r.attempts,
                             "failures": r.failures, "verdict": r.verdict} for r in self.results]}


def receiver_for(channel: str) -> str:
    """The receiver a test of ``channel`` (a CHANNELS name, or ``all``) routes to."""
    if channel == "all":
        return "alert-test"
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r} (known: all, {', '.join(CHANNELS)})")
    return f"alert-test-{channel}"


_SAMPLE = re.compile(r'^(alertmanager_notification_requests(?:_failed)?_total)\{([^}]*)\}\s+(\S+)', re.M)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def notification_counters(metrics_text: str) -> dict[str, tuple[float, float]]:
    """integration -> (requests, failed requests), from Alertmanager's /metrics text."""
    totals: dict[str, list[float]] = {}
    for name, labels, value in _SAMPLE.findall(metrics_text):
        integration = dict(_LABEL.findall(labels)).get("integration", "")
        pair = totals.setdefault(integration, [0.0, 0.0])
        pair[1 if name.endswith("_failed_total") else 0] += float(value)
    return {k: (v[0], v[1]) for k, v in totals.items()}


def receiver_integrations(config: Mapping[str, Any], receiver: str) -> list[str]:
    """Integration names of one receiver in a parsed Alertmanager config (``slack``, ``email``...)."""
    for entry in config.get("receivers", []) or []:
        if entry.get("name") == receiver:
            return [key[: -len("_configs")] for key, value in entry.items()
                    if key.endswith("_configs") and value]
    raise LookupError(f"receiver {receiver!r} not found in Alertmanager's configuration")


def make_test_alert(run_id: str, now: dt.datetime, lifetime: float, channel: str = "all") -> dict[str, Any]:
    host = socket.gethostname()
    return {
        "labels": {"alertname": TEST_ALERTNAME, "severity": "info", "team": "data", "run": run_id,
                   "channel": channel},
        "annotations": {
            "summary": "Test notification from feedwatch alert-test.",
            "description": f"If you can read this, this channel works (sent by {host} at "
                           f"{now.strftime('%Y-%m-%d %H:%M:%S %Z')}, run {run_id}).",
            "runbook_url": f"{RUNBOOK}#feedwatchalerttest",
        },
        "startsAt": now.isoformat(),
        "endsAt": (now + dt.timedelta(seconds=lifetime)).isoformat(),
    }


async def alert_test(alertmanager_url: str, timeout: float = 30.0, receiver: str | None = None,
                     poll: float = 0.25, channel: str = "all") -> AlertTestReport:
    """Send one test alert and watch Alertmanager's counters until each channel answers.

    ``channel`` is ``all`` or one of CHANNELS; the receiver defaults to the one that channel's
    test routes to (``receiver_for``). ValueError for an unknown channel.

    Raises LookupError when the receiver is missing and RuntimeError when Alertmanager cannot be
    reached or refuses the alert. A channel is *delivered* when a request to it succeeded, and
    *failed* when requests to it failed and none succeeded by the time every channel answered or
    the timeout passed. Other notifications sent at the same moment through the same integration
    count too (Alertmanager 0.25 counts per integration, not per receiver).
    """
    receiver = receiver or receiver_for(channel)
    base = alertmanager_url.rstrip("/")
    run_id = uuid.uuid4().hex[:12]
    report = AlertTestReport(run_id, receiver, channel=channel)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        try:
            async with http.get(f"{base}/api/v2/status") as resp:
                resp.raise_for_status()
                status = await resp.json()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise RuntimeError(f"cannot reach Alertmanager at {base}: {exc!r}") from exc
        config = yaml.safe_load(status["config"]["original"])
        integrations = receiver_integrations(config, receiver)
        if not integrations:
            return report
        before = await _counters(http, base)
        now = dt.datetime.now(dt.timezone.utc)
        alert = make_test_alert(run_id, now, lifetime=max(timeout, 60.0) + 60.0, channel=channel)
        async with http.post(f"{base}/api/v2/alerts", json=[alert]) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"Alertmanager refused the test alert: HTTP {resp.status} {await resp.text()}")
        deadline = time.monotonic() + timeout
        results = {name: ChannelResult(name) for name in integrations}
        while True:
            after = await _counters(http, base)
            for name, result in results.items():
                req0, fail0 = before.get(name, (0.0, 0.0))
                req1, fail1 = after.get(name, (0.0, 0.0))
                result.attempts, result.failures = int(req1 - req0), int(fail1 - fail0)
            if all(r.attempts for r in results.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(poll)
        # Resolve it at once; the alert-test receiver does not send resolved notifications.
        alert["endsAt"] = dt.datetime.now(dt.timezone.utc).isoformat()
        async with http.post(f"{base}/api/v2/alerts", json=[alert]):
            pass
        report.results = list(results.values())
    return report


async def _counters(http: aiohttp.ClientSession, base: str) -> dict[str, tuple[float, float]]:
    async with http.get(f"{base}/metrics") as resp:
        resp.raise_for_status()
        return notification_counters(await resp.text())
