"""``feedwatch alert-test``: send a test alert through Alertmanager to every configured channel.

    feedwatch alert-test --alertmanager.url http://127.0.0.1:9093

posts one test alert (``FeedwatchAlertTest``, unique ``run`` label) that the committed routing
sends to the ``alert-test`` receiver, which ``feedwatch alertmanager-config`` gives every
configured channel; then reads Alertmanager's own notification counters and reports per channel::

    alert-test run 3f2a9c1b7d4e via http://127.0.0.1:9093 (receiver alert-test)
      slack      delivered
      telegram   FAILED (1 attempt failed; Alertmanager retries: see its log for the error)
      webhook    delivered

Exit status: 0 every channel delivered, 1 a channel failed or none is configured, 2 Alertmanager
unreachable or the receiver missing.
"""

from __future__ import annotations

import argparse
import asyncio
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
    parser.add_argument("--receiver", default="alert-test", metavar="NAME",
                        help="the receiver the test alert routes to (default: alert-test)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        report = asyncio.run(receivers.alert_test(args.alertmanager_url, args.timeout, args.receiver))
    except (LookupError, RuntimeError) as exc:
        print(f"feedwatch alert-test: {exc}", file=sys.stderr)
        return 2
    print(f"alert-test run {report.run_id} via {args.alertmanager_url} (receiver {report.receiver})")
    if not report.results:
        print("  no channel is configured: render the config with `feedwatch alertmanager-config` "
              "(see docs/alerting.md)")
        return 1
    for result in report.results:
        print(f"  {result.integration:<10} {result.verdict}")
    return 0 if report.ok else 1
