"""Every dashboard panel's query returns data from a real Prometheus scraping the real exporter,
which watches the real simulator — the compose stack, minus Docker.

Built with the alerting engineer's stack (``tests/integration/stack.py``: real ``feedwatch
simulate``, ``feedwatch run``, Prometheus and Alertmanager on 127.0.0.1) from the very files
docker-compose.yml mounts, changing only addresses and intervals: each simulator service's own
arguments (bound to 127.0.0.1 on a free port), ``deploy/feedwatch.yml`` (the simulators'
compose ``host:port`` replaced by the stack's, the trading state file in a temporary directory), ``prometheus/prometheus.yml`` and
``prometheus/rules/*.yml`` (1 s scrape and evaluation; the recording rules unchanged), and the
generated dashboards in ``grafana/dashboards/``.

Grafana's variables are filled in as Grafana would: each dashboard's ``label_values()`` variables
(``$feed``, ``$symbol``, ``$account``) with values those queries return, in order (the first
feed of the config and its first symbol where listed), ``$__rate_interval`` with four scrape intervals, ``$__range``
with the time the stack has been up. "Returns data" means at least one series with at least one
finite value (a quantile of nothing is NaN: that is no data).
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from grafana import queries
from tests.integration.stack import running_stack
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRAPE_SECONDS = 1
DASHBOARDS = {dash["uid"]: dash for dash in map(queries.load, sorted((ROOT / "grafana" / "dashboards").glob("*.json")))}
PANEL_QUERIES = [q for dash in DASHBOARDS.values() for q in queries.panel_queries(dash)]
VARIABLE_QUERIES = [q for dash in DASHBOARDS.values() for q in queries.variable_queries(dash)]


class Prometheus:
    """The stack's Prometheus HTTP API, the way Grafana's datasource calls it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: Any) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}?{urllib.parse.urlencode(params, doseq=True)}",
                                    timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def instant(self, expr: str) -> list[dict]:
        return self.get("/api/v1/query", query=expr)["result"]

    def range(self, expr: str, seconds: float) -> list[dict]:
        end = time.time()
        return self.get("/api/v1/query_range", query=expr, start=end - seconds, end=end,
                        step=SCRAPE_SECONDS)["result"]


@dataclass
class Live:
    prometheus: Prometheus
    preferred: dict[str, str]       # variable values to pick when listed: the first feed and its first symbol
    started: float


def compose_simulators() -> dict[str, tuple[str, list[str]]]:
    """Simulator services: stack name -> (compose ``host:port`` the exporter dials, simulate args).

    The arguments are the compose service's own, bound to 127.0.0.1 (the stack adds its port).
    """
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    found = {}
    for name, service in services.items():
        command = list(service.get("command") or [])
        if command[:1] != ["simulate"]:
            continue
        args = command[1:]
        port = args.pop(args.index("--port") + 1)
        args.remove("--port")
        args[args.index("--host") + 1] = "127.0.0.1"
        found[name.replace("-", "_")] = (f"{name}:{port}", args)
    return found


def exporter_config(simulators: dict[str, tuple[str, list[str]]], state_dir: Path) -> str:
    """deploy/feedwatch.yml with each simulator's compose address replaced by the stack's, and
    the trading state file (in the container's volume) moved to a temporary directory."""
    text = (ROOT / "deploy" / "feedwatch.yml").read_text()
    for name, (address, _) in simulators.items():
        assert f"ws://{address}" in text, f"deploy/feedwatch.yml does not use the {name} service"
        text = text.replace(f"ws://{address}", f"${{SIM_{name.upper()}_URL}}")
    state_file = (yaml.safe_load(text).get("trading") or {}).get("state_file")
    if state_file:
        text = text.replace(state_file, str(state_dir / Path(state_file).name))
    return text


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    simulators = compose_simulators()
    assert simulators, "docker-compose.yml runs at least one simulator"
    workdir = tmp_path_factory.mktemp("dashboards")
    config_text = exporter_config(simulators, workdir)
    with running_stack(workdir, exporter_config=config_text,
                       simulators={name: args for name, (_, args) in simulators.items()}) as stack:
        prometheus = Prometheus(stack.prometheus_url)
        started = time.time()

        def ready() -> bool:
            # Data flowing, and the recording rules evaluated over enough samples for rates
            # and quantiles (NaN never compares true).
            return all(prometheus.instant(expr) for expr in (
                "feedwatch_feed_up == 1",
                "feed_kind:feedwatch_feed_messages:rate1m > 0",
                "feed:feedwatch_feed_latency_seconds:p99_rate5m >= 0",
                f"count_over_time(feedwatch_symbol_updates_total[1m]) >= {4 * SCRAPE_SECONDS + 2}",
                # deploy/feedwatch.yml's adaptive symbol has learned its interval (its warm-up).
                "feedwatch_symbol_expected_interval_seconds",
            ))

        try:
            wait_for(ready, timeout=60, interval=0.5, what="Prometheus to hold the exporter's data and rules")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{stack.logs()}") from None
        feed = yaml.safe_load(config_text)["feeds"][0]
        yield Live(prometheus, {"feed": feed["name"], "symbol": feed["symbols"][0]}, started)


def _builtins(live: Live) -> dict[str, str]:
    up_for = max(int(time.time() - live.started), 10)
    return {"__rate_interval": f"{4 * SCRAPE_SECONDS}s", "__interval": f"{SCRAPE_SECONDS}s",
            "__range": f"{up_for}s"}


def _variable_values(live: Live, variable: queries.VariableQuery, chosen: dict[str, str]) -> list[str]:
    series = queries.substitute(variable.series, chosen)
    return live.prometheus.get(f"/api/v1/label/{variable.label}/values", **{"match[]": series})


def _values(live: Live, uid: str) -> dict[str, str]:
    """Grafana's variables for one dashboard, resolved in order as Grafana does: each from its
    label_values() query with the earlier ones filled in (the preferred value when listed)."""
    chosen = _builtins(live)
    for variable in queries.variable_queries(DASHBOARDS[uid]):
        listed = _variable_values(live, variable, chosen)
        assert listed, f"{uid}: ${variable.name} lists nothing"
        preferred = live.preferred.get(variable.name)
        chosen[variable.name] = preferred if preferred in listed else listed[0]
    return chosen


def _finite_samples(result: list[dict]) -> int:
    samples = [s for series in result for s in series.get("values", [series.get("value")]) if s]
    return sum(1 for _, value in samples if math.isfinite(float(value)))


def test_the_dashboards_have_queries():
    assert {"feedwatch-feeds", "feedwatch-symbol"} <= set(DASHBOARDS)
    assert len(PANEL_QUERIES) >= 20 and len(VARIABLE_QUERIES) >= 3


@pytest.mark.parametrize("variable", VARIABLE_QUERIES, ids=lambda v: f"{v.dashboard}/${v.name}")
def test_variable_lists_values(live: Live, variable: queries.VariableQuery):
    chosen = _values(live, variable.dashboard)
    listed = _variable_values(live, variable, chosen)
    assert listed, f"label_values({variable.series}, {variable.label}) is empty"
    # The running feed and its symbol are offered where those variables exist.
    preferred = live.preferred.get(variable.name)
    if preferred:
        assert preferred in listed


@pytest.mark.parametrize("query", PANEL_QUERIES, ids=str)
def test_panel_query_returns_data(live: Live, query: queries.PanelQuery):
    expr = queries.substitute(query.expr, _values(live, query.dashboard))
    if query.instant:
        result = live.prometheus.instant(expr)
    else:
        result = live.prometheus.range(expr, seconds=min(30, max(5, time.time() - live.started)))
    assert result, f"no series for {expr}"
    assert _finite_samples(result), f"only NaN/missing values for {expr}: {result[:3]}"
