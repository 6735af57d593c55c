"""The promtool unit tests have teeth: each alert's firing, silent and ``for:`` cases are checked
by what promtool does with them, not by the shape of the YAML alone.

- ``for:``: for every alerting rule with a non-zero ``for:``, a copy of prometheus/ is made with
  that one rule's ``for:`` set to 0s, and ``promtool test rules`` must then FAIL naming the alert.
  A test file whose cases all sit after the ``for:`` has elapsed cannot notice the mutation, so
  this fails exactly when no case proves the ``for:`` holds the alert back. The critical-path
  alerts have ``for: 0s`` on purpose (they must fire at the first evaluation that sees them):
  for those the mutation is the other way, ``for: 1m``, and must fail just the same.
- firing: every alert has a check that expects it (promtool then demands those exact alerts).
- silent: every alert has a check expecting nothing, or an input entity (its ``account``,
  ``symbol`` or ``feed``) that the alert is evaluated on and never expected to fire for (promtool
  compares the full list, so an alert for it would fail the test).

promtool is Debian's (package ``prometheus``); a missing binary fails, never skips.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))
IDENTITY = ("account", "symbol", "feed")


def promtool_binary() -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed: apt-get install prometheus (Debian package)"
    return binary


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", str(duration))
    assert parts, f"unreadable duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def rules_of(path: Path) -> list[tuple[int, int, dict[str, Any]]]:
    """(group index, rule index, rule) for each alerting rule of a rules file."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return [(g, r, rule) for g, group in enumerate(groups) for r, rule in enumerate(group["rules"])
            if "alert" in rule]


def promtool_tests_for(rule_file: Path, alertname: str | None = None) -> list[Path]:
    """The promtool test files that load ``rule_file`` (and have cases for ``alertname``: only
    those can notice a mutation of it)."""
    found = []
    for test in TEST_FILES:
        text = test.read_text()
        loaded = yaml.safe_load(text).get("rule_files", [])
        if any((test.parent / name).resolve() == rule_file.resolve() for name in loaded):
            if alertname is None or f"alertname: {alertname}\n" in text:
                found.append(test)
    return found


MUTANTS = [(path, g, r, rule) for path in RULE_FILES for g, r, rule in rules_of(path)]


def mutated_for(rule: dict[str, Any]) -> str:
    """The for: a mutant gets: 0s for a debounced alert, 1m for an immediate one."""
    return "0s" if seconds(rule.get("for", "0s")) > 0 else "1m"


def _copy(tmp_path: Path, mutate: tuple[Path, int, int] | None = None) -> Path:
    """prometheus/rules and prometheus/tests under tmp_path, every rules file round-tripped through
    YAML (so the unmutated copy is the control), one rule's for: mutated if asked."""
    copy = tmp_path / "prometheus"
    (copy / "rules").mkdir(parents=True)
    shutil.copytree(PROMETHEUS / "tests", copy / "tests")
    for path in RULE_FILES:
        data = yaml.safe_load(path.read_text())
        if mutate is not None and mutate[0] == path:
            rule = data["groups"][mutate[1]]["rules"][mutate[2]]
            rule["for"] = mutated_for(rule)
        (copy / "rules" / path.name).write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return copy


@pytest.fixture(scope="module")
def controls() -> dict[tuple, subprocess.CompletedProcess[str]]:
    """The unmutated run per (rules file, test files), made once for the module (by the first
    mutant that needs it)."""
    return {}


def _promtool_test(copy: Path, tests: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool_binary(), "test", "rules", *(str(copy / "tests" / t.name) for t in tests)],
                          capture_output=True, text=True, cwd=copy / "tests", timeout=120)


def test_there_are_mutants_for_every_rule_file() -> None:
    assert {path.name for path, *_ in MUTANTS} == {path.name for path in RULE_FILES}


def test_the_unmutated_copy_passes(tmp_path: Path) -> None:
    """The control: without it, a mutant 'failing' would prove nothing."""
    done = _promtool_test(_copy(tmp_path), TEST_FILES)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path,group,index,rule", MUTANTS,
                         ids=[f"{p.stem}-{rule['alert']}-{rule['labels'].get('severity', '')}"
                              for p, _, _, rule in MUTANTS])
def test_mutating_for_is_caught(controls: dict, tmp_path: Path, path: Path, group: int, index: int, rule: dict[str, Any]) -> None:
    tests = promtool_tests_for(path, rule["alert"])
    assert tests, f"no promtool test file loads {path.name} and tests {rule['alert']}"
    key = (path, tuple(tests))
    control = controls.get(key)
    if control is None:
        control = controls[key] = _promtool_test(_copy(tmp_path / "control"), tests)
    assert control.returncode == 0, "the unmutated tests fail already:\n" + control.stdout + control.stderr
    done = _promtool_test(_copy(tmp_path / "mutant", (path, group, index)), tests)
    name, severity = rule["alert"], rule["labels"].get("severity")
    assert done.returncode != 0, (
        f"{path.name}: {name} ({severity}) with for: {mutated_for(rule)} instead of {rule.get('for')} still "
        f"passes every promtool case: no case proves its for:")
    assert f"alertname: {name}," in done.stdout + done.stderr, done.stdout + done.stderr


def _cases() -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]:
    """alertname -> [(test group, check)] over every promtool test file."""
    found: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for test in TEST_FILES:
        for group in yaml.safe_load(test.read_text())["tests"]:
            for check in group.get("alert_rule_test", []):
                found.setdefault(check["alertname"], []).append((group, check))
    return found


def _series_labels(series: str) -> dict[str, str]:
    body = series[series.index("{") + 1:series.rindex("}")] if "{" in series else ""
    return dict(re.findall(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"', body))


def _silent_entities(group: dict[str, Any], checks: list[dict[str, Any]]) -> set[tuple]:
    """Entities (account/symbol/feed values) with input series that no check expects to fire."""
    fired = [alert["exp_labels"] for check in checks for alert in check["exp_alerts"]]
    silent = set()
    for item in group.get("input_series", []):
        labels = _series_labels(item["series"])
        entity = tuple((k, labels[k]) for k in IDENTITY if k in labels)
        if entity and not any(all(exp.get(k, v) == v for k, v in entity) for exp in fired):
            silent.add(entity)
    return silent


ALERT_NAMES = sorted({rule["alert"] for path in RULE_FILES for _, _, rule in rules_of(path)})


@pytest.mark.parametrize("alertname", ALERT_NAMES)
def test_every_alert_has_a_firing_and_a_silent_case(alertname: str) -> None:
    cases = _cases().get(alertname, [])
    assert any(check["exp_alerts"] for _, check in cases), f"{alertname}: no firing case"
    if alertname == "Watchdog":  # vector(1): nothing can make it silent but its for:
        return
    empty = [check for _, check in cases if not check["exp_alerts"]]
    by_group: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for group, check in cases:
        by_group.setdefault(id(group), (group, []))[1].append(check)
    silent_inputs = set().union(*(_silent_entities(g, checks) for g, checks in by_group.values()))
    assert empty or silent_inputs, (
        f"{alertname}: no case where it must stay silent (an empty exp_alerts, or an input that "
        f"never fires)")
