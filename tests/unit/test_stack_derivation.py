"""How exporter/alerting/stack.py derives the demo's and the tests' Prometheus config and rules
from the committed ones: compressed for:, one interval everywhere (or the committed ones), and
the one for: that must stay real, so a starting demo never pages FeedwatchExporterDown."""

from __future__ import annotations

from pathlib import Path

import yaml

from exporter.alerting import stack as alertstack

ROOT = Path(__file__).resolve().parents[2]


def _rules(out: Path) -> dict[str, list[dict]]:
    return {path.name: yaml.safe_load(path.read_text())["groups"] for path in sorted(out.glob("*.yml"))}


def _exporter_down(groups: list[dict]) -> dict[str, str]:
    return {rule["labels"]["reason"]: rule["for"] for group in groups for rule in group["rules"]
            if rule.get("alert") == "FeedwatchExporterDown"}


def test_a_starting_prometheus_cannot_page_the_exporter_down(tmp_path: Path) -> None:
    """By construction: the demo starts Prometheus once the exporter answers (AlertingDemo), so
    its first scrape succeeds and the up == 0 variant has nothing to see; the absent() variant,
    true until that first scrape (target discovery alone is throttled to 5s), keeps its real 1m
    in the compressed copy, while everything else is compressed 30x."""
    derived = _rules(alertstack.derive_rules(tmp_path, 30.0))
    assert _exporter_down(derived["exporter.yml"]) == {"scrape_failing": "333ms", "no_target": "1m"}
    committed = yaml.safe_load((ROOT / "prometheus/rules/exporter.yml").read_text())["groups"]
    assert _exporter_down(committed) == {"scrape_failing": "10s", "no_target": "1m"}
    # Only that one keeps its value: every other non-zero for: of every file is divided by 30.
    originals = _rules(ROOT / "prometheus/rules")
    kept = []
    for name, groups in derived.items():
        for group, original in zip(groups, originals[name]):
            for rule, before in zip(group["rules"], original["rules"]):
                if alertstack.prom_seconds(before.get("for", "0s")) == 0:
                    continue
                ratio = alertstack.prom_seconds(before["for"]) / alertstack.prom_seconds(rule["for"])
                if ratio == 1:
                    kept.append((rule["alert"], rule["labels"].get("reason")))
                else:
                    assert abs(ratio - 30) < 0.1, (rule["alert"], before["for"], rule["for"])  # ms rounding
    assert kept == [("FeedwatchExporterDown", "no_target")]


def test_compressed_for_keeps_the_rest_of_the_file_byte_for_byte() -> None:
    text = "      - alert: A\n        expr: up == 0  # for: 1m in a comment\n        for: 1m\n" \
           "      - alert: B\n        for: 5m  # uncompressed: why\n"
    assert alertstack.compress_for(text, 30.0) == text.replace("for: 1m\n", "for: 2s\n")


def test_one_interval_everywhere_or_the_committed_ones(tmp_path: Path) -> None:
    fast = _rules(alertstack.derive_rules(tmp_path / "fast", 30.0, interval="1s"))
    assert {group.get("interval") for groups in fast.values() for group in groups} <= {None, "1s"}
    kept = _rules(alertstack.derive_rules(tmp_path / "kept", 1.0, interval=None))
    assert {group["name"]: group.get("interval") for group in kept["trading.yml"]}["feedwatch.trading.critical"] == "5s"

    def normalized(rules: dict[str, list[dict]]) -> dict[str, list[dict]]:
        for groups in rules.values():
            for group in groups:
                for rule in group["rules"]:
                    if "for" in rule:
                        rule["for"] = alertstack.prom_seconds(rule["for"])
        return rules

    assert normalized(kept) == normalized({path.name: yaml.safe_load(path.read_text())["groups"]
                                           for path in sorted((ROOT / "prometheus/rules").glob("*.yml"))})

    def config(interval: str | None) -> dict:
        return alertstack.derive_prometheus_config(exporter="127.0.0.1:1", alertmanager="127.0.0.1:2",
                                                   prometheus="127.0.0.1:3", rules_dir=tmp_path, interval=interval)

    jobs = {job["job_name"]: job for job in config("1s")["scrape_configs"]}
    assert config("1s")["global"]["scrape_interval"] == "1s"
    assert "scrape_interval" not in jobs["feedwatch"] and "scrape_timeout" not in jobs["feedwatch"]
    committed = {job["job_name"]: job for job in config(None)["scrape_configs"]}
    assert committed["feedwatch"]["scrape_interval"] == "5s" and config(None)["global"]["scrape_interval"] == "15s"
    assert committed["feedwatch"]["static_configs"] == [{"targets": ["127.0.0.1:1"]}]
