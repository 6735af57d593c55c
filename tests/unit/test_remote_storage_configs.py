"""The remote-storage snippets in deploy/remote-storage/ are valid Prometheus configuration: each,
added to the HA pair's deploy/ha/prometheus.yml, passes ``promtool check config``. (VictoriaMetrics'
is also run for real by tests/integration/test_remote_storage.py; Mimir cannot run here.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SNIPPETS = sorted((ROOT / "deploy" / "remote-storage").glob("*.yml"))


def test_there_are_snippets_for_victoriametrics_and_mimir():
    assert {p.stem for p in SNIPPETS} == {"victoriametrics", "mimir"}


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda p: p.stem)
def test_each_snippet_makes_a_valid_prometheus_config(snippet: Path, tmp_path: Path):
    config = yaml.safe_load((ROOT / "deploy" / "ha" / "prometheus.yml").read_text())
    extra = yaml.safe_load(snippet.read_text())
    assert set(extra) == {"remote_write"}, "a snippet holds only the section it adds"
    config.update(extra)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "rules").symlink_to(ROOT / "prometheus" / "rules")
    (tmp_path / "targets").symlink_to(ROOT / "deploy" / "ha" / "targets")
    result = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "FAILED" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_victoriametrics_gets_one_series_per_pair_and_mimir_the_replica_label_it_dedups_on():
    vm = yaml.safe_load((ROOT / "deploy" / "remote-storage" / "victoriametrics.yml").read_text())["remote_write"][0]
    assert vm["write_relabel_configs"] == [{"action": "labeldrop", "regex": "replica"}]
    mimir = yaml.safe_load((ROOT / "deploy" / "remote-storage" / "mimir.yml").read_text())["remote_write"][0]
    assert "write_relabel_configs" not in mimir
