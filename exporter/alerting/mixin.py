"""The monitoring mixin: the shipped rules, their promtool tests and the dashboards, for your setup.

One place holds what differs between setups (``Mixin``): the selector of the exporter's job
(default ``job="feedwatch"``), the base of the runbook links, and the thresholds written into
the rules (``THRESHOLDS``). The committed files (prometheus/rules, prometheus/tests,
grafana/dashboards) are the hand-edited sources *and* the output for the defaults: they are
written with the default selector and runbook base, and ``render`` rewrites them for another
``Mixin``. So a new rule needs nothing special, only the default selector on every selector of
the exporter's series (``tests/unit/test_mixin.py`` checks each one with a real PromQL parser:
nothing escapes the rewrite).

What ``render`` changes, for a selector such as ``job="md",env="prod"``:

- the matcher ``job="feedwatch"`` becomes the selector's matchers, in rules and dashboards;
- wherever a rule names ``job`` in a label list (``by``, ``on``, ``without``, ``ignoring``,
  ``group_left``, ``group_right``), the selector's other labels are named too, so aggregations
  and joins keep them as they keep ``job``;
- in the promtool tests, input series and expected labels of the feedwatch job carry the
  selector's labels (``job="feedwatch"`` becomes ``job="md",env="prod"``; ``job: feedwatch``
  becomes ``job: md`` and ``env: prod``), and expected annotations that print ``$labels.job``
  print the new job;
- ``runbook_url`` links start with the new base (``<base>#<lowercased alert name>``);
- a threshold set away from its default replaces its literal in the named rules (and the
  words that state it in their annotations).

The promtool tests need concrete label values: they are written only for selectors made of
equality matchers and for the default thresholds (they assert the default thresholds' edges).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from exporter.alerting import promql

DEFAULT_SELECTOR = 'job="feedwatch"'
DEFAULT_RUNBOOK_BASE = "https://github.com/feedwatch/feedwatch/blob/main/docs/runbook.md"

# Selectors deliberately left on any job, by recording rule: (series names). The rewrite leaves
# `job=~".+"` alone; tests/unit/test_mixin.py allows it only here.
ANY_JOB_MATCHER = 'job=~".+"'
ANY_JOB = {
    # A bot embedding exporter.Monitor exports its positions under its own job.
    "account_symbol:feedwatch_trading_position:stale_price_held": {"feedwatch_trading_position", "up"},
}
# The same exception in the dashboards, by (dashboard uid, panel title): (series names). The panel
# that shows what TradingStalePricePosition watches must show the positions it sees.
ANY_JOB_PANELS = {
    ("feedwatch-trading-health", "Open positions and their price"): {"feedwatch_trading_position"},
}

_MATCHER = re.compile(r'\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*'
                      r'(?P<value>"(?:\\.|[^"\\])*")\s*')


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str  # unquoted

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value)}"


def parse_selector(text: str) -> tuple[Matcher, ...]:
    """``job="md",env="prod"`` (braces optional) -> matchers; a ValueError names the problem."""
    inner = text.strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1]
    matchers, pos = [], 0
    while pos < len(inner):
        match = _MATCHER.match(inner, pos)
        if not match:
            raise ValueError(f"not a label matcher at {inner[pos:]!r} (expected name=\"value\", "
                             f"name!=\"value\", name=~\"regex\" or name!~\"regex\")")
        value = json.loads(match["value"])
        if match["name"] == "__name__":
            raise ValueError("the selector cannot match on __name__: it is added to every metric")
        matchers.append(Matcher(match["name"], match["op"], value))
        pos = match.end()
        if pos < len(inner):
            if inner[pos] != ",":
                raise ValueError(f"expected ',' between matchers at {inner[pos:]!r}")
            pos += 1
    if not matchers:
        raise ValueError("the selector is empty: give at least one matcher, such as job=\"feedwatch\"")
    names = [m.name for m in matchers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"more than one matcher on {', '.join(duplicates)}")
    job = [m for m in matchers if m.name == "job"]
    if not job:
        # Every target has a job; the rules keep it on every alert and join on it, and absent()
        # (FeedwatchExporterDown) labels its alert with the selector's equality matchers.
        raise ValueError("the selector needs a matcher on job, e.g. job=\"feedwatch\" (more labels may follow)")
    if job[0].op in ("!=", "!~") or job[0].value == "":
        raise ValueError("the job matcher must select the exporter's job (= or =~ with a value)")
    return tuple(matchers)


def format_number(value: float) -> str:
    """A threshold as the rules write it: 120, 0.05, 1e-06 (shortest round-trip form)."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def _percent(value: float) -> str:
    return format_number(round(value * 100, 10))


@dataclass(frozen=True)
class Place:
    """Where a threshold is written: in the expr or annotations of the rules with this name.

    ``text`` holds ``{}`` for the value as PromQL writes it, or ``{percent}`` for the value in
    per cent (how the annotations state a ratio).
    """

    rule: str        # a recording rule's or an alert's name (every variant of that alert)
    text: str
    count: int = 1   # occurrences over all rules of that name (checked: a moved literal fails loudly)


@dataclass(frozen=True)
class Threshold:
    name: str
    default: float
    help: str
    places: tuple[Place, ...]


THRESHOLDS: dict[str, Threshold] = {t.name: t for t in (
    Threshold("feed_silent_seconds", 120, "FeedSilent: a connected feed with no frame for this long",
              (Place("feed:feedwatch_feed_last_message_age_seconds:silent_held", "> {}"),)),
    Threshold("heartbeat_missing_seconds", 60, "FeedHeartbeatMissing: an open connection without a sign of life",
              (Place("feed_connection:feedwatch_feed_last_heartbeat_age_seconds:missing_held", "> {}"),)),
    Threshold("reconnect_flapping_disconnects", 3, "FeedReconnectFlapping: unplanned disconnects in 15 minutes",
              (Place("feed:feedwatch_feed_unplanned_disconnects:flapping_held", "> {}"),)),
    Threshold("latency_p99_seconds", 1, "FeedHighLatency: 99th percentile venue-to-receive latency",
              (Place("feed:feedwatch_feed_latency_seconds:p99_high_held", "> {}"),)),
    Threshold("rejected_updates_ratio", 0.01, "FeedRejectingUpdates: share of price messages rejected",
              (Place("feed_reason:feedwatch_feed_rejected_updates:ratio_high_held", "> {}"),)),
    Threshold("price_move_ratio", 0.05, "FeedPriceMove: price change in 5 minutes",
              (Place("feed_symbol:feedwatch_symbol_price:move_held", ">= {}"),
               Place("FeedPriceMove", "moved {percent} % or more"))),
    Threshold("drawdown_warning_fraction", 0.8, "TradingDrawdown* warnings: share of the account's limit",
              tuple(Place(f"account:feedwatch_trading_drawdown_ratio:{window}_near_limit_held", "{} * ")
                    for window in ("daily", "weekly", "total"))
              + (Place("TradingDrawdownDaily", "past {percent} %"),
                 Place("TradingDrawdownWeekly", "past {percent} %"),
                 Place("TradingDrawdownTotal", "past {percent} %"))),
    Threshold("calendar_ending_days", 90, "FeedwatchMarketCalendarEnding: days left in a market calendar",
              (Place("market:feedwatch_market_calendar_end_timestamp_seconds:ending_held", "< {} * 86400"),)),
)}


@dataclass(frozen=True)
class Mixin:
    """What differs between setups; the defaults produce the committed files."""

    selector: tuple[Matcher, ...] = field(default_factory=lambda: parse_selector(DEFAULT_SELECTOR))
    runbook_base: str = DEFAULT_RUNBOOK_BASE
    thresholds: Mapping[str, float] = field(default_factory=dict)  # name -> value; missing: default

    def __post_init__(self) -> None:
        unknown = sorted(set(self.thresholds) - set(THRESHOLDS))
        if unknown:
            raise ValueError(f"unknown threshold {', '.join(unknown)} (known: {', '.join(THRESHOLDS)})")
        if not re.fullmatch(r"https?://[^\s#'\"{}]+", self.runbook_base):
            raise ValueError(f"runbook base {self.runbook_base!r}: expected an http(s) URL without '#', "
                             "quotes, braces or spaces (the alert's anchor is appended)")

    @property
    def selector_text(self) -> str:
        return ",".join(str(m) for m in self.selector)

    @property
    def changed_thresholds(self) -> dict[str, float]:
        return {name: value for name, value in self.thresholds.items() if value != THRESHOLDS[name].default}

    def tests_refused(self) -> str | None:
        """Why the promtool tests cannot be written for this mixin, or None."""
        if any(m.op != "=" for m in self.selector):
            return ("the promtool tests need label values for their input series: give a selector "
                    "of equality matchers (name=\"value\")")
        if self.changed_thresholds:
            return ("the promtool tests assert the default thresholds' edges, and "
                    f"{', '.join(sorted(self.changed_thresholds))} differ from the default")
        return None

    # --- the rewrites -------------------------------------------------------------------------

    def _extra_labels(self) -> list[str]:
        return [m.name for m in self.selector if m.name != "job"]

    def promql(self, text: str) -> str:
        """The selector and the label lists, in any text holding PromQL (rule files, a query)."""
        text = text.replace(DEFAULT_SELECTOR, self.selector_text)
        extra = self._extra_labels()
        if not extra:
            return text

        def widen(match: re.Match[str]) -> str:
            labels = [label.strip() for label in match["labels"].split(",")]
            if "job" not in labels:
                return match.group()
            at = labels.index("job") + 1
            labels[at:at] = [label for label in extra if label not in labels]
            return f"{match['keyword']}{match['space']}({', '.join(label for label in labels if label)})"

        return _LABEL_LIST.sub(widen, text)

    def runbooks(self, text: str) -> str:
        return text.replace(DEFAULT_RUNBOOK_BASE + "#", self.runbook_base + "#")

    def rules(self, text: str) -> str:
        """One rule file, rewritten."""
        text = self.runbooks(self.promql(text))
        for name, value in self.changed_thresholds.items():
            text = _set_threshold(text, THRESHOLDS[name], value)
        return text

    def tests(self, text: str, rule_texts: list[str]) -> str:
        """One promtool test file, rewritten (``rule_texts``: the rewritten rule files it tests)."""
        refused = self.tests_refused()
        if refused:
            raise ValueError(refused)
        text = self.runbooks(self.promql(text))
        labels = {m.name: m.value for m in self.selector}
        job = labels["job"]

        # Expected labels written as YAML mappings: `job: feedwatch` on its own line.
        def expected(match: re.Match[str]) -> str:
            indent = match["indent"]
            lines = [f"{indent}job: {_yaml_scalar(job)}"]
            lines += [f"{indent}{name}: {_yaml_scalar(value)}" for name, value in labels.items() if name != "job"]
            return "\n".join(lines)

        text = _EXPECTED_JOB.sub(expected, text)
        # ... and in flow mappings: `exp_labels: {severity: critical, job: feedwatch, ...}`.
        flow = ", ".join([f"job: {_yaml_scalar(job)}"]
                         + [f"{name}: {_yaml_scalar(value)}" for name, value in labels.items() if name != "job"])
        text = _EXPECTED_JOB_FLOW.sub(lambda m: m["before"] + flow + m["after"], text)
        if job != "feedwatch":
            text = _retemplate_job(text, rule_texts, job)
        return text

    def dashboard(self, data: Any) -> Any:
        """A dashboard (JSON data): the selector in every query and variable query."""
        if isinstance(data, dict):
            return {key: (self.promql(value) if key in ("expr", "query") and isinstance(value, str)
                          else self.dashboard(value)) for key, value in data.items()}
        if isinstance(data, list):
            return [self.dashboard(item) for item in data]
        return data


_LABEL_LIST = re.compile(r"\b(?P<keyword>by|without|on|ignoring|group_left|group_right)(?P<space>\s*)"
                         r"\((?P<labels>[A-Za-z0-9_,\s]*)\)")
_EXPECTED_JOB = re.compile(r"^(?P<indent>[ \t]+)job: (?:feedwatch|\"feedwatch\"|'feedwatch')[ \t]*$", re.MULTILINE)
_EXPECTED_JOB_FLOW = re.compile(r"(?P<before>[{,][ \t]*)job: (?:feedwatch|\"feedwatch\"|'feedwatch')(?P<after>[ \t]*[,}])")


def _yaml_scalar(value: str) -> str:
    """A label value as a YAML scalar that reads back as that string."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:/-]*", value) and yaml.safe_load(value) == value:
        return value
    return "'" + value.replace("'", "''") + "'"


_RULE_START = re.compile(r"^[ \t]*- (?P<kind>record|alert|name): *(?P<name>\S+) *$", re.MULTILINE)


def _rule_spans(text: str, name: str) -> list[tuple[int, int]]:
    """Where each rule called ``name`` (record or alert) is written in a rule file's text."""
    starts = list(_RULE_START.finditer(text))
    ends = [m.start() for m in starts[1:]] + [len(text)]
    return [(m.start(), end) for m, end in zip(starts, ends) if m["kind"] != "name" and m["name"] == name]


_NUMBER = r"(?P<number>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\w.])"


def _place_pattern(place: Place, value: float) -> tuple[re.Pattern[str], str]:
    """A regex finding the place's text with any number, and ``value`` as the place writes it."""
    percent = "{percent}" in place.text
    before, after = place.text.replace("{percent}", "{}").split("{}")
    guard = "" if before else r"(?<![\w.])"
    pattern = re.compile(guard + re.escape(before) + _NUMBER + re.escape(after))
    return pattern, (_percent(value) if percent else format_number(value))


def place_count(texts: list[str], place: Place, value: float) -> int:
    """How often ``place`` holds ``value`` over the rule files (the table's check)."""
    pattern, rendered = _place_pattern(place, value)
    return sum(1 for text in texts for begin, end in _rule_spans(text, place.rule)
               for m in pattern.finditer(text, begin, end) if m["number"] == rendered)


def _set_threshold(text: str, threshold: Threshold, value: float) -> str:
    for place in threshold.places:
        pattern, old = _place_pattern(place, threshold.default)
        _, new = _place_pattern(place, value)

        def swap(match: re.Match[str]) -> str:
            if match["number"] != old:
                return match.group()
            begin, end = match.span("number")
            return match.string[match.start():begin] + new + match.string[end:match.end()]

        for begin, end in reversed(_rule_spans(text, place.rule)):
            text = text[:begin] + pattern.sub(swap, text[begin:end]) + text[end:]
    return text


def _template_regex(template: str) -> re.Pattern[str] | None:
    """A Go template that prints ``$labels.job`` as a regex over its output (job in group ``job``).

    Only templates whose every action prints something simple ({{ $labels.x }}, {{ $value | f }})
    can be matched this way; one with control actions (if, with, range) gives None.
    """
    parts = re.split(r"(\{\{.*?\}\})", template)
    pattern, jobs = [], 0
    for part in parts:
        if part.startswith("{{"):
            action = part[2:-2].strip().lstrip("-").rstrip("-").strip()
            if re.match(r"^(if|else|end|with|range|define|template|block)\b", action):
                return None
            if action == "$labels.job":
                pattern.append("(?P<job%d>.*?)" % jobs)
                jobs += 1
            else:
                pattern.append(".*?")
        else:
            pattern.append(re.escape(part))
    return re.compile("^" + "".join(pattern) + "$", re.DOTALL) if jobs else None


def _retemplate_job(text: str, rule_texts: list[str], job: str) -> str:
    """Expected annotations that print ``$labels.job`` print ``job`` instead of feedwatch."""
    templates: dict[str, list[re.Pattern[str]]] = {}
    for rule_text in rule_texts:
        for group in yaml.safe_load(rule_text).get("groups", []):
            for rule in group.get("rules", []):
                for key, template in (rule.get("annotations") or {}).items():
                    regex = _template_regex(str(template))
                    if regex:
                        templates.setdefault(key, []).append(regex)
    if not templates:
        return text

    def line(match: re.Match[str]) -> str:
        key, raw = match["key"], match["value"]
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            return match.group()
        if not isinstance(value, str):
            return match.group()
        for regex in templates.get(key, []):
            found = regex.match(value)
            if not found:
                continue
            spans = sorted((found.span(g) for g in found.groupdict() if found.group(g) == "feedwatch"),
                           reverse=True)
            if not spans:
                continue
            for begin, end in spans:
                value = value[:begin] + job + value[end:]
            return f"{match['indent']}{key}: '" + value.replace("'", "''") + "'"
        return match.group()

    keys = "|".join(re.escape(k) for k in templates)
    return re.sub(rf"^(?P<indent>[ \t]+)(?P<key>{keys}): (?P<value>.+)$", line, text, flags=re.MULTILINE)


def inject_default(expr: str) -> str:
    """A dashboard query with the default selector on every feedwatch series (grafana/generate.py);
    a selector written with ``job=~".+"`` (``ANY_JOB_PANELS``) is left on any job."""
    return promql.inject(expr, DEFAULT_SELECTOR, promql.is_feedwatch_series, keep=[ANY_JOB_MATCHER])
