"""HA Prometheus and an Alertmanager cluster, as real processes from ``deploy/ha/``.

Two Prometheus (external labels ``replica="a"`` and ``"b"``, the committed rules, ``for:``
and Alertmanager's group waits compressed 5x) scrape one exporter and send every alert to two
Alertmanagers that gossip on 127.0.0.1; a webhook records every notification. Symbols are
stalled and resumed through the simulator, one at a time:

1. both pairs whole: AAPL's stale alert is notified, once;
2. one Alertmanager killed (SIGKILL): MSFT's alert and AAPL's resolution still arrive, once each;
3. one Prometheus killed too: NVDA's alert and MSFT's resolution still arrive, once each.

"Once": no two notifications carry the same group, status and alerts (the second Alertmanager
waits ``--cluster.peer-timeout`` for the first one's notification log to arrive by gossip, and
stays quiet when it has). Alertmanager notifies at least once, not exactly once: one killed in
the instant between sending and gossiping its log is followed by a duplicate from its peer, so
the Alertmanager is killed once its log has reached the peer (``gossiped``).

The alerts reach Alertmanager without ``replica`` (dropped by ``alert_relabel_configs``), so the
two Prometheus' copies are one alert; ``cluster`` stays.
"""

from __future__ import annotations

import collections
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from exporter.alerting import stack as alertstack
from tests.integration import ha
from tests.integration.replicas import simulator_fault, start_exporter, start_simulator, stop_popen, wait_ready
from tests.integration.stack import _LoopThread
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

TIME_SCALE = 5.0

EXPORTER_CONFIG = """
thresholds: {degraded: 3s, stale: 5s, critical: 1h}
feeds:
  - name: stocks
    kind: polygon
    url: ${SIM_URL}
    api_key: k
    channels: [Q]
    symbols: [AAPL, MSFT, NVDA, TSLA]
    ping_interval: 1s
    heartbeat_timeout: 5s
    silence_timeout: 60s
    reconnect: {initial_delay: 200ms, max_delay: 1s, reset_after: 5s}
"""


def metric(url: str, name: str) -> float:
    """One unlabelled-or-webhook sample of an Alertmanager's own /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    match = re.search(rf'^{name}(?:{{integration="webhook"}})? (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def gossiped(ams: dict[str, alertstack.Process]) -> bool:
    """Every notification an Alertmanager sent has reached the others' notification logs.

    Alertmanager notifies at least once: a member killed between sending a notification and
    gossiping its log entry (the next gossip round, ~200 ms) leaves its peer no trace of it, and
    the peer sends it again after its peer timeout. Killing one only once this holds is what makes
    "once" the thing under test.
    """
    sent = {name: metric(am.url, "alertmanager_notifications_total")
            - metric(am.url, "alertmanager_notifications_failed_total") for name, am in ams.items()}
    return all(metric(am.url, "alertmanager_nflog_gossip_messages_propagated_total")
               >= sum(n for other, n in sent.items() if other != name) for name, am in ams.items())


def notification_key(note: dict[str, Any]) -> tuple:
    """What makes two notifications the same notification."""
    return (note["receiver"], note["groupKey"], note["status"],
            frozenset((a["fingerprint"], a["status"]) for a in note["alerts"]))


def describe(received: list[dict[str, Any]]) -> str:
    return "\n".join(alertstack.format_notification(n) for n in received) or "(nothing)"


def test_ha_pair_and_alertmanager_cluster_notify_once_and_survive_losing_one_of_each(tmp_path: Path):
    loop = _LoopThread()
    webhook = alertstack.WebhookReceiver()
    loop.run(webhook.start())
    processes: list[alertstack.Process] = []
    sim = exporter = None
    try:
        sim = start_simulator("stocks", ["--venue", "polygon", "--symbols", "AAPL,MSFT,NVDA,TSLA", "--rate", "5",
                                         "--api-key", "k", "--seed", "11"], tmp_path)
        config = tmp_path / "feedwatch.yml"
        config.write_text(EXPORTER_CONFIG)
        exporter = start_exporter(config, tmp_path, "exporter", env={"SIM_URL": sim.ws_url})
        wait_ready(exporter)

        ams = ha.start_alertmanager_cluster(tmp_path, webhook.url, TIME_SCALE)
        processes += ams.values()
        rules = alertstack.derive_rules(tmp_path / "rules", TIME_SCALE)
        targets = {"feedwatch.yml": [{"targets": [exporter.target], "labels": {"shard": "0"}}],
                   "alertmanagers.yml": [{"targets": [am.url.split("//")[1] for am in ams.values()]}]}
        proms = {r: ha.start_ha_prometheus(tmp_path, r, rules_dir=rules, targets=targets) for r in ("a", "b")}
        processes += proms.values()
        ha.wait_all_ready(processes)

        # The topology is real: each Prometheus sends to both Alertmanagers, which see each other.
        for prom in proms.values():
            wait_for(lambda: len(ha.get_json(f"{prom.url}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]) == 2,
                     timeout=30, what=f"{prom.name} discovering both Alertmanagers")
            wait_for(lambda: ha.query(prom.url, 'up{job="feedwatch"} == 1'), timeout=30, what="scraping the exporter")
        for am in ams.values():
            wait_for(lambda: (s := ha.get_json(f"{am.url}/api/v2/status")["cluster"])["status"] == "ready"
                     and len(s["peers"]) == 2, timeout=60, what=f"{am.log_path.parent.name} in a cluster of two")
            # FeedwatchExporterDown's absent() branch can fire before the first scrape: let it go.
            wait_for(lambda: not [a for a in ha.get_json(f"{am.url}/api/v2/alerts")
                                  if a["labels"]["alertname"] == "FeedwatchExporterDown"],
                     timeout=30, what="no FeedwatchExporterDown")

        def notified(symbol: str, status: str) -> bool:
            return any(a["labels"].get("symbol") == symbol and a["labels"]["alertname"] == "FeedSymbolStale"
                       and a["labels"]["severity"] == "critical" and a["status"] == status
                       for a in alertstack.notification_alerts(webhook.received))

        def wait_notified(symbol: str, status: str) -> None:
            try:
                wait_for(lambda: notified(symbol, status), timeout=120, interval=0.2,
                         what=f"FeedSymbolStale {symbol} {status} notified")
            except AssertionError as exc:
                logs = "\n".join(f"--- {p.name} {p.log_path}\n{p.log_tail(10)}" for p in processes)
                raise AssertionError(f"{exc}\nreceived:\n{describe(webhook.received)}\n{logs}") from None

        # 1. Everything up.
        simulator_fault(sim, "stall", "AAPL")
        wait_notified("AAPL", "firing")
        for am in ams.values():  # both members hold the alert: it reached each from the Prometheus
            assert any(a["labels"].get("symbol") == "AAPL" for a in ha.get_json(f"{am.url}/api/v2/alerts"))

        # 2. One Alertmanager dies (once what it sent is in its peer's notification log).
        wait_for(lambda: gossiped(ams), timeout=30, what="the notification logs gossiped")
        ams["a"].popen.kill()
        ams["a"].popen.wait(10)
        simulator_fault(sim, "stall", "MSFT")
        simulator_fault(sim, "resume", "AAPL")
        wait_notified("MSFT", "firing")
        wait_notified("AAPL", "resolved")

        # 3. One Prometheus dies too.
        proms["a"].popen.kill()
        proms["a"].popen.wait(10)
        simulator_fault(sim, "stall", "NVDA")
        simulator_fault(sim, "resume", "MSFT")
        wait_notified("NVDA", "firing")
        wait_notified("MSFT", "resolved")

        counts = collections.Counter(notification_key(n) for n in webhook.received)
        twice = [key for key, n in counts.items() if n > 1]
        senders = [(n.get("externalURL"), round(n["_received_at"], 2)) for n in webhook.received
                   if notification_key(n) in twice]
        assert not twice, f"notified more than once: {twice} by {senders}\n{describe(webhook.received)}"
        alerts = alertstack.notification_alerts(webhook.received)
        assert all("replica" not in a["labels"] and a["labels"].get("cluster") == "feedwatch" for a in alerts), \
            [a["labels"] for a in alerts]
    finally:
        for process in processes:
            process.stop()
        if exporter is not None:
            exporter.stop()
        if sim is not None:
            stop_popen(sim.popen)
        loop.run(webhook.stop())
        loop.close()
