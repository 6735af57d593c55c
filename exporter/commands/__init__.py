"""Subcommands of ``feedwatch`` (one module each) and what they share: log flags and setup.

Log output goes to stderr in ``logfmt`` (default) or ``json``, one line per record::

    ts=2024-05-01T14:03:07.120Z level=info logger=exporter.feeds.runner msg="stocks[0]: reconnecting in 0.84s (network_error; attempt 1)"
    {"ts":"2024-05-01T14:03:07.120Z","level":"info","logger":"exporter.feeds.runner","msg":"stocks[0]: ..."}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from typing import Sequence

LEVELS = ("debug", "info", "warn", "error")
FORMATS = ("logfmt", "json")


def common_flags() -> argparse.ArgumentParser:
    """A parent parser with ``--log.level`` and ``--log.format``; pass as ``parents=[...]``."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("logging")
    group.add_argument("--log.level", dest="log_level", choices=LEVELS, default="info",
                       help="only log messages with this severity or above (default: info)")
    group.add_argument("--log.format", dest="log_format", choices=FORMATS, default="logfmt",
                       help="output format of log messages (default: logfmt)")
    return parent


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _level(record: logging.LogRecord) -> str:
    name = record.levelname.lower()
    return {"warning": "warn", "critical": "error"}.get(name, name)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = [("ts", _timestamp(record)), ("level", _level(record)), ("logger", record.name),
                  ("msg", record.getMessage())]
        if record.exc_info:
            fields.append(("err", self.formatException(record.exc_info)))
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields)


def _logfmt_value(value: str) -> str:
    if value and not any(c in value for c in ' ="\n\t\\'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": _timestamp(record), "level": _level(record), "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["err"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel({"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
                   "error": logging.ERROR}[level])
    # Libraries' chatter stays at warnings unless we debug.
    if level != "debug":
        for name in ("aiohttp.access", "websockets", "asyncio"):
            logging.getLogger(name).setLevel(logging.WARNING)


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
