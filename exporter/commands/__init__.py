"""Subcommands of ``feedwatch`` (one module each) and what they share: log flags and setup.

Log output goes to stderr in ``logfmt`` (default) or ``json``, one line per record, context as
fields (``exporter/commands/logformat.py``)::

    ts=2024-05-01T14:03:07.120Z level=info logger=exporter.feeds.runner msg="stocks[0]: reconnecting in 0.84s (network_error; attempt 1)" feed=stocks connection=0 reason=network_error delay=0.84 attempt=1
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Sequence

from exporter.commands.logformat import FORMATS, LEVELS, JsonFormatter, LogfmtFormatter, setup_logging

__all__ = ["FORMATS", "LEVELS", "JsonFormatter", "LogfmtFormatter", "common_flags", "report_problems",
           "setup_logging", "stop_event"]


def common_flags() -> argparse.ArgumentParser:
    """A parent parser with ``--log.level`` and ``--log.format``; pass as ``parents=[...]``."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("logging")
    group.add_argument("--log.level", dest="log_level", choices=LEVELS, default="info",
                       help="only log messages with this severity or above (default: info)")
    group.add_argument("--log.format", dest="log_format", choices=FORMATS, default="logfmt",
                       help="output format of log messages: logfmt or json, one line per message with its "
                            "context as fields (default: logfmt)")
    return parent


def report_problems(heading: str, errors: Sequence[str]) -> None:
    """Print a heading and every problem (config paths, environment variables) on stderr."""
    print(heading, file=sys.stderr)
    for error in errors:
        print(f"  {error}", file=sys.stderr)


def stop_event() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (for a clean shutdown of a long-running command)."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, event.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            pass
    return event
