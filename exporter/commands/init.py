"""``feedwatch init DIR``: write the shipped configs, rules and dashboards where the user wants them.

    feedwatch init ./feedwatch-stack

copies every shipped resource (``exporter/resources``) into DIR with the repository's layout, so
docs/deployment.md and the compose file's mounts apply unchanged::

    DIR/examples/*.yml                       exporter configs (demo, polygon, crypto, generic)
    DIR/prometheus/prometheus.yml            scrape config; rules/*.yml; tests/*.yml (promtool test rules)
    DIR/alertmanager/alertmanager.yml        routes and inhibitions; templates/; zoneinfo/; tests/ (amtool)
    DIR/grafana/dashboards/*.json            the dashboards
    DIR/grafana/provisioning/                datasource and dashboard providers

Nothing is overwritten unless ``--force``: when any file already exists, every such file is listed
and nothing is written. Exit status: 0 written, 1 refused or failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from exporter import resources
from exporter.commands import common_flags, write_files


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "init", parents=[common_flags()],
        help="write the example configs, Prometheus rules, Alertmanager config and dashboards to DIR",
        description="Copy the files feedwatch ships (example exporter configs, Prometheus config, rules "
                    "and their promtool tests, Alertmanager config, templates and zoneinfo, Grafana "
                    "dashboards and provisioning) into DIR, laid out as in the repository.")
    parser.add_argument("directory", type=Path, metavar="DIR", help="where to write (created if missing)")
    parser.add_argument("--force", action="store_true", help="overwrite files that already exist")
    parser.set_defaults(func=main)


def planned(directory: Path) -> list[tuple[Path, bytes]]:
    """Every (destination, content) that ``init`` writes into ``directory``."""
    return [(directory / resource.layout / rel, source.read_bytes())
            for resource in resources.ALL for rel, source in resources.tree(resource)]


def main(args: argparse.Namespace) -> int:
    prog = "feedwatch init"
    files = planned(args.directory)
    status, existing = write_files(prog, args.directory, files, args.force)
    if status:
        return status
    for resource in resources.ALL:
        count = sum(1 for dest, _ in files if dest.is_relative_to(args.directory / resource.layout))
        print(f"{prog}: {args.directory / resource.layout}/ ({count} files)", file=sys.stderr)
    print(f"{prog}: wrote {len(files)} files to {args.directory}"
          + (f", {len(existing)} overwritten" if existing else ""), file=sys.stderr)
    return 0
