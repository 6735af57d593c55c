"""The inhibitions of alertmanager/alertmanager.yml, in a real Alertmanager running the committed
file as is: alerts are posted to its API and its own verdict (``status.state`` "suppressed",
``inhibitedBy``) is read back. Each case posts a source and the alerts it must and must not
silence, then resolves them all so the next case starts clean.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from exporter.alerting import stack as alertstack
from tests.waiting import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
SOURCE = {"job": "feedwatch", "instance": "feedwatch:10119"}


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if alertstack.find_binary(alertstack.ALERTMANAGER_BINARIES) is None:
        pytest.fail(f"prometheus-alertmanager is not installed ({alertstack.INSTALL_HINT})")
    process = alertstack.start_alertmanager(ROOT / "alertmanager" / "alertmanager.yml",
                                            tmp_path_factory.mktemp("am"), free_port())
    try:
        wait_for(lambda: alertstack.is_ready(process), timeout=20, what="Alertmanager /-/ready")
        yield process.url
    finally:
        process.stop()


def _post(url: str, alerts: list[dict[str, Any]]) -> None:
    req = urllib.request.Request(f"{url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def _alert(labels: dict[str, str], ends_in: float = 300.0) -> dict[str, Any]:
    now = dt.datetime.now(dt.timezone.utc)
    return {"labels": {**SOURCE, "team": "data", **labels},
            "startsAt": (now - dt.timedelta(seconds=1)).isoformat(),
            "endsAt": (now + dt.timedelta(seconds=ends_in)).isoformat()}


def _states(url: str) -> dict[tuple[tuple[str, str], ...], str]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as resp:
        alerts = json.load(resp)
    return {tuple(sorted((k, v) for k, v in a["labels"].items() if k not in SOURCE)): a["status"]["state"]
            for a in alerts}


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"team": "data", **labels}.items()))


CASES = {
    # FeedDown silences that feed's symbol alerts, not another feed's, not other feed alerts.
    "feed-down": (
        {"alertname": "FeedDown", "severity": "critical", "feed": "stocks"},
        [{"alertname": "FeedSymbolStale", "severity": "critical", "feed": "stocks", "symbol": "AAPL"},
         {"alertname": "FeedSymbolStale", "severity": "warning", "feed": "stocks", "symbol": "MSFT"},
         {"alertname": "FeedSymbolDead", "severity": "critical", "feed": "stocks", "symbol": "IBM"},
         {"alertname": "FeedSymbolFrozen", "severity": "critical", "feed": "stocks", "symbol": "NVDA"},
         {"alertname": "FeedPriceDeviation", "severity": "warning", "feed": "stocks", "instrument": "AAPL"}],
        [{"alertname": "FeedSymbolStale", "severity": "critical", "feed": "binance", "symbol": "BTCUSDT"},
         {"alertname": "FeedPriceDeviation", "severity": "warning", "feed": "generic", "instrument": "AAPL"},
         {"alertname": "FeedReconnectFlapping", "severity": "warning", "feed": "stocks"}],
    ),
    # Sharded (docs/scaling.md): a shard's FeedDown silences that shard's symbols, not another
    # shard's share of the same feed (its symbols going stale is news).
    "feed-down-per-shard": (
        {"alertname": "FeedDown", "severity": "critical", "feed": "stocks", "shard": "0"},
        [{"alertname": "FeedSymbolStale", "severity": "critical", "feed": "stocks", "symbol": "AAPL", "shard": "0"}],
        [{"alertname": "FeedSymbolStale", "severity": "critical", "feed": "stocks", "symbol": "MSFT", "shard": "1"}],
    ),
    # The critical variant silences the warning of the same alert and symbol only.
    "critical-over-warning": (
        {"alertname": "FeedSymbolStale", "severity": "critical", "feed": "stocks", "symbol": "AAPL"},
        [{"alertname": "FeedSymbolStale", "severity": "warning", "feed": "stocks", "symbol": "AAPL"}],
        [{"alertname": "FeedSymbolStale", "severity": "warning", "feed": "stocks", "symbol": "MSFT"},
         {"alertname": "FeedHighLatency", "severity": "warning", "feed": "stocks"}],
    ),
    # A dead subscription supersedes the same symbol's staleness.
    "dead-over-stale": (
        {"alertname": "FeedSymbolDead", "severity": "critical", "feed": "stocks", "symbol": "AAPL"},
        [{"alertname": "FeedSymbolStale", "severity": "critical", "feed": "stocks", "symbol": "AAPL"}],
        [{"alertname": "FeedSymbolStale", "severity": "critical", "feed": "stocks", "symbol": "MSFT"}],
    ),
    # The exporter down silences nothing computed from its metrics: the rules hold those alerts
    # while it is unobserved, and an inhibition would swallow their true resolutions (see
    # test_a_resolution_while_inhibited_is_never_notified). Its only target here is a warning
    # variant of itself (the critical-over-warning rule), which proves the inhibitor has seen it.
    "exporter-down": (
        {"alertname": "FeedwatchExporterDown", "severity": "critical", "reason": "scrape_failing"},
        [{"alertname": "FeedwatchExporterDown", "severity": "warning", "reason": "scrape_failing"}],
        [{"alertname": "FeedDown", "severity": "critical", "feed": "stocks"},
         {"alertname": "FeedSymbolStale", "severity": "critical", "feed": "binance", "symbol": "BTCUSDT"},
         {"alertname": "FeedPriceMove", "severity": "info", "feed": "binance", "symbol": "ETHUSDT"},
         {"alertname": "TradingKillSwitchActive", "severity": "critical", "team": "trading", "account": "main"},
         {"alertname": "Watchdog", "severity": "none"}],
    ),
}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_inhibition(alertmanager: str, case: str) -> None:
    source, silenced, kept = CASES[case]
    everything = [source, *silenced, *kept]
    _post(alertmanager, [_alert(labels) for labels in everything])
    try:
        def settled() -> dict[tuple[tuple[str, str], ...], str] | None:
            # Alertmanager computes "suppressed" when asked, against its inhibitor's view of the
            # source alerts, which learns of a new source asynchronously: wait until that view
            # holds our source (one target suppressed), then judge every alert in one snapshot.
            states = _states(alertmanager)
            if not all(_key(l) in states for l in everything):
                return None
            return states if any(states[_key(l)] == "suppressed" for l in silenced) else None

        states = wait_for(settled, timeout=10, what="the posted alerts, with the source's inhibition in effect")
        assert states[_key(source)] == "active"
        for labels in silenced:
            assert states[_key(labels)] == "suppressed", f"{case}: {labels} should be inhibited"
        for labels in kept:
            assert states[_key(labels)] == "active", f"{case}: {labels} must not be inhibited"
    finally:
        _post(alertmanager, [_alert(labels, ends_in=-0.5) for labels in everything])
        wait_for(lambda: not _states(alertmanager), timeout=10, what="the alerts to resolve")


AM_CONFIG = """
route:
  receiver: hook
  group_by: [team]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
inhibit_rules:
  - source_matchers: [alertname="Blind"]
    target_matchers: [alertname="Held"]
receivers:
  - name: hook
    webhook_configs:
      - url: %(url)s
        send_resolved: true
"""


def test_a_resolution_while_inhibited_is_never_notified(tmp_path: Path) -> None:
    """Why FeedwatchExporterDown inhibits nothing (docs/alerting.md, "When feedwatch itself
    fails"): in the installed Alertmanager, an alert notified as firing that resolves while
    inhibited is dropped at its group's next flush without its resolution ever being sent. An
    exporter-down inhibition would turn every recovery that races the exporter's return into a
    receiver that never hears "resolved".

    Held and Witness share a group (team="x"); Blind (team="y") inhibits Held only. Witness's
    notifications show each flush of the group."""
    from tests.integration.stack import _LoopThread

    loop = _LoopThread()
    webhook = alertstack.WebhookReceiver()
    loop.run(webhook.start())
    config = tmp_path / "alertmanager.yml"
    config.write_text(AM_CONFIG % {"url": webhook.url})
    process = alertstack.start_alertmanager(config, tmp_path / "am", free_port())

    def post(name: str, team: str, ends_in: float = 300.0) -> None:
        _post(process.url, [_alert({"alertname": name, "team": team}, ends_in)])

    def notified(since: int, **statuses: str) -> bool:
        """A notification from ``since`` on with exactly these alerts, in these states."""
        return any({a["labels"]["alertname"]: a["status"] for a in note["alerts"]} == statuses
                   for note in webhook.received[since:])

    try:
        wait_for(lambda: alertstack.is_ready(process), timeout=20, what="Alertmanager /-/ready")
        post("Held", "x")
        post("Witness", "x")
        wait_for(lambda: notified(0, Held="firing", Witness="firing"), timeout=10, what="both notified firing")
        post("Blind", "y")
        wait_for(lambda: any(a["labels"]["alertname"] == "Held" and a["status"]["state"] == "suppressed"
                             for a in _alerts(process.url)), timeout=10, what="Held inhibited by Blind")
        mark = len(webhook.received)
        post("Held", "x", ends_in=-0.5)      # Held resolves while inhibited...
        post("Witness", "x", ends_in=-0.5)   # ...and a flush after it is seen through Witness
        wait_for(lambda: notified(mark, Witness="resolved"), timeout=10,
                 what="Witness's resolution, without Held's")
        post("Blind", "y", ends_in=-0.5)     # the inhibition lifts
        wait_for(lambda: notified(mark, Blind="resolved"), timeout=10, what="Blind's resolution")
        mark = len(webhook.received)
        post("Witness", "x")                 # the group flushes again
        wait_for(lambda: notified(mark, Witness="firing"), timeout=10, what="Witness firing again")
        held = [a["status"] for note in webhook.received for a in note["alerts"]
                if a["labels"]["alertname"] == "Held"]
        assert "firing" in held and "resolved" not in held, f"Held's notifications: {held}"
    finally:
        process.stop()
        loop.run(webhook.stop())
        loop.close()


def _alerts(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as resp:
        return json.load(resp)
