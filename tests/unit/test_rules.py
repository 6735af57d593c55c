"""Prometheus config and rules: promtool's checks and unit tests, plus the contract every alert keeps.

promtool is Debian's (package ``prometheus``); a missing binary fails these tests with the
install line, it never skips them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import rulefiles

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
MY_RULE_FILES = [PROMETHEUS / "rules" / "feeds.yml", PROMETHEUS / "rules" / "exporter.yml"]
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/feedwatch/feedwatch/blob/main/docs/runbook.md#"

# design.md: the alert names are a contract with the routes and the runbook.
DESIGN_ALERTS = {
    "FeedSymbolStale", "FeedSymbolDead", "FeedDown", "FeedSilent", "FeedHeartbeatMissing",
    "FeedReconnectFlapping", "FeedHighLatency", "FeedRejectingUpdates", "FeedPriceMove",
    "FeedwatchExporterDown", "Watchdog", "FeedwatchMarketCalendarEnding", "FeedwatchConfigReloadFailed",
    # Replicas and shards (docs/scaling.md).
    "FeedwatchReplicaDown", "FeedReplicaUnhealthy", "FeedwatchShardMislabelled", "FeedwatchShardMissing",
    "FeedwatchTickSinkDropping",
    "FeedRestFallbackActive", "FeedSymbolsRefused",
    "FeedSymbolFrozen", "FeedPriceDeviation", "FeedwatchFallingBehind",
}
SEVERITIES = {"critical", "warning", "info", "none"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed: apt-get install prometheus (Debian package)"
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def alert_rules(paths: list[Path]) -> list[dict[str, Any]]:
    rules = []
    for path in paths:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(r for r in group["rules"] if "alert" in r)
    return rules


def test_promtool_check_config() -> None:
    done = promtool("check", "config", "prometheus/prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", *[str(p.relative_to(ROOT)) for p in RULE_FILES])
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_test_rules() -> None:
    tests = sorted(str(p.relative_to(ROOT)) for p in (PROMETHEUS / "tests").glob("*.yml"))
    assert "prometheus/tests/feeds_test.yml" in tests and "prometheus/tests/exporter_test.yml" in tests
    done = promtool("test", "rules", *tests)
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_yml_loads_every_rule_file_and_scrapes_the_feedwatch_job() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules/*.yml"]  # trading.yml loads without an edit here
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"feedwatch", "alertmanager"} <= jobs.keys()
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_every_design_alert_exists() -> None:
    names = {rule["alert"] for rule in alert_rules(MY_RULE_FILES)}
    assert names == DESIGN_ALERTS


@pytest.mark.parametrize("rule", alert_rules(MY_RULE_FILES),
                         ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_alert_contract(rule: dict[str, Any]) -> None:
    """severity, team, for:, static summary, templated description, runbook anchor."""
    name = rule["alert"]
    assert re.fullmatch(r"(?:[A-Z][a-z0-9]*)+", name), "alerts are CamelCase"
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["labels"]["team"] == "data"
    assert "for" in rule
    annotations = rule["annotations"]
    assert "{{" not in annotations["summary"], "summary is a static sentence"
    description = annotations["description"]
    if name != "Watchdog":
        assert "{{" in description and "$labels." in description, "description names what is affected"
    assert annotations["runbook_url"] == RUNBOOK_URL + name.lower()


def test_symbol_alerts_read_the_exporters_classification_and_never_closed() -> None:
    # state -1 (closed) must match no alert: every state comparison excludes negative values,
    # in the alert's condition and in the hold that keeps it (its *_held record).
    # Across replicas (docs/scaling.md) the state is read merged: a max/min of it over the replicas
    # (a ")" before the comparison), or the merged record, which itself keeps states >= 1 only.
    checked = 0
    state = r"(?:shard_feed_symbol:feedwatch_symbol_state:unhealthy|feedwatch_symbol_state(?:\{[^}]*\})?\)?)"
    for rule in alert_rules(RULE_FILES):
        for op, value in re.findall(state + r"\s*(>=|==|>)\s*(-?\d+)", rulefiles.condition(rule)):
            assert int(value) >= 0, f"{rule['alert']}: feedwatch_symbol_state {op} {value} admits closed"
            checked += 1
    assert checked >= 5
    merged = " ".join(rulefiles.records()["shard_feed_symbol:feedwatch_symbol_state:unhealthy"][1]["expr"].split())
    assert merged.endswith(") >= 1"), merged


HELD = re.compile(r"[a-z_]+:[a-z_]+:(?:[a-z0-9_]+_)?held")


# The alerts that are not computed from the exporter's series: they need no hold.
NOT_FROM_THE_EXPORTER = {"FeedwatchExporterDown", "FeedwatchReplicaDown", "Watchdog"}


@pytest.mark.parametrize("rule", [r for r in alert_rules(RULE_FILES) if r["alert"] not in NOT_FROM_THE_EXPORTER],
                         ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_every_alert_holds_what_it_knew_while_the_exporter_is_unobserved(rule: dict[str, Any]) -> None:
    """docs/alerting.md, "When feedwatch itself fails": each alert computed from the exporter's
    series reads a *_held record of the same group, recorded before it (rules of a group run in
    order), that carries its own previous value while `up` of the exporter is not 1, for at most
    an hour after Prometheus lost the target. A new alert follows the same pattern
    (prometheus/rules/feeds.yml explains it), or it would "resolve" whenever the exporter dies."""
    name = rule["expr"].strip()
    assert HELD.fullmatch(name), f"{rule['alert']} reads {name!r}, not a *_held record"
    for path in RULE_FILES:
        for group in rulefiles.groups(path):
            names = [r.get("record") or r.get("alert") for r in group["rules"]]
            if rule in group["rules"]:
                assert name in names[:group["rules"].index(rule)], f"{name} is not recorded before {rule['alert']}"
                record = next(r for r in group["rules"] if r.get("record") == name)
    expr = " ".join(record["expr"].split())
    assert name in expr, f"{name} does not carry its own previous value"
    # Per exporter (job, instance), per job, or per replica set (job, shard: held while no
    # replica of the shard is up, docs/scaling.md); `up` of the exporter's job (the mixin's
    # selector, tests/unit/test_mixin.py), or of any job where positions come from a bot's own
    # (TradingStalePricePosition).
    up = r'up\{job(?:="feedwatch"|=~"\.\+")\}'
    assert re.search(rf"unless on \(job(, instance|, shard)?\) ((min by \(job\)|max by \(job, shard\)) \()?{up}\)? == 1",
                     expr), expr
    assert re.search(rf"present_over_time\({up}\[1h\]\)", expr), expr


def test_warning_and_critical_variants_differ_in_for() -> None:
    stale = [r for r in alert_rules(MY_RULE_FILES) if r["alert"] == "FeedSymbolStale"]
    assert {r["labels"]["severity"] for r in stale} == {"warning", "critical"}
    assert len({r["for"] for r in stale}) == 2


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_recording_rules_are_named_level_metric_operation_and_commented(path: Path) -> None:
    text = path.read_text()
    records = re.findall(r"((?:^\s*#.*\n)*)^\s*- record: (\S+)", text, re.M)
    if path.name != "exporter.yml":
        assert records
    for comment, name in records:
        assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", name), name
        assert comment.strip(), f"{name} needs a comment saying what it means"


def _unit_tests() -> list[dict[str, Any]]:
    cases = []
    for path in sorted((PROMETHEUS / "tests").glob("*_test.yml")):
        for test in yaml.safe_load(path.read_text())["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


def test_every_alert_has_a_firing_a_silent_and_a_for_case() -> None:
    """The promtool files hold, per alert, a firing case and an empty case before it fires."""
    by_alert: dict[str, list[dict[str, Any]]] = {}
    for case in _unit_tests():
        by_alert.setdefault(case["alertname"], []).append(case)
    for name in DESIGN_ALERTS:
        cases = by_alert.get(name, [])
        firing = [c for c in cases if c["exp_alerts"]]
        silent = [c for c in cases if not c["exp_alerts"]]
        assert firing, f"{name}: no firing case"
        assert silent, f"{name}: no case where it must not fire (for: or a silent input)"
        for case in firing:
            for alert in case["exp_alerts"]:
                assert {"summary", "description", "runbook_url"} <= alert["exp_annotations"].keys()


def test_runbook_has_an_entry_per_alert() -> None:
    headings = {m.lower() for m in re.findall(r"^## (\S+)\s*$", RUNBOOK.read_text(), re.M)}
    for name in DESIGN_ALERTS:
        assert name.lower() in headings, f"docs/runbook.md lacks '## {name}'"
