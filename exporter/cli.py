"""``feedwatch``: the command line. One module per subcommand under ``exporter/commands/``.

    feedwatch run -c feedwatch.yml           the exporter
    feedwatch check-config feedwatch.yml     validate a config, every error with its path
    feedwatch simulate --venue polygon ...   a venue simulator with fault injection
    feedwatch demo                           simulator + exporter with compressed thresholds
    feedwatch init DIR                       write the shipped configs, rules and dashboards to DIR
    feedwatch --version

Adding a command: write ``exporter/commands/<name>.py`` with ``register(subparsers)`` (which
creates the subparser and sets ``func=main``, ``main(args) -> int``) and add ``<name>`` to
``COMMAND_MODULES``. Flags follow Prometheus conventions (``--web.listen-address``,
``--log.level``); every command gets ``--log.level`` and ``--log.format`` from
``exporter.commands.common_flags``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from exporter.version import __version__
from exporter.commands import setup_logging

# Subcommand modules under exporter/commands/, in the order `feedwatch --help` lists them.
COMMAND_MODULES = [
    "run",
    "check_config",
    "simulate",
    "demo",
    "alertmanager_config",
    "alert_test",
    "init",
    "healthcheck",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedwatch",
        description="Prometheus exporter for market-data freshness and trading risk.",
    )
    parser.add_argument("--version", action="version", version=f"feedwatch {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"exporter.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    setup_logging(getattr(args, "log_level", "info"), getattr(args, "log_format", "logfmt"))
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
