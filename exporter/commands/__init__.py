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
from pathlib import Path
from typing import Sequence

from exporter.commands.logformat import FORMATS, LEVELS, JsonFormatter, LogfmtFormatter, setup_logging

__all__ = ["FORMATS", "LEVELS", "NOT_WRITTEN", "JsonFormatter", "LogfmtFormatter", "common_flags",
           "report_problems", "setup_logging", "stop_event", "write_files"]

# Exit status of a command that wrote nothing or not everything (files in the way, a write error).
NOT_WRITTEN = 1


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


def write_files(prog: str, where: Path, files: Sequence[tuple[Path, bytes | str]], force: bool
                ) -> tuple[int, list[Path]]:
    """Write ``files`` (destination, content; text as UTF-8) below ``where``, the way ``feedwatch
    init`` and ``feedwatch mixin`` do: if any destination exists and ``force`` is not given, list
    them and write nothing; a write that fails names the file and stops. Both are said on stderr
    and return ``NOT_WRITTEN``. Returns (exit status, the destinations that existed)."""
    existing = [dest for dest, _ in files if dest.exists() or dest.is_symlink()]
    if existing and not force:
        print(f"{prog}: {len(existing)} file(s) already exist in {where}; nothing written "
              "(--force overwrites them):", file=sys.stderr)
        for dest in existing:
            print(f"  {dest}", file=sys.stderr)
        return NOT_WRITTEN, existing
    try:
        for dest, content in files:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    except OSError as exc:
        print(f"{prog}: cannot write {exc.filename or where}: {exc.strerror or exc}", file=sys.stderr)
        return NOT_WRITTEN, existing
    return 0, existing


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
