"""The Grafana dashboards: generated from code, committed as generated, well-formed, and every
PromQL expression accepted by promtool.

The queries' *results* are checked against a real Prometheus in
``tests/integration/test_dashboard_queries.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml
from grafana_foundation_sdk.models import units

from exporter.book import STATE_NAMES
from exporter.config import Thresholds
from grafana import generate, panels, queries

ROOT = Path(__file__).resolve().parents[2]
FEEDS_UID, SYMBOL_UID = "feedwatch-feeds", "feedwatch-symbol"

GENERATED = generate.generate()
DASHBOARDS = {json.loads(text)["uid"]: json.loads(text) for text in GENERATED.values()}
ALL_PANELS = [(uid, panel) for uid, dash in DASHBOARDS.items() for panel in queries.panels(dash)]

# Every unit the SDK knows (grafana_foundation_sdk.models.units mirrors Grafana's unit list).
KNOWN_UNITS = {value for name, value in vars(units).items() if not name.startswith("_") and isinstance(value, str)}

# Values that make every expression concrete enough for the PromQL parser.
PARSE_VALUES = {"feed": ".*", "symbol": ".*", "account": ".*", "__rate_interval": "1m", "__interval": "15s", "__range": "1h"}


def panel_id(item: tuple[str, dict]) -> str:
    return f"{item[0]}/{item[1].get('title')}"


# --- generated == committed ----------------------------------------------------------------------

def test_committed_json_equals_generated_json():
    problems = generate.differences(GENERATED, generate.OUTPUT_DIR)
    assert not problems, "\n".join(problems)


def test_check_flag_fails_on_drift_and_orphans(tmp_path):
    assert generate.main(["--out-dir", str(tmp_path)]) == 0
    assert generate.main(["--check", "--out-dir", str(tmp_path)]) == 0

    edited = tmp_path / "feeds_overview.json"
    edited.write_text(edited.read_text().replace("Feeds up", "Feeds upp"))
    assert generate.main(["--check", "--out-dir", str(tmp_path)]) == 1

    generate.main(["--out-dir", str(tmp_path)])          # rewrites the edited file
    (tmp_path / "left_behind.json").write_text("{}")
    assert generate.main(["--check", "--out-dir", str(tmp_path)]) == 1
    generate.main(["--out-dir", str(tmp_path)])          # removes the orphan
    assert not (tmp_path / "left_behind.json").exists()
    assert generate.main(["--check", "--out-dir", str(tmp_path)]) == 0


def test_generation_is_deterministic():
    assert generate.generate() == GENERATED


def test_script_form_runs_from_anywhere(tmp_path):
    python = ROOT / ".venv" / "bin" / "python"
    result = subprocess.run([str(python if python.exists() else "python3"), str(ROOT / "grafana" / "generate.py"),
                             "--check"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- structure -----------------------------------------------------------------------------------

def test_stable_uids_and_titles():
    assert {FEEDS_UID, SYMBOL_UID} <= set(DASHBOARDS)
    assert GENERATED["feeds_overview.json"] and json.loads(GENERATED["feeds_overview.json"])["uid"] == FEEDS_UID
    assert json.loads(GENERATED["symbol_detail.json"])["uid"] == SYMBOL_UID
    for uid, dash in DASHBOARDS.items():
        assert dash["title"].startswith("feedwatch / "), uid
        assert panels.TAG in dash["tags"], uid
        assert dash["annotations"]["list"], f"{uid}: Grafana expects annotations.list"


@pytest.mark.parametrize("item", ALL_PANELS, ids=panel_id)
def test_every_panel_queries_the_datasource_variable_with_a_unit(item):
    uid, panel = item
    assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert panel.get("title") and panel.get("description")
    unit = panel["fieldConfig"]["defaults"].get("unit")
    assert unit in KNOWN_UNITS, f"unit {unit!r} is not a Grafana unit"
    targets = panel.get("targets", [])
    assert targets, "no query"
    refs = [target["refId"] for target in targets]
    assert all(refs) and len(set(refs)) == len(refs), f"refIds must be unique and set: {refs}"
    for target in targets:
        assert target["expr"].strip()
        assert target["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_layout_has_unique_ids_and_no_overlaps(uid):
    dash = DASHBOARDS[uid]
    ids = [panel["id"] for panel in dash["panels"]]
    assert len(ids) == len(set(ids)) and 0 not in ids
    taken: set[tuple[int, int]] = set()
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_datasource_variable_defaults_to_the_provisioned_uid():
    provisioned = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = [source["uid"] for source in provisioned["datasources"]]
    assert uids == [panels.PROVISIONED_DATASOURCE_UID] == ["feedwatch-prometheus"]
    for uid, dash in DASHBOARDS.items():
        (variable,) = [v for v in dash["templating"]["list"] if v["name"] == "datasource"]
        assert variable["type"] == "datasource" and variable["query"] == "prometheus"
        assert variable["current"]["value"] == "feedwatch-prometheus"


def test_feed_and_symbol_variables():
    def variables(uid):
        return {v["name"]: v for v in DASHBOARDS[uid]["templating"]["list"]}

    overview, detail = variables(FEEDS_UID), variables(SYMBOL_UID)
    assert overview["feed"]["type"] == "query" and overview["feed"]["includeAll"]
    assert overview["feed"]["allValue"] == ".*"
    assert {"feed", "symbol"} <= set(detail)
    for variable in (overview["feed"], detail["feed"], detail["symbol"]):
        assert variable["datasource"]["uid"] == "${datasource}"
    by_name = {q.name: q for q in queries.variable_queries(DASHBOARDS[SYMBOL_UID])}
    assert by_name["feed"].label == "feed" and by_name["symbol"].label == "symbol"
    assert "$feed" in by_name["symbol"].series, "the symbol list must follow the chosen feed"


def test_every_variable_used_in_a_query_is_defined():
    builtin = {"__rate_interval", "__interval", "__range"}
    for uid, dash in DASHBOARDS.items():
        defined = {v["name"] for v in dash["templating"]["list"]} | builtin
        for query in queries.panel_queries(dash):
            queries.substitute(query.expr, {name: "x" for name in defined})  # raises on an unknown one


# --- links ---------------------------------------------------------------------------------------

def _link_target(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    match = re.fullmatch(r"/d/([A-Za-z0-9_-]+)(?:/[^/]*)?", parts.path)
    assert match, f"not a dashboard link: {url}"
    return match.group(1), dict(parse_qsl(parts.query))


def test_header_links_go_both_ways():
    def targets(uid):
        return {_link_target(link["url"])[0] for link in DASHBOARDS[uid]["links"] if link["type"] == "link"}

    assert SYMBOL_UID in targets(FEEDS_UID)
    assert FEEDS_UID in targets(SYMBOL_UID)
    for uid, dash in DASHBOARDS.items():
        for link in dash["links"]:
            if link["type"] == "link":
                assert link["includeVars"] and link["keepTime"], f"{uid}: {link['title']}"
                assert _link_target(link["url"])[0] in DASHBOARDS


def test_worst_symbols_rows_link_to_the_symbol_detail_with_feed_and_symbol():
    (table,) = [p for p in queries.panels(DASHBOARDS[FEEDS_UID]) if p["title"] == "Worst symbols"]
    (link,) = table["fieldConfig"]["defaults"]["links"]
    target, params = _link_target(link["url"])
    assert target == SYMBOL_UID
    assert params["var-feed"] == "${__data.fields.feed}"
    assert params["var-symbol"] == "${__data.fields.symbol}"
    detail_variables = {v["name"] for v in DASHBOARDS[SYMBOL_UID]["templating"]["list"]}
    for name in params:
        if name.startswith("var-"):
            assert name[4:] in detail_variables


def test_every_data_link_points_at_a_generated_dashboard():
    for uid, panel in ALL_PANELS:
        for link in panel["fieldConfig"]["defaults"].get("links", []):
            assert _link_target(link["url"])[0] in DASHBOARDS, f"{uid}/{panel['title']}"


# --- health states -------------------------------------------------------------------------------

def _field_configs(panel: dict) -> list[dict]:
    """The defaults plus every override, each as a {property: value} dict."""
    configs = [panel["fieldConfig"]["defaults"]]
    for override in panel["fieldConfig"].get("overrides", []):
        configs.append({prop["id"]: prop["value"] for prop in override["properties"]})
    return configs


def test_staleness_panels_are_coloured_at_the_health_thresholds():
    defaults = Thresholds()
    expected = [(None, "green"), (defaults.degraded, "yellow"), (defaults.stale, "orange"), (defaults.critical, "red")]
    assert [value for value, _ in expected[1:]] == [180, 300, 3600]
    checked = 0
    for uid, panel in ALL_PANELS:
        if any("feedwatch_symbol_staleness_seconds" in t["expr"] for t in panel["targets"]):
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            assert [(s["value"], s["color"]) for s in steps] == expected, f"{uid}/{panel['title']}"
            checked += 1
    assert checked >= 4


def test_state_panels_map_every_state_to_its_name_and_colour():
    expected = {str(code): (name, panels.STATE_COLOURS[code]) for code, name in STATE_NAMES.items()}
    assert set(expected) == {"0", "1", "2", "3", "-1"}
    # Panels whose value *is* the state (not those that only use it to filter out closed symbols).
    # (Across replicas the value is the rules' merged state, shard_feed_symbol:feedwatch_symbol_state:unhealthy.)
    is_state = re.compile(r"^\(?(max(\s+by\s*\([^)]*\))?\s*\()?(shard_feed_symbol:)?feedwatch_symbol_state\b")
    checked = 0
    for uid, panel in ALL_PANELS:
        if not any(is_state.match(t["expr"]) for t in panel["targets"]):
            continue
        mappings = [m for config in _field_configs(panel) for m in config.get("mappings", [])]
        (value_map,) = [m for m in mappings if m["type"] == "value"]
        got = {key: (result["text"], result["color"]) for key, result in value_map["options"].items()}
        assert got == expected, f"{uid}/{panel['title']}"
        checked += 1
    assert checked >= 3
    assert panels.STATE_COLOURS[0] == "green" and panels.STATE_COLOURS[1] == "yellow"
    assert panels.STATE_COLOURS[2] == "orange" and panels.STATE_COLOURS[3] == "red"


def test_symbols_per_state_series_are_coloured_by_state_name():
    for uid, panel in ALL_PANELS:
        if any("feedwatch_feed_symbols" in t["expr"] for t in panel["targets"]):
            overrides = {o["matcher"]["options"]: o["properties"][0]["value"]["fixedColor"]
                         for o in panel["fieldConfig"]["overrides"] if o["matcher"]["id"] == "byName"}
            for code, name in STATE_NAMES.items():
                assert overrides[name] == panels.STATE_COLOURS[code], f"{uid}/{panel['title']}: {name}"


# --- PromQL --------------------------------------------------------------------------------------

def test_every_expression_parses_with_promtool(tmp_path):
    """Each panel query and variable selector, variables filled in, as a recording rule."""
    groups = []
    for uid, dash in sorted(DASHBOARDS.items()):
        rules, prefix = [], uid.replace("-", "_")
        for i, query in enumerate(queries.panel_queries(dash)):
            rules.append({"record": f"{prefix}:panel_{i}:{query.ref}",
                          "expr": queries.substitute(query.expr, PARSE_VALUES),
                          "labels": {"panel": query.panel}})
        for variable in queries.variable_queries(dash):
            rules.append({"record": f"{prefix}:variable:{variable.name}",
                          "expr": queries.substitute(variable.series, PARSE_VALUES)})
        groups.append({"name": uid, "rules": rules})
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in groups)} rules found" in result.stdout
    assert "inconsistency" not in result.stderr, result.stderr


def test_promtool_check_catches_a_broken_expression(tmp_path):
    """The parse check above can fail: a mangled panel query is rejected."""
    path = tmp_path / "broken.rules.yml"
    broken = queries.substitute(queries.panel_queries(DASHBOARDS[FEEDS_UID])[0].expr, PARSE_VALUES)[:-1]
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": broken}]}]}))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


def test_every_metric_queried_is_documented():
    documented = (ROOT / "docs" / "metrics.md").read_text()
    used = set()
    for dash in DASHBOARDS.values():
        for query in queries.panel_queries(dash) + [q for q in queries.variable_queries(dash)]:
            text = query.expr if isinstance(query, queries.PanelQuery) else query.series
            used |= set(re.findall(r"\bfeedwatch_[a-z_]+", text))
    assert used
    base = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    missing = sorted(name for name in base if name not in documented)
    assert not missing, f"queried but not in docs/metrics.md: {missing}"


def test_every_recording_rule_queried_is_recorded():
    """Panels that read level:metric:operation series depend on prometheus/rules/*.yml."""
    recorded = set()
    for path in (ROOT / "prometheus" / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            recorded |= {rule["record"] for rule in group["rules"] if "record" in rule}
    used = {name for dash in DASHBOARDS.values() for query in queries.panel_queries(dash)
            for name in re.findall(r"\b[a-z_]+:[a-z_]+:[a-z0-9_]+\b", query.expr)}
    assert used, "the overview reads the feed-level recording rules"
    assert not used - recorded, f"not recorded by prometheus/rules/*.yml: {sorted(used - recorded)}"


def test_docs_describe_every_panel():
    """docs/dashboards.md says what each panel of the feed dashboards answers."""
    doc = (ROOT / "docs" / "dashboards.md").read_text()
    for uid in (FEEDS_UID, SYMBOL_UID):
        assert f"`{uid}`" in doc
        for panel in queries.panels(DASHBOARDS[uid]):
            assert f"| {panel['title']} |" in doc, f"docs/dashboards.md does not describe {uid}/{panel['title']}"


def test_the_positions_panel_shows_positions_a_bot_exports_under_its_own_job(tmp_path):
    """What TradingStalePricePosition watches (any job's positions, the feedwatch job's prices) is
    what the trading health dashboard shows: a bot embedding exporter.Monitor exports its positions
    under its own job, and its open position on a stale price must be on the panel. Evaluated by
    promtool against series from both jobs."""
    panel = [q for q in queries.panel_queries(DASHBOARDS["feedwatch-trading-health"])
             if q.panel == "Open positions and their price"]
    assert [q.ref for q in panel] == ["A", "B"]
    values = {**PARSE_VALUES, "account": ".+"}
    position = '{job="bot",instance="bot:9000",account="demo",feed="crypto",symbol="BTCUSDT"}'
    tests = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            {"series": f"feedwatch_trading_position{position}", "values": "0.5x5"},
            {"series": 'feedwatch_symbol_state{job="feedwatch",instance="fw:10119",feed="crypto",symbol="BTCUSDT"}',
             "values": "2x5"},
        ],
        "promql_expr_test": [
            {"expr": queries.substitute(q.expr, values), "eval_time": "3m",
             "exp_samples": [{"labels": '{account="demo",feed="crypto",symbol="BTCUSDT"}', "value": value}]}
            for q, value in zip(panel, (0.5, 2))],   # the position, and its price's state: stale
    }]}
    path = tmp_path / "positions_test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
