"""Redundant replicas, as real processes: two ``feedwatch run`` of the same shard (target label
``shard="0"`` on both) watch one simulator; a real Prometheus runs the committed rules (``for:``
compressed 30x, from ``deploy/ha/prometheus.yml``) and a real Alertmanager notifies a webhook.

1. One replica is killed (SIGKILL): the only alert that goes pending or fires is
   ``FeedwatchReplicaDown`` (plus the always-on ``Watchdog``) - watched at every evaluation for
   longer than the symbols' stale threshold plus their ``for:``, so a per-symbol or feed alert
   computed from the dead replica would have had time to show.
2. It is restarted, and a symbol is stalled at the venue (so on both replicas): ``FeedSymbolStale``
   fires once per severity, labelled by shard and without ``instance``, and is notified once.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from exporter.alerting import stack as alertstack
from tests.integration import ha
from tests.integration.replicas import (
    ExporterProcess, simulator_fault, start_exporter, start_simulator, stop_popen, wait_ready,
)
from tests.integration.stack import _LoopThread
from tests.waiting import free_port, wait_for

pytestmark = pytest.mark.integration

TIME_SCALE = 30.0

EXPORTER_CONFIG = """
thresholds: {degraded: 3s, stale: 5s, critical: 1h}
feeds:
  - name: stocks
    kind: polygon
    url: ${SIM_URL}
    api_key: k
    channels: [Q]
    symbols: [AAPL, MSFT, NVDA]
    ping_interval: 1s
    heartbeat_timeout: 5s
    silence_timeout: 60s
    reconnect: {initial_delay: 200ms, max_delay: 1s, reset_after: 5s}
"""


def evaluations(prometheus_url: str) -> int:
    """How many times Prometheus has evaluated the feed alerts (its own counter)."""
    with urllib.request.urlopen(f"{prometheus_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    match = re.search(r'^prometheus_rule_group_iterations_total\{rule_group="[^"]*;feedwatch\.feeds\.alerts"\} (\S+)$',
                      text, re.M)
    return int(float(match.group(1))) if match else 0


def active(prometheus_url: str) -> list[dict[str, Any]]:
    """Alerts pending or firing in Prometheus."""
    return ha.get_json(f"{prometheus_url}/api/v1/alerts")["data"]["alerts"]


def test_one_replica_dying_is_one_alert_and_a_stall_on_both_is_one_stale_alert(tmp_path: Path):
    loop = _LoopThread()
    webhook = alertstack.WebhookReceiver()
    loop.run(webhook.start())
    processes: list[alertstack.Process] = []
    replicas: dict[str, ExporterProcess] = {}
    sim = None
    try:
        sim = start_simulator("stocks", ["--venue", "polygon", "--symbols", "AAPL,MSFT,NVDA", "--rate", "5",
                                         "--api-key", "k", "--seed", "5"], tmp_path)
        config = tmp_path / "feedwatch.yml"
        config.write_text(EXPORTER_CONFIG)
        env = {"SIM_URL": sim.ws_url}
        replicas = {name: start_exporter(config, tmp_path, f"replica-{name}", env=env) for name in ("a", "b")}
        for replica in replicas.values():
            wait_ready(replica)

        am = alertstack.start_alertmanager(alertstack.derive_alertmanager_config(webhook.url, TIME_SCALE),
                                           tmp_path / "alertmanager", free_port())
        processes.append(am)
        rules = alertstack.derive_rules(tmp_path / "rules", TIME_SCALE, interval="2s")
        targets = {"feedwatch.yml": [{"targets": [r.target for r in replicas.values()], "labels": {"shard": "0"}}],
                   "alertmanagers.yml": [{"targets": [am.url.split("//")[1]]}]}
        # Every 2s: a scrape that times out under load would make the surviving replica look
        # down too (and page), which is not what this test is about.
        prom = ha.start_ha_prometheus(tmp_path, "a", rules_dir=rules, targets=targets, interval="2s")
        processes.append(prom)
        ha.wait_all_ready(processes)
        wait_for(lambda: len(ha.query(prom.url, 'up{job="feedwatch"} == 1')) == 2, timeout=30,
                 what="Prometheus scraping both replicas")
        # Nothing but the Watchdog once both replicas are scraped (the absent() start-up branch of
        # FeedwatchExporterDown may show before the first scrape).
        wait_for(lambda: {a["labels"]["alertname"] for a in active(prom.url)} <= {"Watchdog"}, timeout=30,
                 what="a quiet start")

        # 1. One replica dies.
        replicas["b"].kill()
        start = evaluations(prom.url)
        seen: set[str] = set()

        def replica_down_and_long_enough() -> bool:
            seen.update(a["labels"]["alertname"] for a in active(prom.url))
            notified = any(a["labels"]["alertname"] == "FeedwatchReplicaDown" and a["status"] == "firing"
                           for a in alertstack.notification_alerts(webhook.received))
            # 12 evaluations (2s apart) > the 5s stale threshold + the symbol alerts' compressed for:.
            return notified and evaluations(prom.url) >= start + 12

        wait_for(replica_down_and_long_enough, timeout=90, interval=0.2,
                 what="FeedwatchReplicaDown notified and 12 evaluations since the kill")
        assert seen <= {"FeedwatchReplicaDown", "Watchdog"}, f"alerts besides the replica's: {seen}"
        down = [a for a in active(prom.url) if a["labels"]["alertname"] == "FeedwatchReplicaDown"]
        assert [a["labels"]["instance"] for a in down] == [replicas["b"].target]
        assert {a["labels"]["alertname"] for a in alertstack.notification_alerts(webhook.received)} <= \
            {"FeedwatchReplicaDown", "Watchdog"}

        # 2. Back to two replicas; then a symbol stalls at the venue, for both.
        replicas["b"] = start_exporter(config, tmp_path, "replica-b", env=env, port=replicas["b"].port)
        wait_ready(replicas["b"])
        wait_for(lambda: not [a for a in active(prom.url) if a["labels"]["alertname"] == "FeedwatchReplicaDown"],
                 timeout=30, what="FeedwatchReplicaDown resolved")
        simulator_fault(sim, "stall", "AAPL")

        def stale_on_both() -> bool:
            states = [next(v for n, labels, v in r.samples()
                           if n == "feedwatch_symbol_state" and labels["symbol"] == "AAPL") for r in replicas.values()]
            return all(state >= 2 for state in states)

        wait_for(stale_on_both, timeout=30, what="AAPL stale on both replicas")
        wait_for(lambda: any(a["labels"]["alertname"] == "FeedSymbolStale" and a["labels"]["severity"] == "critical"
                             for a in alertstack.notification_alerts(webhook.received)),
                 timeout=60, interval=0.2, what="FeedSymbolStale notified")
        stale = [a for a in active(prom.url) if a["labels"]["alertname"] == "FeedSymbolStale"]
        assert sorted(a["labels"]["severity"] for a in stale) == ["critical", "warning"], stale
        for alert in stale:
            assert "instance" not in alert["labels"] and alert["labels"]["shard"] == "0"
            assert alert["labels"]["symbol"] == "AAPL"
        notified = [a for a in alertstack.notification_alerts(webhook.received)
                    if a["labels"]["alertname"] == "FeedSymbolStale" and a["status"] == "firing"]
        assert len({a["fingerprint"] for a in notified if a["labels"]["severity"] == "critical"}) == 1
        assert all(a["labels"]["symbol"] == "AAPL" for a in notified)
    finally:
        for process in reversed(processes):
            process.stop()
        for replica in replicas.values():
            replica.stop()
        if sim is not None:
            stop_popen(sim.popen)
        loop.run(webhook.stop())
        loop.close()
