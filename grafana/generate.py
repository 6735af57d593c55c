"""Write the Grafana dashboards from their code: ``grafana/dashboards_src/*.py`` -> ``grafana/dashboards/*.json``.

Usage (from the repository root)::

    python -m grafana.generate           # (re)write grafana/dashboards/*.json
    python -m grafana.generate --check   # exit 1 if a committed JSON differs from the code
    python grafana/generate.py           # the same, as a script

Discovery: every module in ``grafana/dashboards_src/`` whose name does not start with ``_``
defines ``build()`` returning a grafana-foundation-sdk dashboard (model or builder); it is
written to ``grafana/dashboards/<module name>.json``. JSON files in the output directory that no
module produces are reported (``--check``) or removed (write), so a renamed dashboard cannot leave
a stale twin behind for Grafana to load.

The JSON is deterministic (sorted keys, two-space indent, trailing newline) so the committed
files diff cleanly and the test ``tests/unit/test_dashboards.py`` can compare them byte for byte.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``grafana`` and ``exporter`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from exporter.alerting import mixin

GRAFANA_DIR = Path(__file__).resolve().parent
SOURCE_PACKAGE = "grafana.dashboards_src"
SOURCE_DIR = GRAFANA_DIR / "dashboards_src"
OUTPUT_DIR = GRAFANA_DIR / "dashboards"


def dashboard_modules() -> list[ModuleType]:
    """The dashboard modules, by the naming convention above, sorted by name."""
    names = sorted(info.name for info in pkgutil.iter_modules([str(SOURCE_DIR)])
                   if not info.name.startswith("_"))
    return [importlib.import_module(f"{SOURCE_PACKAGE}.{name}") for name in names]


def to_dict(dashboard: Any) -> dict[str, Any]:
    """A dashboard (SDK builder, SDK model or plain dict) as plain JSON data."""
    if isinstance(dashboard, Builder):
        dashboard = dashboard.build()
    data = json.loads(json.dumps(dashboard, cls=JSONEncoder))
    number_panels(data)
    return select_job(data)


def select_job(data: Any) -> Any:
    """Every query and variable query with the default job selector on each feedwatch series.

    The dashboard modules write their queries without it; the committed JSON carries it, like the
    rules, so ``feedwatch mixin --job-selector`` can swap it for the user's (exporter/alerting/mixin.py).
    """
    if isinstance(data, dict):
        return {key: (mixin.inject_default(value) if key in ("expr", "query") and isinstance(value, str)
                      else select_job(value)) for key, value in data.items()}
    if isinstance(data, list):
        return [select_job(item) for item in data]
    return data


def number_panels(data: dict[str, Any]) -> None:
    """Give every panel (rows included) a unique id, in layout order.

    The SDK leaves ids unset (rows get 0); Grafana needs them unique for "view panel" and
    panel links, and numbering in order keeps them stable while the layout is unchanged.
    """
    next_id = 1
    for panel in data.get("panels", []):
        panel["id"] = next_id
        next_id += 1
        for inner in panel.get("panels", []):  # panels inside a collapsed row
            inner["id"] = next_id
            next_id += 1


def render(dashboard: Any) -> str:
    """The exact text written to disk."""
    return json.dumps(to_dict(dashboard), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name -> JSON text for every dashboard module."""
    files: dict[str, str] = {}
    for module in dashboard_modules():
        build = getattr(module, "build", None)
        if not callable(build):
            raise SystemExit(f"{module.__name__}: a dashboard module must define build()")
        files[f"{module.__name__.rsplit('.', 1)[1]}.json"] = render(build())
    uids: dict[str, str] = {}
    for name, text in files.items():
        uid = json.loads(text).get("uid")
        if not uid:
            raise SystemExit(f"{name}: the dashboard has no uid (stable UIDs keep links working)")
        if uid in uids:
            raise SystemExit(f"{name} and {uids[uid]} share the uid {uid!r}")
        uids[uid] = name
    return files


def differences(files: dict[str, str], out_dir: Path) -> list[str]:
    """What differs between the generated files and ``out_dir`` (empty when identical)."""
    problems = []
    for name, text in files.items():
        path = out_dir / name
        if not path.exists():
            problems.append(f"{path}: missing (run python -m grafana.generate)")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from its source (run python -m grafana.generate)")
    for path in sorted(out_dir.glob("*.json")):
        if path.name not in files:
            problems.append(f"{path}: no module in {SOURCE_DIR} generates it")
    return problems


def write(files: dict[str, str], out_dir: Path) -> list[str]:
    """Write the files that changed, remove orphans; return what was done."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for name, text in files.items():
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            done.append(f"wrote {path}")
    for path in sorted(out_dir.glob("*.json")):
        if path.name not in files:
            path.unlink()
            done.append(f"removed {path} (no module generates it)")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the committed JSON differs from the generated JSON")
    parser.add_argument("--out-dir", type=Path, default=OUTPUT_DIR, help="default: %(default)s")
    args = parser.parse_args(argv)
    files = generate()
    if args.check:
        problems = differences(files, args.out_dir)
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print(f"{len(files)} dashboards up to date in {args.out_dir}")
        return 1 if problems else 0
    for line in write(files, args.out_dir) or [f"{len(files)} dashboards already up to date"]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
