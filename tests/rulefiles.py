"""The committed Prometheus rule files as the tests read them.

Every Feed* and Trading* alert reads a ``*_held`` recording rule (its condition plus the hold
while the exporter is unobserved; prometheus/rules/feeds.yml explains the pattern). Tests that
check what an alert *computes* (its joins, its thresholds) look at that record's expression:
``condition(rule)`` returns it, or the alert's own expression when the alert reads no record;
``live_condition(rule)`` only its first part, what the exporter's series say now (the records
write it first, then the hold after a line holding only ``or``).
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
    """The alert's condition without its hold: the record's lines before the first bare ``or``."""
    lines = condition(rule, known).splitlines()
    bare = [i for i, line in enumerate(lines) if line.strip() == "or"]
    return "\n".join(lines[:bare[0]] if bare else lines)
