"""HA monitoring on 127.0.0.1 from the committed example configs in ``deploy/ha/``.

Prometheus runs ``deploy/ha/prometheus.yml`` *derived* the way ``exporter/alerting/stack.py``
derives the single-server config, and only that way: every scrape and evaluation interval
compressed (1s, or the test's), the rule files replaced by the committed rules with ``for:``
divided by ``time_scale``, the file-discovery target files written into the run's directory (the
feedwatch replicas with their ``shard`` labels, the Alertmanagers), and its own scrape target's
address. Its external labels,
``alert_relabel_configs``, discovery and scrape jobs are the committed ones; each member gets its
``REPLICA`` from the environment with ``--enable-feature=expand-external-labels``, as documented.

Alertmanagers run the committed ``alertmanager/alertmanager.yml`` rendered with a webhook (as
``start_stack`` does), clustered with the flags docs/scaling.md gives (``CLUSTER_FLAGS``), each
listening for gossip on its own 127.0.0.1 port with the other as ``--cluster.peer``.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from exporter.alerting import stack as alertstack
from tests.waiting import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
HA_PROMETHEUS = ROOT / "deploy" / "ha" / "prometheus.yml"

# Alertmanager's cluster flags beyond the addresses. The peer timeout is how long the second
# member waits for the first one's notification to arrive by gossip before sending it itself:
# 15s by default against a 5m group_interval; compressed here, it must stay well below the test's
# group_interval (12s at time_scale 5) and well above gossip's delay on a busy machine (2s was
# not: under the whole suite's load a notification went out twice).
PEER_TIMEOUT = "5s"


def derive_ha_prometheus_config(workdir: Path, *, rules_dir: Path, targets: Mapping[str, Any],
                                own_address: str, interval: str = "1s", base: Path = HA_PROMETHEUS) -> dict[str, Any]:
    """``deploy/ha/prometheus.yml`` with the substitutions of the module docstring.

    ``targets``: file name (as the committed config names it, e.g. ``feedwatch.yml``) -> the
    file-discovery content to write for it (a list of ``{"targets": [...], "labels": {...}}``).
    """
    config = yaml.safe_load(base.read_text())
    config["global"].update(scrape_interval=interval, evaluation_interval=interval, scrape_timeout=interval)
    for job in config["scrape_configs"]:
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
    config["rule_files"] = [str(rules_dir / "*.yml")]
    target_dir = workdir / "targets"
    target_dir.mkdir(parents=True, exist_ok=True)
    named = set()
    for section in (*config["scrape_configs"], *config["alerting"]["alertmanagers"]):
        for sd in section.get("file_sd_configs", []):
            files = []
            for name in sd["files"]:
                path = target_dir / Path(name).name
                path.write_text(yaml.safe_dump(list(targets[Path(name).name])))
                named.add(Path(name).name)
                files.append(str(path))
            sd["files"] = files
        if section.get("job_name") == "prometheus":
            section["static_configs"] = [{"targets": [own_address]}]
    assert named == set(targets), f"target files the config does not use: {set(targets) - named}"
    return config


def cluster_flags(listen: int, peers: Sequence[int]) -> tuple[str, ...]:
    return (f"--cluster.listen-address=127.0.0.1:{listen}", f"--cluster.advertise-address=127.0.0.1:{listen}",
            *(f"--cluster.peer=127.0.0.1:{peer}" for peer in peers), f"--cluster.peer-timeout={PEER_TIMEOUT}")


def start_alertmanager_cluster(workdir: Path, webhook_url: str, time_scale: float,
                               names: Sequence[str] = ("a", "b")) -> dict[str, alertstack.Process]:
    config = alertstack.derive_alertmanager_config(webhook_url, time_scale)
    gossip = {name: free_port() for name in names}
    members = {}
    for name in names:
        members[name] = alertstack.start_alertmanager(
            config, workdir / f"alertmanager-{name}", free_port(),
            cluster=cluster_flags(gossip[name], [port for other, port in gossip.items() if other != name]))
    return members


def start_ha_prometheus(workdir: Path, replica: str, *, rules_dir: Path, targets: Mapping[str, Any],
                        extra_config: Mapping[str, Any] | None = None, interval: str = "1s") -> alertstack.Process:
    """One member of the pair (``REPLICA=replica``); ``extra_config`` adds top-level sections."""
    port = free_port()
    config = derive_ha_prometheus_config(workdir / f"prometheus-{replica}", rules_dir=rules_dir, targets=targets,
                                         own_address=f"127.0.0.1:{port}", interval=interval)
    config.update(extra_config or {})
    return alertstack.start_prometheus(config, workdir / f"prometheus-{replica}", port,
                                       extra_args=("--enable-feature=expand-external-labels",),
                                       env={"REPLICA": replica})


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def query(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    body = get_json(f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_all_ready(processes: Sequence[alertstack.Process], timeout: float = 30.0) -> None:
    for process in processes:
        wait_for(lambda: alertstack.is_ready(process), timeout=timeout, what=f"{process.name} ready "
                 f"({process.log_path})")
