"""The notification budgets, by arithmetic on the committed configs: the critical path (kill
switch, circuit breaker, a position on a stale price) reaches a person within 15 s of its
condition, FeedwatchExporterDown within 30 s of the exporter's death, and warnings keep their
debounce. If someone lengthens a scrape interval, a rule group's interval, a for: or a route's
group_wait, this says which budget broke. (tests/integration/test_critical_path.py measures the
same path with the real binaries; docs/alerting.md has both.)

Worst case of a first notification: the condition appears just after a scrape (one scrape
interval until Prometheus sees it), the rule group evaluated just before that scrape landed (one
evaluation interval), the for: rounded up to whole evaluations, then the route's group_wait. A
later alert of an already-notified group waits for the group's next group_interval tick instead.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.alerting.stack import prom_seconds

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())
ALERTMANAGER = yaml.safe_load((ROOT / "alertmanager/alertmanager.yml").read_text())
CRITICAL_PATH = ("TradingKillSwitchActive", "TradingCircuitBreakerOpen", "TradingStalePricePosition")
CRITICAL_BUDGET = 15.0
EXPORTER_DOWN_BUDGET = 30.0


def alert_rules() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(group, rule) for every alerting rule of the committed files."""
    found = []
    for path in sorted((ROOT / "prometheus/rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [(group, rule) for rule in group["rules"] if "alert" in rule]
    return found


def feedwatch_scrape() -> tuple[float, float]:
    job = next(j for j in PROMETHEUS["scrape_configs"] if j["job_name"] == "feedwatch")
    interval = prom_seconds(job.get("scrape_interval", PROMETHEUS["global"]["scrape_interval"]))
    timeout = prom_seconds(job.get("scrape_timeout", PROMETHEUS["global"].get("scrape_timeout", "10s")))
    return interval, timeout


def evaluation(group: dict[str, Any]) -> float:
    return prom_seconds(group.get("interval", PROMETHEUS["global"]["evaluation_interval"]))


_MATCHER = re.compile(r'^(\w+)\s*(=~|!~|!=|=)\s*"(.*)"$')


def _matches(matchers: list[str], labels: dict[str, str]) -> bool:
    for matcher in matchers:
        name, op, value = _MATCHER.match(matcher).groups()  # type: ignore[union-attr]
        have = labels.get(name, "")
        ok = {"=": have == value, "!=": have != value,
              "=~": re.fullmatch(value, have) is not None, "!~": re.fullmatch(value, have) is None}[op]
        if not ok:
            return False
    return True


def routes_for(labels: dict[str, str]) -> list[dict[str, Any]]:
    """The effective settings of every route an alert takes (Alertmanager's tree walk, with
    inheritance and continue)."""
    keys = ("receiver", "group_by", "group_wait", "group_interval", "repeat_interval")

    def walk(route: dict[str, Any], inherited: dict[str, Any]) -> list[dict[str, Any]]:
        settings = {**inherited, **{k: route[k] for k in keys if k in route}}
        found: list[dict[str, Any]] = []
        for child in route.get("routes", []) or []:
            if _matches(child.get("matchers", []), labels):
                found += walk(child, settings)
                if not child.get("continue"):
                    break
        return found or [settings]

    return walk(ALERTMANAGER["route"], {})


def _labels(rule: dict[str, Any]) -> dict[str, str]:
    return {"alertname": rule["alert"], **rule["labels"], "account": "main", "feed": "binance"}


@pytest.mark.parametrize("name", CRITICAL_PATH)
def test_the_critical_path_reaches_a_person_within_15s(name: str) -> None:
    (group, rule), = [(g, r) for g, r in alert_rules() if r["alert"] == name]
    assert rule["labels"]["severity"] == "critical"
    scrape, _ = feedwatch_scrape()
    evaluate = evaluation(group)
    held_back = math.ceil(prom_seconds(rule["for"]) / evaluate) * evaluate
    for route in routes_for(_labels(rule)):
        first = scrape + evaluate + held_back + prom_seconds(route["group_wait"])
        later = scrape + evaluate + held_back + prom_seconds(route["group_interval"])
        assert route["receiver"] == "trading-critical"
        assert first <= CRITICAL_BUDGET and later <= CRITICAL_BUDGET, (
            f"{name}: worst case {first:g}s (first of its group), {later:g}s (a later one): scrape {scrape:g}s, "
            f"evaluation {evaluate:g}s, for {held_back:g}s, group_wait {route['group_wait']}, "
            f"group_interval {route['group_interval']}")


def test_a_dead_exporter_is_paged_to_both_teams_within_30s() -> None:
    (group, rule), = [(g, r) for g, r in alert_rules()
                      if r["alert"] == "FeedwatchExporterDown" and r["labels"]["reason"] == "scrape_failing"]
    assert rule["labels"]["severity"] == "critical"
    scrape, timeout = feedwatch_scrape()
    evaluate = evaluation(group)
    held_back = math.ceil(prom_seconds(rule["for"]) / evaluate) * evaluate
    routes = routes_for(_labels(rule))
    assert sorted(r["receiver"] for r in routes) == ["data-critical", "trading-critical"]
    for route in routes:
        # A hung exporter (not a refused connection) fails its scrape only at the timeout. Its
        # group may still exist from an earlier outage: then it waits for the group's tick.
        wait = max(prom_seconds(route["group_wait"]), prom_seconds(route["group_interval"]))
        worst = scrape + timeout + evaluate + held_back + wait
        assert worst <= EXPORTER_DOWN_BUDGET, f"{route['receiver']}: worst case {worst:g}s"
    # Debounced all the same: one failed scrape (a glitch) does not page.
    assert prom_seconds(rule["for"]) >= scrape


@pytest.mark.parametrize("group,rule", [(g, r) for g, r in alert_rules() if r["labels"]["severity"] == "warning"],
                         ids=lambda v: v.get("alert", "") if isinstance(v, dict) and "alert" in v else "")
def test_warnings_keep_their_debounce(group: dict[str, Any], rule: dict[str, Any]) -> None:
    """A warning waits at least a minute of its condition and the 30s group_wait that collects a
    feed's or an account's alerts into one message."""
    assert prom_seconds(rule["for"]) >= 60, rule["alert"]
    for route in routes_for(_labels(rule)):
        assert prom_seconds(route["group_wait"]) == 30, (rule["alert"], route)
        assert prom_seconds(route["group_interval"]) >= 60, (rule["alert"], route)
