"""The HA example configs in deploy/ha/ are valid as committed (``promtool check config``, which
also reads the file-discovery target files) and keep the settings the HA semantics rest on;
tests/integration/test_ha.py runs them with real processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HA = ROOT / "deploy" / "ha"


def test_promtool_accepts_the_committed_files_in_place(tmp_path: Path):
    # The layout an operator installs: the config, the rules beside it, the target files beside it.
    (tmp_path / "prometheus.yml").symlink_to(HA / "prometheus.yml")
    (tmp_path / "rules").symlink_to(ROOT / "prometheus" / "rules")
    (tmp_path / "targets").symlink_to(HA / "targets")
    result = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "FAILED" not in output, output
    assert 'checking SD file' not in output


def test_the_pair_differs_only_by_replica_and_alertmanager_never_sees_it():
    config = yaml.safe_load((HA / "prometheus.yml").read_text())
    assert config["global"]["external_labels"] == {"cluster": "feedwatch", "replica": "${REPLICA}"}
    assert config["alerting"]["alert_relabel_configs"] == [{"action": "labeldrop", "regex": "replica"}]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["feedwatch"]["file_sd_configs"] == [{"files": ["targets/feedwatch.yml"]}]
    assert config["alerting"]["alertmanagers"] == [{"file_sd_configs": [{"files": ["targets/alertmanagers.yml"]}]}]


def test_every_feedwatch_target_has_a_shard_label():
    groups = yaml.safe_load((HA / "targets" / "feedwatch.yml").read_text())
    assert groups and all(group["labels"]["shard"].isdigit() and group["targets"] for group in groups)
