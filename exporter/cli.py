"""``feedwatch``: the command line. One module per subcommand under ``exporter/commands/``.

    feedwatch run -c feedwatch.yml           the exporter
    feedwatch check-config feedwatch.yml     validate a config, every error with its path
    feedwatch simulate --venue polygon ...   a venue simulator with fault injection
    feedwatch demo                           simulator + exporter with compressed thresholds
    feedwatch incidents [--since 1h] [--json] what happened, from the incident journal
    feedwatch init DIR                       write the shipped configs, rules and dashboards to DIR
    feedwatch mixin --out DIR ...            the rules, their tests and the dashboards for your job selector
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

from exporter.version import __version__, build_info
from exporter.commands import setup_logging

# Subcommand modules under exporter/commands/, in the order `feedwatch --help` lists them.
COMMAND_MODULES = [
    "run",
    "check_config",
    "simulate",
    "demo",
    "alertmanager_config",
    "alert_test",
    "incidents",
    "init",
    "mixin",
    "healthcheck",
]


class _Version(argparse.Action):
    """``--version``: the version, revision and branch (looked up only when asked: git may run)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        info = build_info()
        print(f"feedwatch {__version__} (revision {info['revision']}, branch {info['branch']})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedwatch",
        description="Prometheus exporter for market-data freshness and trading risk.",
    )
    parser.add_argument("--version", action=_Version, help="show the version, revision and branch and exit")
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
