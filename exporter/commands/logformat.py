"""Log lines for machines and people: logfmt (default) or JSON, one line per record, on stderr.

The flags are Prometheus': ``--log.level`` (debug, info, warn, error) and ``--log.format``
(logfmt, json). Context travels as fields, not only inside the message, so a log pipeline can
select by feed, symbol or connection::

    ts=2024-05-01T14:03:07.120Z level=info logger=exporter.feeds.runner msg="stocks[0]: reconnecting in 0.84s (network_error; attempt 1)" feed=stocks connection=0 reason=network_error delay=0.84 attempt=1
    {"ts":"2024-05-01T14:03:07.120Z","level":"info","logger":"exporter.feeds.runner","msg":"stocks[0]: reconnecting ...","feed":"stocks","connection":"0","reason":"network_error","delay":0.84,"attempt":1}

Fields are whatever a call site passes with ``extra=`` (``log.info(..., extra={"feed": name})``):
``feed``, ``symbol``/``symbols``, ``connection``, ``reason``, ``kind``, ``delay`` (seconds),
``attempt``, ``account``, ``remote``, ``file``, ... A traceback goes into ``err``.

Nothing a venue or a client sends can forge a line or reach a terminal raw: in logfmt a value
with a space, ``=``, ``"``, a backslash or any control character is quoted, with ``\\\\``, ``\\"``,
``\\n``, ``\\r``, ``\\t`` and ``\\u00XX`` for every other control character (C0, DEL and C1:
``\\x1b[31m`` becomes ``\\u001b[31m``, NUL ``\\u0000``); JSON escapes the same characters. Text
that is not valid Unicode (lone surrogates from undecodable bytes) is written as U+FFFD, so
every line is valid UTF-8, as Go's logfmt and JSON encoders do.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from typing import Any

LEVELS = ("debug", "info", "warn", "error")
FORMATS = ("logfmt", "json")

# Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NEEDS_QUOTES = re.compile('[\\s="\\\\\x00-\x1f\x7f-\x9f\u2028\u2029]')
# Raw characters json.dumps(ensure_ascii=False) leaves alone that a terminal may still act on.
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029]")
_SHORT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _level(record: logging.LogRecord) -> str:
    name = record.levelname.lower()
    return {"warning": "warn", "critical": "error"}.get(name, name)


def fields(record: logging.LogRecord, formatter: logging.Formatter) -> list[tuple[str, Any]]:
    """A record as ordered (key, value) pairs: ts, level, logger, msg, the extra fields, err."""
    out: list[tuple[str, Any]] = [("ts", _timestamp(record)), ("level", _level(record)),
                                  ("logger", record.name), ("msg", record.getMessage())]
    out.extend((key, value) for key, value in vars(record).items() if key not in _STANDARD and value is not None)
    if record.exc_info:
        out.append(("err", formatter.formatException(record.exc_info)))
    elif record.exc_text:
        out.append(("err", record.exc_text))
    if record.stack_info:
        out.append(("stack", formatter.formatStack(record.stack_info)))
    return out


def _valid(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT_ESCAPES.get(char) or f"\\u{ord(char):04x}"


def logfmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        value = ",".join(str(v) for v in value)
    text = _valid(str(value))
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + re.sub('[\\\\"\x00-\x1f\x7f-\x9f\u2028\u2029]', _escape, text) + '"'


def _logfmt_key(key: str) -> str:
    key = re.sub('[\\s="\x00-\x1f\x7f-\x9f]', "_", _valid(key))
    return key or "_"


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{_logfmt_key(key)}={logfmt_value(value)}" for key, value in fields(record, self))


def _json_value(value: Any) -> Any:
    if isinstance(value, str):
        return _valid(value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)              # JSON has no NaN or Infinity
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_value(v) for v in value]
    return _valid(str(value))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {_valid(key): _json_value(value) for key, value in fields(record, self)}
        text = json.dumps(out, ensure_ascii=False, separators=(",", ":"))
        return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


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
