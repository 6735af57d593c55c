"""Log lines (exporter/commands/logformat.py): context as fields, one line per record, nothing a
venue sends reaches the log raw. Every line is read back with a strict logfmt parser
(tests/logfmt.py) or ``json.loads``; the real process is tests/integration/test_logs.py."""

from __future__ import annotations

import io
import json
import logging

import pytest

from exporter.commands.logformat import JsonFormatter, LogfmtFormatter
from tests.logfmt import parse_line

# A venue frame's excerpt with everything that could forge a line or drive a terminal: a line
# break with a fake record after it, ANSI colour codes, NUL, a C1 control (CSI), a lone surrogate
# (undecodable input), a Unicode line separator.
HOSTILE = 'bad\nts=2000-01-01T00:00:00Z level=error msg="forged" \x1b[31mred\x1b[0m\x00 \x9b2J \udcff \u2028end'
CLEAN = HOSTILE.replace("\udcff", "\ufffd")   # what must come back: the same text, made valid Unicode


def emit(formatter: logging.Formatter, *args, exc: bool = False, **extra) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("exporter.feeds.runner.test")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if exc:
        try:
            raise ValueError("line one\nline two")
        except ValueError:
            logger.exception(*args, extra=extra)
    else:
        logger.warning(*args, extra=extra)
    return stream.getvalue()


@pytest.mark.parametrize("formatter, parse", [(LogfmtFormatter(), parse_line), (JsonFormatter(), json.loads)])
def test_context_is_in_fields(formatter, parse) -> None:
    out = emit(formatter, "%s: reconnecting in %.2fs (%s; attempt %d)", "stocks[0]", 0.84, "network_error", 3,
               feed="stocks", connection="0", reason="network_error", delay=0.84, attempt=3, symbols=["AAPL", "MSFT"],
               nothing=None)
    assert out.endswith("\n") and out.count("\n") == 1
    fields = parse(out.rstrip("\n"))
    assert list(fields)[:4] == ["ts", "level", "logger", "msg"]
    assert fields["level"] == "warn" and fields["logger"] == "exporter.feeds.runner.test"
    assert fields["msg"] == "stocks[0]: reconnecting in 0.84s (network_error; attempt 3)"
    assert (fields["feed"], fields["connection"], fields["reason"]) == ("stocks", "0", "network_error")
    assert float(fields["delay"]) == 0.84 and int(fields["attempt"]) == 3
    assert fields["symbols"] in ("AAPL,MSFT", ["AAPL", "MSFT"])
    assert "nothing" not in fields
    assert fields["ts"].endswith("Z") and "T" in fields["ts"]


@pytest.mark.parametrize("formatter, parse", [(LogfmtFormatter(), parse_line), (JsonFormatter(), json.loads)])
def test_a_hostile_frame_is_one_escaped_line(formatter, parse) -> None:
    out = emit(formatter, "feed %s: decode error: undecodable frame: %s", "stocks", HOSTILE,
               feed="stocks", kind="decode", frame=HOSTILE)
    line = out.rstrip("\n")
    assert out.count("\n") == 1 and "\r" not in line
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c in "\u2028\u2029" for c in line)
    line.encode("utf-8")                                   # valid UTF-8: no lone surrogate left
    fields = parse(line)
    assert fields["msg"] == f"feed stocks: decode error: undecodable frame: {CLEAN}"
    assert fields["frame"] == CLEAN and fields["kind"] == "decode"
    assert fields["level"] == "warn"                        # the forged "level=error" stayed inside msg
    assert "\\u001b[31m" in line and ("\\u0000" in line)


@pytest.mark.parametrize("formatter, parse", [(LogfmtFormatter(), parse_line), (JsonFormatter(), json.loads)])
def test_a_traceback_is_folded_into_err(formatter, parse) -> None:
    out = emit(formatter, "sweep failed", exc=True, feed="stocks")
    assert out.count("\n") == 1
    fields = parse(out.rstrip("\n"))
    assert fields["level"] == "error" and fields["feed"] == "stocks"
    assert fields["err"].startswith("Traceback (most recent call last):\n")
    assert fields["err"].endswith("ValueError: line one\nline two")


def test_logfmt_quotes_only_what_needs_it() -> None:
    fields = emit(LogfmtFormatter(), "plain", feed="stocks", empty="", spaced="a b", equals="a=b", quote='say "x"',
                  backslash="C:\\x", flag=True, ratio=0.5)
    line = fields.rstrip("\n")
    assert " feed=stocks " in line and ' empty="" ' in line and ' spaced="a b" ' in line
    assert ' equals="a=b" ' in line and ' quote="say \\"x\\"" ' in line and ' backslash="C:\\\\x" ' in line
    assert line.endswith(" flag=true ratio=0.5")
    parsed = parse_line(line)
    assert (parsed["empty"], parsed["quote"], parsed["backslash"]) == ("", 'say "x"', "C:\\x")


def test_json_numbers_stay_numbers_and_non_finite_become_text() -> None:
    fields = json.loads(emit(JsonFormatter(), "x", delay=0.25, attempt=2, lag=float("inf")))
    assert fields["delay"] == 0.25 and fields["attempt"] == 2 and fields["lag"] == "inf"
