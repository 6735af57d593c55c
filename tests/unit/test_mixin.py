"""The mixin (exporter/alerting/mixin.py, ``feedwatch mixin``): nothing escapes the rewrite, the
committed files are its defaults, and another job selector gives rules whose promtool tests pass.

The selectors are read with promql-parser (an independent PromQL parser, not the lexer the
rewrite uses), so a selector the lexer would miss fails here.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import promql_parser
import pytest
import yaml

from exporter import cli
from exporter.alerting import mixin, promql
from exporter.commands import mixin as mixin_command
from grafana import queries

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
TEST_FILES = sorted((ROOT / "prometheus" / "tests").glob("*.yml"))
DASHBOARD_FILES = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
GRAFANA_VALUES = {"feed": ".*", "symbol": ".*", "account": ".*", "__rate_interval": "1m", "__interval": "15s",
                  "__range": "1h"}
MD = 'job="md",env="prod"'


# --- reading expressions ------------------------------------------------------------------------

def rule_exprs(texts: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(where, expr) for every rule of the given rule files' texts."""
    for name, text in texts.items():
        for group in yaml.safe_load(text)["groups"]:
            for rule in group["rules"]:
                yield f"{name}: {rule.get('record') or rule.get('alert')}", rule["expr"]


def dashboard_exprs(texts: dict[str, str]) -> Iterator[tuple[str, str]]:
    for where, expr, _ in dashboard_queries(texts):
        yield where, expr


def dashboard_queries(texts: dict[str, str]) -> Iterator[tuple[str, str, tuple[str, str] | None]]:
    """(where, expr, (dashboard uid, panel title) or None for a variable) of every dashboard query."""
    for name, text in texts.items():
        data = json.loads(text)
        for query in queries.panel_queries(data):
            yield f"{name}: {query}", queries.substitute(query.expr, GRAFANA_VALUES), (query.dashboard, query.panel)
        for variable in queries.variable_queries(data):
            yield f"{name}: ${variable.name}", queries.substitute(variable.series, GRAFANA_VALUES), None


def dashboard_problems(texts: dict[str, str], selector: list[tuple[str, str, str]]) -> list[str]:
    problems = []
    for where, expr, panel in dashboard_queries(texts):
        problems += selector_problems(where, expr, promql.is_feedwatch_series, selector,
                                      mixin.ANY_JOB_PANELS.get(panel, set()))
    return problems


def parsed_selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(metric name, [(label, op, value)]) of every selector, by promql-parser."""
    found = []
    ops = {int(promql_parser.MatchOp.Equal): "=", int(promql_parser.MatchOp.NotEqual): "!=",
           int(promql_parser.MatchOp.Re): "=~", int(promql_parser.MatchOp.NotRe): "!~"}

    def visit(node) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            assert not node.matchers.or_matchers, f"'or' matchers are not supported: {expr}"
            found.append((node.name or "", [(m.name, ops[int(m.op)], m.value) for m in node.matchers.matchers]))
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def selector_problems(where: str, expr: str, wanted, selector: list[tuple[str, str, str]],
                      any_job: set[str] = frozenset()) -> list[str]:
    """Why the selectors of ``expr`` do not all carry ``selector`` (empty when they do)."""
    problems = []
    selector_labels = {label for label, _, _ in selector}
    for name, matchers in parsed_selectors(expr):
        if not name:
            if any(label == "__name__" for label, _, _ in matchers):
                problems.append(f"{where}: a {{__name__=...}} selector escapes the job selector: {expr}")
            continue
        mine = [m for m in matchers if m[0] in selector_labels]
        if name in any_job and mine == [("job", "=~", ".+")]:
            continue
        if wanted(name) and sorted(mine) != sorted(selector):
            problems.append(f"{where}: {name} has {mine or 'no job matcher'}, not {selector}")
        elif mine and sorted(mine) != sorted(selector):
            problems.append(f"{where}: {name} matches the selector's labels with {mine}, not {selector}")
    return problems


DEFAULT = [("job", "=", "feedwatch")]


def read(paths: list[Path]) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in paths}


# --- nothing escapes the rewrite ------------------------------------------------------------------

def rule_problems(texts: dict[str, str], selector: list[tuple[str, str, str]]) -> list[str]:
    problems = []
    for where, expr in rule_exprs(texts):
        record = where.split(": ", 1)[1]
        problems += selector_problems(where, expr, promql.is_exporter_series, selector,
                                      mixin.ANY_JOB.get(record, set()))
    return problems


def test_every_rule_selects_the_exporters_series_with_the_default_selector() -> None:
    """The rule files are the source: a new rule must write job="feedwatch" on every selector of a
    feedwatch_* series and of up (or it would escape `feedwatch mixin --job-selector`)."""
    problems = rule_problems(read(RULE_FILES), DEFAULT)
    assert problems == [], "run scripts/select-job.py prometheus/rules/*.yml:\n" + "\n".join(problems)


def test_select_job_writes_the_selector_back_into_rules_written_without_it() -> None:
    """scripts/select-job.py, the quick way to give a new rule the selector: the committed rules
    with every job="feedwatch" taken out come back byte for byte."""
    spec = importlib.util.spec_from_file_location("select_job", ROOT / "scripts" / "select-job.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for path in RULE_FILES:
        text = path.read_text(encoding="utf-8")
        bare = text.replace('{job="feedwatch"}', "").replace('job="feedwatch",', "")
        assert bare != text
        assert script.select(bare) == text, path.name


def test_the_selector_check_finds_a_selector_without_the_job() -> None:
    planted = {"x.yml": "groups:\n  - name: g\n    rules:\n      - record: a:feedwatch_b:c\n"
                        "        expr: sum by (job) (feedwatch_b{job=\"feedwatch\"}) and on (job) up == 1\n"
                        "      - record: a:feedwatch_c:d\n        expr: feedwatch_c{job=~\"feed.*\"}\n"}
    problems = rule_problems(planted, DEFAULT)
    assert len(problems) == 2 and "up has no job matcher" in problems[0] and "feedwatch_c" in problems[1], problems


def test_any_job_is_allowed_only_where_the_table_says() -> None:
    used = {record for where, expr in rule_exprs(read(RULE_FILES)) if mixin.ANY_JOB_MATCHER in expr
            for record in [where.split(": ", 1)[1]]}
    assert used == set(mixin.ANY_JOB)


def test_every_dashboard_query_selects_feedwatch_series_with_the_default_selector() -> None:
    assert dashboard_problems(read(DASHBOARD_FILES), DEFAULT) == []


def test_any_job_is_allowed_only_in_the_panels_the_table_names() -> None:
    used = {panel for _, expr, panel in dashboard_queries(read(DASHBOARD_FILES)) if mixin.ANY_JOB_MATCHER in expr}
    assert used == set(mixin.ANY_JOB_PANELS)


@pytest.mark.parametrize("source", ["rules", "dashboards"])
def test_the_lexer_finds_the_selectors_the_parser_finds(source: str) -> None:
    """The rewrite's lexer (exporter/alerting/promql.py) sees every selector a real parser sees."""
    exprs = (rule_exprs(read(RULE_FILES)) if source == "rules" else dashboard_exprs(read(DASHBOARD_FILES)))
    for where, expr in exprs:
        lexed = [(s.name, sorted(m.strip() for m in promql.split_matchers(s.matchers or ""))) for s in promql.selectors(expr)]
        parsed = [(name, sorted(f"{label}{op}{json.dumps(value)}" for label, op, value in matchers))
                  for name, matchers in parsed_selectors(expr) if name]
        assert sorted(lexed) == sorted(parsed), where


def test_inject_puts_the_matcher_on_selectors_only() -> None:
    expr = ('sum by (job, up) (rate(feedwatch_a_total{kind=~"x,y"}[5m] offset 1h)) and on (job) up'
            ' unless label_replace(feedwatch_b, "up", "$1", "feedwatch_c", "(.*)") # feedwatch_d')
    assert promql.inject(expr, 'job="j"', promql.is_exporter_series) == (
        'sum by (job, up) (rate(feedwatch_a_total{job="j",kind=~"x,y"}[5m] offset 1h)) and on (job) up{job="j"}'
        ' unless label_replace(feedwatch_b{job="j"}, "up", "$1", "feedwatch_c", "(.*)") # feedwatch_d')
    once = promql.inject(expr, 'job="j"', promql.is_exporter_series)
    assert promql.inject(once, 'job="j"', promql.is_exporter_series) == once
    with pytest.raises(ValueError, match="already has a matcher on 'job'"):
        promql.inject('feedwatch_a{job="k"}', 'job="j"', promql.is_exporter_series)


# --- the committed files are the defaults ---------------------------------------------------------

def test_the_defaults_write_the_committed_files(tmp_path: Path) -> None:
    """Drift: `feedwatch mixin` without options writes exactly the shipped rules, tests and dashboards."""
    args = argparse.Namespace(job_selector=mixin.DEFAULT_SELECTOR, runbook_base=mixin.DEFAULT_RUNBOOK_BASE,
                              threshold=[])
    files, refused = mixin_command.planned(mixin_command.build(args), tmp_path)
    assert refused is None
    written = {str(dest.relative_to(tmp_path)): text for dest, text in files}
    committed = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8")
                 for p in RULE_FILES + TEST_FILES + DASHBOARD_FILES + [ROOT / "deploy/kubernetes/prometheusrule.yaml"]}
    assert written.keys() == committed.keys()
    for name, text in committed.items():
        assert written[name] == text, f"{name}: the mixin's defaults differ from the committed file"


def test_every_runbook_link_starts_with_the_default_base() -> None:
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["annotations"]["runbook_url"] == (
                        f"{mixin.DEFAULT_RUNBOOK_BASE}#{rule['alert'].lower()}"), rule["alert"]


def test_the_threshold_table_holds_each_threshold_where_it_says() -> None:
    """A rule edit that moves or rewrites a threshold's literal fails here, not silently in the mixin."""
    texts = list(read(RULE_FILES).values())
    for threshold in mixin.THRESHOLDS.values():
        for place in threshold.places:
            assert mixin.place_count(texts, place, threshold.default) == place.count, (threshold.name, place)


# --- another setup ----------------------------------------------------------------------------------

def run_mixin(out: Path, *options: str) -> None:
    assert cli.main(["mixin", "--out", str(out), *options]) == 0


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed: apt-get install prometheus (Debian package)"
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def md(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mixin") / "md"
    run_mixin(out, "--job-selector", MD, "--runbook-base", "https://wiki.example.com/feedwatch/runbook")
    return out


def test_another_selector_reaches_every_selector_and_label_list(md: Path) -> None:
    selector = [("job", "=", "md"), ("env", "=", "prod")]
    rules = read(sorted((md / "prometheus" / "rules").glob("*.yml")))
    assert rule_problems(rules, selector) == []
    dashboards = read(sorted((md / "grafana" / "dashboards").glob("*.json")))
    assert dashboard_problems(dashboards, selector) == []   # the positions panel stays on any job
    for where, expr in rule_exprs(rules):  # env is kept wherever job is
        for keyword, labels in re.findall(r"\b(by|on|without|ignoring)\s*\(([^()]*)\)", expr):
            names = [label.strip() for label in labels.split(",")]
            assert ("job" in names) == ("env" in names), f"{where}: {keyword} ({labels})"
    for where, text in rules.items():
        for group in yaml.safe_load(text)["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["annotations"]["runbook_url"].startswith("https://wiki.example.com/feedwatch/runbook#")
    operator = yaml.safe_load((md / "deploy" / "kubernetes" / "prometheusrule.yaml").read_text())
    assert operator["spec"]["groups"] == [g for text in rules.values() for g in yaml.safe_load(text)["groups"]]


def test_the_promtool_tests_pass_for_another_selector_and_fail_for_the_old_one(md: Path) -> None:
    prometheus = md / "prometheus"
    checked = promtool("check", "rules", *sorted(str(p) for p in (prometheus / "rules").glob("*.yml")), cwd=md)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tests = sorted(str(p.relative_to(prometheus)) for p in (prometheus / "tests").glob("*.yml"))
    assert len(tests) == len(TEST_FILES)
    done = promtool("test", "rules", *tests, cwd=prometheus)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    # The selector bites: the shipped tests' series (job="feedwatch") raise nothing under these rules.
    shutil.copy(ROOT / "prometheus" / "tests" / "feeds_test.yml", prometheus / "tests" / "shipped_feeds_test.yml")
    old = promtool("test", "rules", "tests/shipped_feeds_test.yml", cwd=prometheus)
    assert old.returncode != 0 and "FAILED" in old.stdout + old.stderr, old.stdout[-2000:]


def test_expected_labels_are_rewritten_in_block_and_flow_mappings() -> None:
    config = mixin.Mixin(mixin.parse_selector(MD))
    text = ("tests:\n  - exp_labels:\n      severity: info\n      job: feedwatch\n"
            "  - exp_labels: {severity: critical, job: feedwatch, instance: \"feedwatch:10119\"}\n"
            "  - exp_labels: {job: \"feedwatch\"}\n")
    data = yaml.safe_load(config.tests(text, []))
    assert [case["exp_labels"] for case in data["tests"]] == [
        {"severity": "info", "job": "md", "env": "prod"},
        {"severity": "critical", "job": "md", "env": "prod", "instance": "feedwatch:10119"},
        {"job": "md", "env": "prod"},
    ]


def test_thresholds_are_rewritten_where_the_table_says_and_the_tests_left_out(tmp_path: Path, capsys) -> None:
    changed = {"price_move_ratio": 0.1, "drawdown_warning_fraction": 0.75, "latency_p99_seconds": 2.5,
               "calendar_ending_days": 30}
    run_mixin(tmp_path, *[arg for name, value in changed.items() for arg in ("--threshold", f"{name}={value}")])
    assert "prometheus/tests not written" in capsys.readouterr().err
    assert not (tmp_path / "prometheus" / "tests").exists()
    texts = list(read(sorted((tmp_path / "prometheus" / "rules").glob("*.yml"))).values())
    for name, value in changed.items():
        threshold = mixin.THRESHOLDS[name]
        for place in threshold.places:
            assert mixin.place_count(texts, place, value) == place.count, (name, place)
            assert mixin.place_count(texts, place, threshold.default) == 0, (name, place)
    assert "moved 10 % or more" in "".join(texts) and "past 75 % of its daily" in "".join(texts)
    checked = promtool("check", "rules", *sorted(str(p) for p in (tmp_path / "prometheus" / "rules").glob("*.yml")),
                       cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(("options", "message"), [
    (["--job-selector", "job=md"], "not a label matcher"),
    (["--job-selector", 'job!="x"'], "must select the exporter's job"),
    (["--job-selector", 'namespace="md"'], "needs a matcher on job"),
    (["--job-selector", 'job="a",job="b"'], "more than one matcher on job"),
    (["--job-selector", '__name__="x"'], "__name__"),
    (["--runbook-base", "wiki/runbook"], "--runbook-base"),
    (["--threshold", "nope=1"], "unknown threshold 'nope'"),
    (["--threshold", "price_move_ratio=lots"], "not a number"),
])
def test_bad_options_are_named(tmp_path: Path, capsys, options: list[str], message: str) -> None:
    assert cli.main(["mixin", "--out", str(tmp_path / "out"), *options]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_regex_selector_writes_rules_and_dashboards_but_says_why_not_the_tests(tmp_path: Path, capsys) -> None:
    run_mixin(tmp_path, "--job-selector", 'job=~"feedwatch-.*"')
    assert "need label values" in capsys.readouterr().err
    assert not (tmp_path / "prometheus" / "tests").exists()
    rules = read(sorted((tmp_path / "prometheus" / "rules").glob("*.yml")))
    assert rule_problems(rules, [("job", "=~", "feedwatch-.*")]) == []


def test_nothing_is_overwritten_without_force(tmp_path: Path, capsys) -> None:
    run_mixin(tmp_path)
    assert cli.main(["mixin", "--out", str(tmp_path)]) == 1
    assert "already exist" in capsys.readouterr().err
    run_mixin(tmp_path, "--force")
