"""The committed Prometheus rule files as the tests read them.

Every Feed* and Trading* alert reads a ``*_held`` recording rule (its condition plus the hold
while the exporter is unobserved; prometheus/rules/feeds.yml explains the pattern). Tests that
check what an alert *computes* (its joins, its thresholds) look at that record's expression:
``condition(rule)`` returns it, or the alert's own expression when the alert reads no record;
``live_condition(rule)`` only the part that reads what the exporter's series say now (the
records write their branches between lines holding only ``or``; the live one is the branch that
does not read the record itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = ROOT / "prometheus" / "rules"


def groups(path: Path) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text())["groups"]


def records(paths: list[Path] | None = None) -> dict[str, tuple[str, dict[str, Any]]]:
    """record name -> (group name, rule) over the rule files."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for path in paths or sorted(RULES_DIR.glob("*.yml")):
        for group in groups(path):
            for rule in group["rules"]:
                if "record" in rule:
                    found[rule["record"]] = (group["name"], rule)
    return found


def condition(rule: dict[str, Any], known: dict[str, tuple[str, dict[str, Any]]] | None = None) -> str:
    """The expression that decides an alert: its held record's, or its own."""
    known = records() if known is None else known
    expr = rule["expr"].strip()
    return known[expr][1]["expr"] if expr in known else expr


def live_condition(rule: dict[str, Any], known: dict[str, tuple[str, dict[str, Any]]] | None = None) -> str:
    """The alert's condition without its hold: the branch of its record that is not the record."""
    branches, current = [], []
    for line in condition(rule, known).splitlines():
        if line.strip() == "or":
            branches.append("\n".join(current))
            current = []
        else:
            current.append(line)
    branches.append("\n".join(current))
    live = [b for b in branches if rule["expr"].strip() not in b]
    assert len(live) == 1, f"{rule['alert']}: expected one live branch, got {live}"
    return live[0]
