"""The trading rules: promtool's own tests pass, every alert follows the conventions, every alert
is routed to the trading receivers by the real Alertmanager config (amtool), and has a runbook entry."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import rulefiles

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "prometheus" / "rules" / "trading.yml"
# trading_test.yml, trading_critical_test.yml (the 5s critical path), and held_test.yml, which
# tests every rule file while the exporter cannot be observed.
TESTS = sorted((ROOT / "prometheus" / "tests").glob("*_test.yml"))
TRADING_TESTS = [t for t in TESTS if "../rules/trading.yml" in yaml.safe_load(t.read_text())["rule_files"]]
ALERTMANAGER = ROOT / "alertmanager" / "alertmanager.yml"
ALERT_NAMES = ("TradingDrawdownDaily", "TradingDrawdownWeekly", "TradingDrawdownTotal", "TradingCircuitBreakerOpen",
               "TradingKillSwitchActive", "TradingConsecutiveLosses", "TradingApiErrors", "TradingStalePricePosition")


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_and_unit_tests_pass():
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert {t.name for t in TRADING_TESTS} >= {"trading_test.yml", "trading_critical_test.yml", "held_test.yml"}
    run = subprocess.run(["promtool", "test", "rules", *map(str, TRADING_TESTS)], capture_output=True, text=True,
                         cwd=RULES.parent.parent / "tests")
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_contracted_alerts_exist_and_no_others():
    assert {rule["alert"] for rule in alert_rules()} == set(ALERT_NAMES)


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_alert_conventions(rule: dict):
    name = rule["alert"]
    assert rule["labels"]["team"] == "trading"
    assert rule["labels"]["severity"] in ("critical", "warning", "info")
    assert rule.get("for"), "every alert has a for:"
    annotations = rule["annotations"]
    assert "{{" not in annotations["summary"], "summary is a static sentence"
    assert "{{ $labels.account }}" in annotations["description"], "description is templated"
    assert annotations["runbook_url"] == (
        f"https://github.com/feedwatch/feedwatch/blob/main/docs/runbook.md#{name.lower()}")
    expr = rulefiles.condition(rule)
    # Limits come from the exporter's series, never constants in the rule (80 % is a fraction of it).
    if name.startswith("TradingDrawdown") or name in ("TradingConsecutiveLosses", "TradingApiErrors"):
        assert "feedwatch_trading_limit_" in expr
        assert not re.search(r"(>=?|<=?)\s*\d", expr), f"a constant threshold in {name}: {expr}"


def test_every_alert_has_firing_and_for_cases():
    tests = [case for path in TRADING_TESTS for case in yaml.safe_load(path.read_text())["tests"]]
    firing, eval_times = set(), {}
    for case in tests:
        for check in case.get("alert_rule_test", []):
            if check["exp_alerts"] and check["alertname"].startswith("Trading"):
                firing.add(check["alertname"])
            eval_times.setdefault(check["alertname"], set()).add(check["eval_time"])
    assert firing == set(ALERT_NAMES)
    # At least two distinct evaluation times per alert (one before the for: has elapsed, or, for
    # the for: 0s critical path, one before the condition). That they pin the for: is proven by
    # tests/unit/test_rules_mutation.py, which changes each for: and requires promtool to fail.
    assert all(len(eval_times[name]) >= 2 for name in ALERT_NAMES), eval_times


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: f"{r['alert']}-{r['labels']['severity']}")
def test_alertmanager_routes_each_alert_to_the_trading_receiver(rule: dict):
    labels = {**rule["labels"], "alertname": rule["alert"], "account": "main", "job": "feedwatch",
              "instance": "feedwatch:10119"}
    expected = f"trading-{labels['severity']}"
    run = subprocess.run(["amtool", "config", "routes", "test", f"--config.file={ALERTMANAGER}",
                          f"--verify.receivers={expected}", *(f"{k}={v}" for k, v in labels.items())],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_has_a_runbook_entry():
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    headings = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                for h in re.findall(r"^#+\s+(.+?)\s*$", runbook, re.M)}
    for name in ALERT_NAMES:
        assert name.lower() in headings, f"docs/runbook.md has no heading for {name}"
