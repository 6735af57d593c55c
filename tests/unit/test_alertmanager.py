"""alertmanager/alertmanager.yml and its templates, checked with amtool (Debian package
prometheus-alertmanager; a missing binary fails with the install line, never skips).

- amtool check-config on the committed file;
- amtool config routes test --verify.receivers for every row of alertmanager/tests/routes.yml
  and for every alerting rule in prometheus/rules/*.yml (its team and severity);
- amtool template render for every template definition, on every sample notification in
  alertmanager/tests/data/ and on a 25-alert outage;
- every generated `<market>-closed` time interval against exporter/markets.py's calendar at
  every half hour from 2025 to the table's end, and each routed for its market;
- the generated files against exchange_calendars (drift);
- the routing policy the design asks for (grouping, timings, matchers only).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.markets import CALENDARS, calendar
from tests import rulefiles

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
TEMPLATES = ROOT / "alertmanager" / "templates" / "feedwatch.tmpl"
DATA = sorted((ROOT / "alertmanager" / "tests" / "data").glob("*.json"))
ROUTES = yaml.safe_load((ROOT / "alertmanager" / "tests" / "routes.yml").read_text())["routes"]
# Rendered by Alertmanager's HTML engine: email bodies, and Telegram's HTML parse mode.
HTML_TEMPLATES = {"feedwatch.email.html", "feedwatch.telegram"}


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("amtool")
    assert binary, "amtool is not installed: apt-get install prometheus-alertmanager (Debian package)"
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def load_config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def test_amtool_check_config() -> None:
    done = amtool("check-config", str(CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 templates" in done.stdout


def _route_test(labels: dict[str, str], receivers: list[str]) -> None:
    args = [f"{k}={v}" for k, v in labels.items()]
    done = amtool("config", "routes", "test", f"--config.file={CONFIG}",
                  f"--verify.receivers={','.join(receivers)}", *args)
    assert done.returncode == 0, f"{labels} -> expected {receivers}, got: {done.stdout.strip()}"


@pytest.mark.parametrize("row", ROUTES, ids=lambda r: "-".join(r["labels"].get(k, "") for k in ("alertname", "severity")))
def test_route(row: dict[str, Any]) -> None:
    _route_test(row["labels"], row["receivers"])


def _rule_rows() -> list[tuple[str, dict[str, str]]]:
    rows = []
    for path in sorted((ROOT / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rows.append((path.name, {"alertname": rule["alert"], **rule.get("labels", {})}))
    return rows


@pytest.mark.parametrize("source,labels", _rule_rows(),
                         ids=lambda v: v.get("alertname", "") + "-" + v.get("severity", "") if isinstance(v, dict) else v)
def test_every_alerting_rule_reaches_its_teams_receiver(source: str, labels: dict[str, str]) -> None:
    if labels["alertname"] == "Watchdog":
        expected = ["watchdog"]
    elif labels["alertname"] == "FeedwatchExporterDown":
        expected = ["data-critical", "trading-critical"]  # both teams' alerts go blind
    else:
        assert labels.get("team") in ("data", "trading"), f"{source}: {labels['alertname']} has no team label"
        expected = [f"{labels['team']}-{labels['severity']}"]
    _route_test({**labels, "feed": "binance", "account": "main"}, expected)


def test_every_route_is_commented_and_uses_matchers_only() -> None:
    text = CONFIG.read_text()
    assert not re.search(r"^\s*(match|match_re|source_match|source_match_re|target_match|target_match_re):",
                         text, re.M), "the match forms are deprecated: use matchers"
    for match in re.finditer(r"^(\s*)- matchers:", text, re.M):
        before = text[: match.start()].rstrip("\n").splitlines()[-1]
        assert before.strip().startswith("#"), f"route without a comment above it: {match.group(0).strip()}"


# The routes allowed to send sooner than the default (30s group_wait, 1m group_interval): the
# test alert, the Watchdog, the exporter-down page and the trading critical path.
FAST_ROUTES = {
    ('alertname="FeedwatchAlertTest"',),
    ('alertname="Watchdog"',),
    ('alertname="FeedwatchExporterDown"',),
    ('severity="critical"', 'alertname=~"TradingKillSwitchActive|TradingCircuitBreakerOpen|TradingStalePricePosition"'),
}


def test_grouping_and_timings_follow_the_design() -> None:
    route = load_config()["route"]
    assert route["group_by"] == ["alertname", "feed"]

    def seconds(text: str) -> int:
        return sum(int(n) * {"s": 1, "m": 60, "h": 3600}[u] for n, u in re.findall(r"(\d+)([smh])", text))

    fast_seen = set()

    def visit(node: dict[str, Any], inherited: dict[str, str], fast_parent: bool = False) -> None:
        opts = {**inherited, **{k: node[k] for k in ("group_wait", "group_interval", "repeat_interval") if k in node}}
        listed = tuple(node.get("matchers", [])) in FAST_ROUTES
        fast_seen.update([tuple(node["matchers"])] if listed else [])
        # A child that sets no timing of its own keeps its fast parent's (alert-test per channel).
        fast = listed or (fast_parent and not any(k in node for k in ("group_wait", "group_interval")))
        # A group sends at most one update a minute (the critical path and the exporter-down
        # page: every 2s at most, each a change worth a message), and repeats a still-firing alert at most once per 5 minutes
        # (the Watchdog, for the dead man's switch); the others hourly or less.
        assert seconds(opts["group_interval"]) >= (2 if fast else 60), node
        assert seconds(opts["repeat_interval"]) >= 300, node
        # Warnings and the rest keep their debounce: a 30s group_wait collects a feed's symbols.
        assert seconds(opts["group_wait"]) == 30 or fast, node
        if node.get("matchers") != ['alertname="Watchdog"']:
            assert seconds(opts["repeat_interval"]) >= 3600, node
        for child in node.get("routes", []):
            visit(child, opts, fast)

    visit(route, {})
    assert fast_seen == FAST_ROUTES


def test_committed_receivers_are_all_off() -> None:
    """Off until configured: no receiver in the committed file has an integration."""
    for receiver in load_config()["receivers"]:
        assert set(receiver) == {"name"}, receiver


def test_inhibitions_the_design_asks_for() -> None:
    rules = load_config()["inhibit_rules"]
    assert {"source_matchers": ['alertname="FeedDown"'],
            "target_matchers": ['alertname=~"FeedSymbolStale|FeedSymbolDead|FeedPriceMove|FeedSymbolFrozen|FeedPriceDeviation"'],
            "equal": ["job", "shard", "feed"]} in rules
    critical = next(r for r in rules if r["source_matchers"] == ['severity="critical"'])
    assert critical["target_matchers"] == ['severity="warning"'] and "alertname" in critical["equal"]
    # The exporter down inhibits nothing: the rules hold what was firing, and an inhibition would
    # swallow the true resolutions (test_alertmanager_inhibitions.py shows it).
    assert not [r for r in rules if "FeedwatchExporterDown" in " ".join(r["source_matchers"])]


def test_every_alert_the_closed_market_mute_names_carries_the_market_label() -> None:
    """The mutes match market="<name>"; an alert they name without that label would never
    be muted. Each such rule must join feedwatch_feed_info for the feed's market."""
    muted: set[str] = set()

    def visit(route: dict[str, Any]) -> None:
        for interval in route.get("mute_time_intervals") or []:
            assert f'market="{interval.removesuffix("-closed")}"' in route["matchers"], route["matchers"]
            names = next(m for m in route["matchers"] if m.startswith("alertname=~"))
            assert names.split("=~", 1)[1].strip('"').split("|") == ["FeedSymbolStale", "FeedSymbolDead", "FeedSilent"]
            muted.update(names.split("=~", 1)[1].strip('"').split("|"))
        for child in route.get("routes", []):
            visit(child)

    visit(load_config()["route"])
    assert muted == {"FeedSymbolStale", "FeedSymbolDead", "FeedSilent"}
    rules = [r for group in yaml.safe_load((ROOT / "prometheus" / "rules" / "feeds.yml").read_text())["groups"]
             for r in group["rules"] if r.get("alert") in muted]
    assert len(rules) == 4  # FeedSymbolStale warning and critical, FeedSymbolDead, FeedSilent
    for rule in rules:
        # The live condition (what the exporter says, not the hold) ends with the join: one
        # replica's feedwatch_feed_info per shard and feed (docs/scaling.md).
        condition = " ".join(rulefiles.live_condition(rule).split())
        assert condition.endswith('* on (job, shard, feed) group_left (market) topk by (job, shard, feed) (1, feedwatch_feed_info{job="feedwatch"})'), \
            rule["alert"]


# --- templates --------------------------------------------------------------------------------

def template_names() -> list[str]:
    names = re.findall(r'{{-?\s*define "([^"]+)"', TEMPLATES.read_text())
    assert len(names) >= 8
    return names


def render(name: str, data: Path) -> str:
    kind = "html" if name in HTML_TEMPLATES else "text"
    done = amtool("template", "render", f"--template.glob={TEMPLATES}", f"--template.type={kind}",
                  f"--template.text={{{{ template \"{name}\" . }}}}", f"--template.data={data}")
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("sample", DATA, ids=lambda p: p.stem)
def test_every_template_renders(sample: Path) -> None:
    data = json.loads(sample.read_text())
    for name in template_names():
        if name == "feedwatch.subject":
            continue  # per-alert; rendered through feedwatch.text (resolved lines) below
        out = render(name, sample)
        assert out.strip(), f"{name} rendered nothing for {sample.name}"
        assert "<no value>" not in out, f"{name}: a field is missing for {sample.name}:\n{out}"
        if name in ("feedwatch.title", "feedwatch.email.subject", "feedwatch.slack.title"):
            assert data["commonLabels"]["alertname"] in out and "\n" not in out.strip()


def test_text_lists_each_firing_alert_and_names_the_resolved(tmp_path: Path) -> None:
    outage = ROOT / "alertmanager" / "tests" / "data" / "feed_outage.json"
    text = render("feedwatch.text", outage)
    assert text.splitlines() == [
        "A symbol's price is stale.",
        "• AAPL on stocks has not updated for 5m 30s: its price is stale, do not trade on it.",
        "• MSFT on stocks has not updated for 5m 45s: its price is stale, do not trade on it.",
        "Resolved: IBM on stocks",
        "Runbook: https://github.com/feedwatch/feedwatch/blob/main/docs/runbook.md#feedsymbolstale",
    ]
    assert render("feedwatch.title", outage).strip() == "🔴 FeedSymbolStale · stocks · 2 firing, 1 resolved (critical)"
    telegram = render("feedwatch.telegram", outage)
    assert telegram.startswith("<b>🔴 FeedSymbolStale") and "</b>\nA symbol&#39;s price is stale." in telegram


def test_a_sharded_feeds_resolved_alerts_name_their_shard(tmp_path: Path) -> None:
    """FeedDown is per shard (docs/scaling.md): "stocks shard 0, stocks shard 1", not "stocks, stocks"."""
    base = json.loads((ROOT / "alertmanager" / "tests" / "data" / "resolved.json").read_text())
    alerts = []
    for shard in ("0", "1"):
        alert = json.loads(json.dumps(base["alerts"][0]))
        alert["labels"] = {k: v for k, v in alert["labels"].items() if k != "instance"} | {"shard": shard}
        alerts.append(alert)
    path = tmp_path / "sharded.json"
    path.write_text(json.dumps({**base, "alerts": alerts}))
    assert "Resolved: binance shard 0, binance shard 1" in render("feedwatch.text", path)


def test_a_big_outage_stays_short_enough_for_a_phone(tmp_path: Path) -> None:
    base = json.loads((ROOT / "alertmanager" / "tests" / "data" / "feed_outage.json").read_text())
    firing = base["alerts"][0]
    alerts = []
    for i in range(25):
        alert = json.loads(json.dumps(firing))
        alert["labels"]["symbol"] = f"SYM{i}"
        alert["annotations"]["description"] = f"SYM{i} on stocks has not updated for 6m 0s: its price is stale."
        alerts.append(alert)
    path = tmp_path / "outage.json"
    path.write_text(json.dumps({**base, "alerts": alerts}))
    text = render("feedwatch.text", path)
    assert text.count("• SYM") == 10
    assert "… and more: 25 firing in all." in text
    assert "25 firing" in render("feedwatch.title", path)


# --- the closed-market time interval ------------------------------------------------------------

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def _weekday_set(specs: list[str]) -> set[int]:
    days: set[int] = set()
    for spec in specs:
        first, _, last = spec.partition(":")
        a, b = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        days.update(range(a, b + 1))
    return days


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def interval_matches(entry: dict[str, Any], local: dt.datetime) -> bool:
    """Alertmanager's time_interval semantics for the fields this config uses."""
    if "weekdays" in entry and local.weekday() not in _weekday_set(entry["weekdays"]):
        return False
    if "years" in entry and str(local.year) not in entry["years"]:
        return False
    if "months" in entry and str(local.month) not in entry["months"]:
        return False
    if "days_of_month" in entry and str(local.day) not in entry["days_of_month"]:
        return False
    if "times" in entry:
        minute = local.hour * 60 + local.minute
        return any(_minutes(t["start_time"]) <= minute < _minutes(t["end_time"]) for t in entry["times"])
    return True


def _intervals() -> dict[str, list[dict[str, Any]]]:
    return {i["name"]: i["time_intervals"] for i in load_config()["time_intervals"]}


GENERATED_MARKETS = sorted(name for name in CALENDARS if name != "always")


def test_every_built_in_calendar_has_its_closed_interval() -> None:
    """One `<market>-closed` interval per built-in calendar (us-equities, us-equities-extended,
    cme-globex), in the market's own timezone, and nothing else in the time intervals."""
    intervals = _intervals()
    assert set(intervals) == {f"{name}-closed" for name in GENERATED_MARKETS}
    assert {"us-equities", "us-equities-extended", "cme-globex"} <= set(GENERATED_MARKETS)
    for name in GENERATED_MARKETS:
        assert {e["location"] for e in intervals[f"{name}-closed"]} == {str(CALENDARS[name].timezone)}


def test_us_equities_interval_dates_are_the_exporters() -> None:
    entries = _intervals()["us-equities-closed"]
    dated = [e for e in entries if "years" in e]
    days = {dt.date(int(e["years"][0]), int(e["months"][0]), int(e["days_of_month"][0])) for e in dated if "times" not in e}
    early = {dt.date(int(e["years"][0]), int(e["months"][0]), int(e["days_of_month"][0])) for e in dated if "times" in e}
    cal = calendar("us-equities")
    assert days == {d for d in cal.holidays if d.weekday() < 5}
    assert early == set(cal.early_closes)
    assert all(e["times"] == [{"start_time": "13:00", "end_time": "16:00"}] for e in dated if "times" in e)


@pytest.mark.parametrize("market", GENERATED_MARKETS)
def test_closed_interval_mutes_exactly_when_the_calendar_is_closed(market: str) -> None:
    """Every half hour (which hits 04:00, 09:30, 13:00, 16:00, 17:00, 18:00 and 20:00 exactly)
    from the first year of the table to its end, across every DST change: muted == closed."""
    entries = _intervals()[f"{market}-closed"]
    cal = calendar(market)
    assert cal.end is not None and cal.end >= dt.date(2035, 12, 31)
    by_date: dict[dt.date, list[dict[str, Any]]] = {}
    weekly = []
    for e in entries:
        if "years" in e:
            by_date.setdefault(dt.date(int(e["years"][0]), int(e["months"][0]), int(e["days_of_month"][0])), []).append(e)
        else:
            weekly.append(e)
    # Each entry as (weekdays, [start, end) minute ranges), checked against the date's own entries.
    compiled_weekly = [(_weekday_set(e["weekdays"]),
                        [(_minutes(r["start_time"]), _minutes(r["end_time"])) for r in e.get("times", [])] or [(0, 1440)])
                       for e in weekly]
    tz = cal.timezone
    start = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    end = dt.datetime.combine(cal.end + dt.timedelta(days=1), dt.time(0), tz).timestamp()
    mismatches = []
    t = start
    while t < end:
        local = dt.datetime.fromtimestamp(t, tz)
        minute = local.hour * 60 + local.minute
        weekday = local.weekday()
        muted = any(weekday in days and any(a <= minute < b for a, b in ranges) for days, ranges in compiled_weekly)
        muted = muted or any(interval_matches(e, local) for e in by_date.get(local.date(), ()))
        if muted == cal.is_open(t):
            mismatches.append(local.isoformat())
        t += 1800
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:5]}"


def test_every_closed_interval_is_routed_for_its_market_and_both_severities() -> None:
    """Each generated interval mutes the staleness alerts of its market (and only that market),
    for the critical and the warning variants (mute intervals are not inherited)."""
    routed: dict[str, set[str]] = {}

    def visit(route: dict[str, Any], severity: str | None) -> None:
        for m in route.get("matchers", []):
            if m.startswith("severity="):
                severity = m.split("=", 1)[1].strip('"')
        for name in route.get("mute_time_intervals") or []:
            market = name.removesuffix("-closed")
            assert f'market="{market}"' in route["matchers"], (name, route["matchers"])
            routed.setdefault(market, set()).add(severity or "")
        for child in route.get("routes", []):
            visit(child, severity)

    visit(load_config()["route"], None)
    assert routed == {name: {"critical", "warning"} for name in GENERATED_MARKETS}


def test_generated_files_match_exchange_calendars() -> None:
    """Drift: exporter/markets.json and the generated block of alertmanager.yml are what
    scripts/generate-calendars.py makes from exchange_calendars today (regenerated in memory)."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "generate-calendars.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, (
        "the committed calendars differ from exchange_calendars; run `make calendars` and commit:\n"
        + done.stdout[-4000:] + done.stderr[-2000:])
