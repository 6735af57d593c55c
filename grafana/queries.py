"""Read the PromQL out of generated dashboards, and fill in Grafana's template variables.

Used by the tests (every expression parses with promtool; every query returns data from a real
Prometheus scraping the real exporter) and handy when debugging a panel by hand::

    python -m grafana.queries grafana/dashboards/symbol_detail.json feed=crypto symbol=BTCUSDT
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

# label_values(<series selector>, <label>): how the feed and symbol variables list their values.
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<series>.*),\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$")
# $name, ${name} and ${name:format}
_VARIABLE = re.compile(r"\$\{(?P<braced>[A-Za-z0-9_]+)(?::[A-Za-z]+)?\}|\$(?P<plain>[A-Za-z0-9_]+)")


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel."""

    dashboard: str      # dashboard uid
    panel: str          # panel title
    panel_id: int       # panel id (titles may repeat: a stat and a graph of the same thing)
    ref: str            # the target's refId
    expr: str           # PromQL with Grafana variables still in it
    instant: bool       # an instant query (stat, table, bar gauge) rather than a range query

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} #{self.panel_id} [{self.ref}]"


@dataclass(frozen=True)
class VariableQuery:
    """A ``label_values(series, label)`` template variable."""

    dashboard: str
    name: str
    series: str         # a series selector, possibly with variables in it
    label: str


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row (including the panels inside collapsed rows)."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def panel_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    return [PanelQuery(dashboard["uid"], panel.get("title", ""), panel.get("id", 0), target.get("refId", ""),
                       target["expr"],
                       bool(target.get("instant")) and not target.get("range"))
            for panel in panels(dashboard) for target in panel.get("targets", []) if "expr" in target]


def variable_queries(dashboard: Mapping[str, Any]) -> list[VariableQuery]:
    found = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        match = _LABEL_VALUES.match(text)
        if not match:
            raise ValueError(f"{dashboard['uid']}: variable {variable['name']}: not a label_values() query: {text!r}")
        found.append(VariableQuery(dashboard["uid"], variable["name"], match["series"].strip(), match["label"]))
    return found


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace ``$name`` / ``${name}`` with ``values[name]``; an unknown variable is an error."""

    def replace(match: re.Match[str]) -> str:
        name = match["braced"] or match["plain"]
        if name not in values:
            raise KeyError(f"no value for the Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def load(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    values = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "feed": ".*", "symbol": ".*"}
    values.update(dict(arg.split("=", 1) for arg in argv[1:]))
    for query in panel_queries(load(argv[0])):
        print(f"# {query}\n{substitute(query.expr, values)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
