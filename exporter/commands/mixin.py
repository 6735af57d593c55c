"""``feedwatch mixin --out DIR``: the Prometheus rules, their promtool tests and the dashboards, for your setup.

    feedwatch mixin --out ./monitoring --job-selector 'job="md",env="prod"' \\
        --runbook-base https://wiki.example.com/feedwatch/runbook --threshold price_move_ratio=0.1

writes, laid out as in the repository (and as ``feedwatch init`` writes them)::

    DIR/prometheus/rules/*.yml        the alerting and recording rules
    DIR/prometheus/tests/*.yml        their promtool tests: promtool test rules DIR/prometheus/tests/*.yml
    DIR/grafana/dashboards/*.json     the dashboards
    DIR/deploy/kubernetes/prometheusrule.yaml   the rules as a Prometheus Operator PrometheusRule

With no option it writes the shipped files unchanged: they are the defaults
(``exporter/alerting/mixin.py`` says what each option rewrites). The tests are left out, with the
reason, when they cannot hold: a selector with other than equality matchers, or a threshold away
from its default. Nothing is overwritten unless ``--force``. Exit status: 0 written, 1 refused or
failed, 2 bad options.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from exporter import resources
from exporter.alerting import mixin, prometheusrule
from exporter.commands import common_flags, write_files


def _thresholds_help() -> str:
    lines = ["thresholds (--threshold NAME=VALUE):"]
    for threshold in mixin.THRESHOLDS.values():
        lines.append(f"  {threshold.name} (default {mixin.format_number(threshold.default)}): {threshold.help}")
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "mixin", parents=[common_flags()], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="write the Prometheus rules, their promtool tests and the dashboards for your job selector",
        description=textwrap.fill(
            "Write feedwatch's Prometheus rules (also as a Kubernetes PrometheusRule), their promtool "
            "tests and its Grafana dashboards into DIR, for your job selector, runbook location and "
            "thresholds. Without options the shipped files are written unchanged.", 80),
        epilog=_thresholds_help())
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write (created if missing)")
    parser.add_argument("--job-selector", default=mixin.DEFAULT_SELECTOR, metavar="MATCHERS",
                        help="label matchers selecting the exporter's targets, as in PromQL "
                             "(default: %(default)s; e.g. 'job=\"md\",env=\"prod\"')")
    parser.add_argument("--runbook-base", default=mixin.DEFAULT_RUNBOOK_BASE, metavar="URL",
                        help="where docs/runbook.md is published; alerts link to URL#<alert name, "
                             "lowercased> (default: %(default)s)")
    parser.add_argument("--threshold", action="append", default=[], metavar="NAME=VALUE",
                        help="a rule threshold away from its default (repeatable; names below)")
    parser.add_argument("--force", action="store_true", help="overwrite files that already exist")
    parser.set_defaults(func=main)


def build(args: argparse.Namespace) -> mixin.Mixin:
    """The mixin the options describe; ValueError names a bad option."""
    try:
        selector = mixin.parse_selector(args.job_selector)
    except ValueError as exc:
        raise ValueError(f"--job-selector {args.job_selector!r}: {exc}") from None
    thresholds: dict[str, float] = {}
    for item in args.threshold:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--threshold {item!r}: expected NAME=VALUE")
        if name.strip() not in mixin.THRESHOLDS:
            raise ValueError(f"--threshold {item!r}: unknown threshold {name.strip()!r} "
                             f"(known: {', '.join(mixin.THRESHOLDS)})")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--threshold {item!r}: {value!r} is not a number") from None
        if not number >= 0 or number == float("inf"):
            raise ValueError(f"--threshold {item!r}: expected a finite number >= 0")
        thresholds[name.strip()] = number
    try:
        return mixin.Mixin(selector, args.runbook_base, thresholds)
    except ValueError as exc:  # the runbook base (the rest was checked above)
        raise ValueError(f"--runbook-base: {exc}") from None


def planned(config: mixin.Mixin, directory: Path) -> tuple[list[tuple[Path, str]], str | None]:
    """Every (destination, text) to write, and why the tests are left out (or None)."""
    rules_dir = resources.path(resources.PROMETHEUS, "rules")
    tests_dir = resources.path(resources.PROMETHEUS, "tests")
    dashboards_dir = resources.path(resources.GRAFANA_DASHBOARDS)
    files: list[tuple[Path, str]] = []
    rule_texts = []
    for source in sorted(rules_dir.glob("*.yml")):
        text = config.rules(source.read_text(encoding="utf-8"))
        rule_texts.append(text)
        files.append((directory / resources.PROMETHEUS.layout / "rules" / source.name, text))
    files.append((directory / "deploy" / "kubernetes" / "prometheusrule.yaml", prometheusrule.render(rule_texts)))
    refused = config.tests_refused()
    if refused is None:
        for source in sorted(tests_dir.glob("*.yml")):
            files.append((directory / resources.PROMETHEUS.layout / "tests" / source.name,
                          config.tests(source.read_text(encoding="utf-8"), rule_texts)))
    for source in sorted(dashboards_dir.glob("*.json")):
        data = config.dashboard(json.loads(source.read_text(encoding="utf-8")))
        files.append((directory / resources.GRAFANA_DASHBOARDS.layout / source.name,
                      json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"))
    return files, refused


def main(args: argparse.Namespace) -> int:
    prog = "feedwatch mixin"
    try:
        config = build(args)
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    files, refused = planned(config, args.out)
    status, _ = write_files(prog, args.out, files, args.force)
    if status:
        return status
    print(f"{prog}: wrote {len(files)} files to {args.out} for {config.selector_text}, runbooks at "
          f"{config.runbook_base}" + (f", thresholds {config.changed_thresholds}" if config.changed_thresholds else ""),
          file=sys.stderr)
    if refused:
        print(f"{prog}: prometheus/tests not written: {refused}", file=sys.stderr)
    else:
        print(f"{prog}: check them with: promtool test rules {args.out / 'prometheus' / 'tests'}/*.yml",
              file=sys.stderr)
    return 0
