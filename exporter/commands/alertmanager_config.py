"""``feedwatch alertmanager-config``: render Alertmanager's config with the channels set in the environment.

    FEEDWATCH_SLACK_API_URL_FILE=/run/secrets/slack_url FEEDWATCH_WEBHOOK_URL=https://hooks.example/x \\
        feedwatch alertmanager-config --output /etc/alertmanager/generated/alertmanager.yml --check

reads the committed ``alertmanager/alertmanager.yml`` (routes, inhibitions, time intervals,
templates; every receiver off) and adds to its receivers only the channels whose variables are
set (the list is in ``exporter/alerting/receivers.py`` and docs/alerting.md). Prints to stdout without
``--output``; with it, writes the file with mode 0600 and reports the channels on stderr::

    feedwatch alertmanager-config: wrote /etc/alertmanager/generated/alertmanager.yml (channels: slack, webhook)

With ``--config.file feedwatch.yml``, every market defined under the exporter config's
``markets:`` also gets its ``<name>-closed`` time interval and the routes that mute its staleness
alerts outside its sessions (copies of the built-in markets' routes; exporter/alerting/mutes.py).

Exit status: 0 written, 1 the check failed, 2 bad settings (every problem listed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from exporter.alerting import mutes, receivers
from exporter.commands import common_flags, report_problems
from exporter.config import ConfigError, load_file, market_calendars
from exporter.markets import Calendar


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "alertmanager-config", parents=[common_flags()],
        help="render alertmanager.yml with the notification channels set in the environment",
        description="Render Alertmanager's configuration from the committed alertmanager/alertmanager.yml, "
                    "adding only the channels (Slack, Telegram, email, webhook) whose FEEDWATCH_* "
                    "variables are set. See docs/alerting.md.")
    parser.add_argument("--base", type=Path, default=receivers.BASE_CONFIG, metavar="FILE",
                        help="the committed config to start from (default: %(default)s)")
    parser.add_argument("--output", "-o", type=Path, default=None, metavar="FILE",
                        help="write here (mode 0600) instead of stdout (default: stdout)")
    parser.add_argument("--templates", action="append", default=None, metavar="GLOB",
                        help="template glob as Alertmanager will see it (repeatable; default: the "
                             "committed templates, resolved to absolute paths)")
    parser.add_argument("--check", action="store_true",
                        help="validate the result with amtool check-config (needs --output)")
    parser.add_argument("-c", "--config.file", dest="exporter_config", default=None, metavar="FILE",
                        help="the exporter's configuration: each market defined under its markets: gets a "
                             "<name>-closed time interval and the staleness mutes the built-in markets have "
                             "(default: none, only the built-in markets)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    prog = "feedwatch alertmanager-config"
    try:
        custom = _custom_markets(args.exporter_config)
    except ConfigError as exc:
        report_problems(f"{prog}: {args.exporter_config}: {len(exc.errors)} problem(s):", exc.errors)
        return 2
    try:
        config, channels = receivers.render(args.base.read_text(), os.environ, args.base.parent, args.templates)
        mutes.add_market_mutes(config, custom)
        text = receivers.dump(config, channels)
    except ValueError as exc:  # a custom market's interval or routes cannot be added
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except receivers.AlertingConfigError as exc:
        report_problems(f"{prog}: {len(exc.errors)} problem(s) in the environment:", exc.errors)
        return 2
    except OSError as exc:
        print(f"{prog}: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except yaml.YAMLError as exc:
        print(f"{prog}: {args.base}: not valid YAML: {exc}", file=sys.stderr)
        return 2
    names = ", ".join(c.name for c in channels) or "none: every receiver stays off"
    for channel in channels:
        for var in ("FEEDWATCH_SLACK_API_URL_FILE", "FEEDWATCH_EMAIL_AUTH_PASSWORD_FILE"):
            path = os.environ.get(var, "").strip()
            if path and channel.name in var.lower() and not os.path.isfile(path):
                print(f"{prog}: warning: {var}={path} is not a file here; Alertmanager reads it "
                      "when it sends, so it must exist where Alertmanager runs", file=sys.stderr)
    if custom:
        print(f"{prog}: closed-market mutes for: {', '.join(c.name for c in custom)}", file=sys.stderr)
    if args.output is None:
        if args.check:
            print(f"{prog}: --check needs --output", file=sys.stderr)
            return 2
        sys.stdout.write(text)
        print(f"{prog}: channels: {names}", file=sys.stderr)
        return 0
    receivers.write(args.output, text)
    print(f"{prog}: wrote {args.output} (channels: {names})", file=sys.stderr)
    if args.check:
        amtool = shutil.which("amtool")
        if amtool is None:
            print(f"{prog}: --check: amtool is not installed (Debian: prometheus-alertmanager)", file=sys.stderr)
            return 1
        done = subprocess.run([amtool, "check-config", str(args.output)], capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            return 1
    return 0


def _custom_markets(path: str | None) -> list[Calendar]:
    """The calendars of the markets defined in the exporter's config (none without a file)."""
    if path is None:
        return []
    config = load_file(path)  # raises ConfigError listing every problem, markets: included
    return list(market_calendars(config.markets, []).values())
