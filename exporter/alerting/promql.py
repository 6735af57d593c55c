"""Just enough PromQL lexing to find the series selectors of an expression and edit their matchers.

The mixin (``exporter/alerting/mixin.py``) and the dashboard generator (``grafana/generate.py``)
must put the job selector on every selector of feedwatch's series, and nothing else: not on a
label name inside ``by (...)``, a function name, a word inside a string or a Grafana variable.
A full parser would be heavier than the job; this lexer knows strings, comments, numbers and
durations, Grafana's ``$variables``, grouping lists and matcher blocks, which is all an
identifier's role depends on. ``tests/unit/test_mixin.py`` checks every edited expression with
an independent parser (promql-parser), so a case this lexer gets wrong fails a test.

    >>> inject('sum by (job) (rate(feedwatch_x_total[5m])) and on (job) up == 1', 'job="a"', is_exporter_series)
    'sum by (job) (rate(feedwatch_x_total{job="a"}[5m])) and on (job) up{job="a"} == 1'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Collection, Iterator

_TOKEN = re.compile(r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<comment>\#[^\n]*)
  | (?P<variable>\$\{[^}]*\}|\$[A-Za-z0-9_]+)
  | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)[A-Za-z0-9]*)
  | (?P<identifier>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)

# Keywords followed by a parenthesised list of label names, not of expressions.
_LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Aggregation operators: `sum by (job) (x)` puts a label list between the operator and its "(".
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
                 "topk", "quantile", "limitk", "limit_ratio"}
# Words that are operators or modifiers, never a metric name.
_KEYWORDS = ({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"}
             | _LABEL_LIST_KEYWORDS | _AGGREGATIONS)

_EXPORTER_SERIES = re.compile(r"^feedwatch_[A-Za-z0-9_]+$")
_RECORDED_SERIES = re.compile(r"^[A-Za-z0-9_]+:feedwatch_[A-Za-z0-9_]+:[A-Za-z0-9_:]+$")


def is_exporter_series(name: str) -> bool:
    """What the rules must select by job: the exporter's own series, and ``up`` of its targets."""
    return name == "up" or bool(_EXPORTER_SERIES.match(name))


def is_feedwatch_series(name: str) -> bool:
    """What the dashboards select by job: the exporter's series, ``up`` and the recorded series."""
    return is_exporter_series(name) or bool(_RECORDED_SERIES.match(name))


@dataclass(frozen=True)
class Selector:
    """One series selector in an expression: its metric name and its matcher block (if any)."""

    name: str
    start: int               # offset of the metric name
    end: int                 # offset just past the name, or past the closing brace of its matchers
    matchers: str | None     # the text between the braces, or None when there are none


def _skip_space(expr: str, pos: int) -> int:
    while pos < len(expr) and expr[pos].isspace():
        pos += 1
    return pos


def _closing(expr: str, pos: int, opening: str, closing: str) -> int:
    """Offset just past the bracket matching the one at ``pos``, skipping strings."""
    depth = 0
    for match in _TOKEN.finditer(expr, pos):
        text = match.group()
        if text == opening:
            depth += 1
        elif text == closing:
            depth -= 1
            if depth == 0:
                return match.end()
    raise ValueError(f"unbalanced {opening!r} at offset {pos} in {expr!r}")


def selectors(expr: str) -> Iterator[Selector]:
    """Every selector with a metric name, in order (``{__name__=...}`` forms are not listed)."""
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        assert match is not None  # the "other" alternative matches any character
        pos = match.end()
        kind, text = match.lastgroup, match.group()
        if kind == "other" and text == "{":  # a selector without a metric name: skip its matchers
            pos = _closing(expr, match.start(), "{", "}")
            continue
        if kind != "identifier":
            continue
        after = _skip_space(expr, pos)
        following = expr[after:after + 1]
        if text.lower() in _LABEL_LIST_KEYWORDS:
            if following == "(":
                pos = _closing(expr, after, "(", ")")
            continue
        if text.lower() in _KEYWORDS or following == "(":  # an operator, a function or an aggregation
            continue
        if following == "{":
            end = _closing(expr, after, "{", "}")
            yield Selector(text, match.start(), end, expr[after + 1:end - 1])
            pos = end
        else:
            yield Selector(text, match.start(), pos, None)


def inject(expr: str, matcher: str, wanted: Callable[[str], bool], keep: Collection[str] = ()) -> str:
    """``expr`` with ``matcher`` first in the matchers of every selector of a ``wanted`` series.

    A selector that already holds ``matcher`` (or one of ``keep``) exactly is left as it is, so
    injecting twice is harmless; one with another matcher on the same label is an error (which
    should win?).
    """
    label = matcher.split("=", 1)[0].rstrip("!~")
    out, last = [], 0
    for selector in selectors(expr):
        if not wanted(selector.name):
            continue
        inner = selector.matchers
        if inner is not None and {matcher, *keep} & {m.strip() for m in split_matchers(inner)}:
            continue
        if inner is not None and any(_label(m) == label for m in split_matchers(inner)):
            raise ValueError(f"{selector.name}{{{inner}}} already has a matcher on {label!r}: "
                             f"cannot add {matcher} in {expr!r}")
        name_end = selector.start + len(selector.name)
        out.append(expr[last:name_end])
        if inner is None or not inner.strip():
            out.append("{" + matcher + "}")
        else:
            out.append("{" + matcher + "," + inner + "}")
        last = selector.end
    out.append(expr[last:])
    return "".join(out)


def split_matchers(inner: str) -> list[str]:
    """The matchers of a block (``a="x",b=~"y,z"``), split on the commas outside strings."""
    parts, current = [], []
    for match in _TOKEN.finditer(inner):
        if match.group() == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(match.group())
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def _label(matcher: str) -> str:
    return re.split(r"\s*(?:=~|!~|!=|=)", matcher.strip(), maxsplit=1)[0]
