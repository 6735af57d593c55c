"""``feedwatch alert-test``: send a test alert through Alertmanager to every configured channel.

    feedwatch alert-test --alertmanager.url http://127.0.0.1:9093 [--channel slack] [--json]

posts one test alert (``FeedwatchAlertTest``, unique ``run`` label) that the committed routing
sends to the ``alert-test`` receiver, which ``feedwatch alertmanager-config`` gives every
configured channel; then reads Alertmanager's own notification counters and reports per channel::

    alert-test run 3f2a9c1b7d4e via http://127.0.0.1:9093 (receiver alert-test)
      slack      delivered
      telegram   FAILED (1 attempt failed; Alertmanager retries: see its log for the error)
      webhook    delivered

``--channel NAME`` tests one channel (its own receiver, ``alert-test-NAME``); ``--json`` prints the
report exactly as ``POST /api/v1/alerts/test`` answers it (one implementation:
``exporter.alerting.receivers.alert_test``).

Exit status: 0 every channel delivered, 1 a channel failed or none is configured, 2 Alertmanager
unreachable, the receiver missing or an unknown channel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from exporter.alerting import receivers
from exporter.commands import common_flags
from exporter.config import parse_duration


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "alert-test", parents=[common_flags()],
        help="send a test alert to every configured channel and report delivery",
        description="Send a test alert through Alertmanager's API and report, per channel, whether "
                    "Alertmanager delivered it (from its own notification counters).")
    parser.add_argument("--alertmanager.url", dest="alertmanager_url", metavar="URL",
                        default=os.environ.get("FEEDWATCH_ALERTMANAGER_URL", "http://127.0.0.1:9093"),
                        help="Alertmanager to send through (default: $FEEDWATCH_ALERTMANAGER_URL "
                             "or http://127.0.0.1:9093)")
    parser.add_argument("--timeout", type=parse_duration, default=30.0, metavar="DURATION",
                        help="how long to wait for every channel, e.g. 30s (default: 30s)")
    parser.add_argument("--channel", default="all", choices=("all",) + receivers.CHANNELS,
                        help="test one channel only, or all (default: all)")
    parser.add_argument("--receiver", default=None, metavar="NAME",
                        help="the receiver the test alert routes to (default: alert-test, or "
                             "alert-test-CHANNEL with --channel)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (the HTTP API's answer)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        report = asyncio.run(receivers.alert_test(args.alertmanager_url, args.timeout, args.receiver,
                                                  channel=args.channel))
    except (LookupError, RuntimeError, ValueError) as exc:
        print(f"feedwatch alert-test: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0 if report.ok else 1
    print(f"alert-test run {report.run_id} via {args.alertmanager_url} (receiver {report.receiver})")
    if not report.results:
        print("  no channel is configured: render the config with `feedwatch alertmanager-config` "
              "(see docs/alerting.md)")
        return 1
    for result in report.results:
        print(f"  {result.integration:<10} {result.verdict}")
    return 0 if report.ok else 1
