"""What a scrape asked for: the text format or OpenMetrics, every family or only ``name[]``'s.

The collectors render the Prometheus text format 0.0.4 (``collector.py``); prometheus_client's
registry holds the exporter's own metrics. A scrape chooses, as with Prometheus' client libraries:

- **the format**, by ``Accept``: ``application/openmetrics-text`` (version 1.0.0 or 0.0.1, or none
  given) with a quality at least that of ``text/plain`` gets OpenMetrics 1.0.0 (Prometheus asks for
  it first by default); anything else gets text 0.0.4, byte for byte what the collectors render.
- **the families**, by ``name[]`` query parameters (repeatable): only those families are sent.
  A family answers to its name in either format (``feedwatch_feed_connects_total`` or
  ``feedwatch_feed_connects``) and to its samples' names (``..._bucket``, ``_sum``, ``_count``),
  and always comes whole: a histogram cut to its buckets would be invalid OpenMetrics.

``Exposition.render`` works on whole families of rendered text: it finds each family's header
(one scan for ``\\n#``; sample lines never start with ``#`` and label values escape their
newlines) and copies the samples untouched. For OpenMetrics only the headers change: a counter's
family is named without ``_total``, ``"`` is escaped in HELP, a ``# UNIT`` line declares the
base unit its name ends in (``_seconds``, ``_bytes``, ``_ratio``: the naming contract is the
declaration), ``untyped`` becomes ``unknown``; ``finish`` appends ``# EOF``. The book collector,
whose text is megabytes, takes the ``Exposition`` itself: it writes its headers in the format
asked for (``Exposition.header``: no conversion pass over its samples) and skips its per-symbol
pass when no family of it is asked for. prometheus_client's part goes through ``registry_text``, which also drops the
``_created`` samples the library adds to counters (they are not part of our contract, and the
library's switch for that is global to the process, which may be a bot's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from prometheus_client import exposition as text_format
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics_format

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
OPENMETRICS_VERSIONS = (None, "1.0.0", "0.0.1")
# Base units a family's name may end in; its OpenMetrics UNIT line says so.
UNITS = ("seconds", "bytes", "ratio")
_SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "info": ("_info",),
}


def family_name(name: str, kind: str) -> str:
    """A family's OpenMetrics name: a counter's text-format name loses its ``_total``."""
    return name[:-6] if kind == "counter" and name.endswith("_total") else name


def unit_of(family: str) -> str | None:
    for unit in UNITS:
        if family.endswith("_" + unit):
            return unit
    return None


@dataclass(frozen=True)
class Exposition:
    openmetrics: bool = False
    names: frozenset[str] | None = None   # name[] asked for; None: every family

    @property
    def content_type(self) -> str:
        return CONTENT_TYPE_OPENMETRICS if self.openmetrics else CONTENT_TYPE_TEXT

    @property
    def is_default(self) -> bool:
        return not self.openmetrics and self.names is None

    def header(self, name: str, kind: str, help_text: str) -> str:
        """A family's header in this format, for collectors that render straight into it
        (the book's, so its megabytes of samples need no conversion pass)."""
        if self.openmetrics:
            return openmetrics_header(name, kind, _escape_help(help_text))
        return text_header(name, kind, help_text)

    def wants(self, name: str, kind: str) -> bool:
        """Whether the family ``name`` (either format's name) of type ``kind`` is asked for."""
        names = self.names
        if names is None:
            return True
        base = family_name(name, kind)
        if base in names or name in names:
            return True
        return any(base + suffix in names for suffix in _SAMPLE_SUFFIXES.get(kind, ()))

    def render(self, text: str) -> str:
        """Text-format families (a collector's output) in this format, filtered by ``names``."""
        if self.is_default:
            return text
        out: list[str] = []
        for name, kind, help_text, start, body, end in split_families(text):
            if self.names is not None and (name is None or not self.wants(name, kind)):
                continue
            if self.openmetrics and name is not None:
                out.append(openmetrics_header(name, kind, help_text))
                out.append(text[body:end])
            else:
                out.append(text[start:end])
        return "".join(out)

    def registry_text(self, registry: Any) -> str:
        """A prometheus_client registry in this format (without OpenMetrics' ``# EOF``)."""
        selected = _Selected(registry, self)
        if not self.openmetrics:
            return text_format.generate_latest(selected).decode()
        text = openmetrics_format.generate_latest(selected).decode()
        return text[:-len("# EOF\n")] if text.endswith("# EOF\n") else text

    def finish(self, parts: Iterable[str]) -> bytes:
        """The whole body of a scrape: the parts, and ``# EOF`` for OpenMetrics."""
        body = "".join(parts)
        return (body + "# EOF\n").encode() if self.openmetrics else body.encode()


DEFAULT = Exposition()


def _escape_help(help_text: str) -> str:
    """HELP text escaped as the text format 0.0.4 wants it (backslash and line feed)."""
    return help_text.replace("\\", "\\\\").replace("\n", "\\n")


def text_header(name: str, kind: str, help_text: str) -> str:
    """``# HELP`` and ``# TYPE`` of a family in the text format 0.0.4."""
    return f"# HELP {name} {_escape_help(help_text)}\n# TYPE {name} {kind}\n"


def negotiate(accept: str | None, names: Sequence[str] = ()) -> Exposition:
    """The exposition a scrape asked for with its ``Accept`` header and ``name[]`` parameters."""
    return Exposition(openmetrics=prefers_openmetrics(accept or ""), names=frozenset(names) if names else None)


def prefers_openmetrics(accept: str) -> bool:
    best_openmetrics = best_text = -1.0
    for part in accept.split(","):
        media, *params = part.split(";")
        q, version = 1.0, None
        for param in params:
            key, _, value = param.partition("=")
            key, value = key.strip().lower(), value.strip().strip('"')
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            elif key == "version":
                version = value
        media = media.strip().lower()
        if media == "application/openmetrics-text" and version in OPENMETRICS_VERSIONS:
            best_openmetrics = max(best_openmetrics, q)
        elif media == "text/plain":
            best_text = max(best_text, q)
    return best_openmetrics > 0 and best_openmetrics >= best_text


def split_families(text: str) -> Iterator[tuple[str | None, str, str, int, int, int]]:
    """Each family of text-format ``text``: (name, type, HELP text, start, start of samples, end).

    A family is its HELP and TYPE lines and the sample lines after them (none, for a family
    without samples). ``name`` is None for samples before any header (nothing we render does that).
    """
    n = len(text)
    i = 0
    while i < n:
        start = i
        name: str | None = None
        kind, help_text = "untyped", ""
        while i < n and text[i] == "#":
            eol = text.find("\n", i)
            eol = n if eol < 0 else eol
            parts = text[i:eol].split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                if name is not None and parts[2] != name:
                    break                       # the next family's header: this one had no samples
                name = parts[2]
                if parts[1] == "HELP":
                    help_text = parts[3] if len(parts) > 3 else ""
                else:
                    kind = parts[3].strip() if len(parts) > 3 else "untyped"
            i = eol + 1
        body = i
        if i < n and text[i] == "#":
            end = i
        else:
            nxt = text.find("\n#", i)
            end = n if nxt < 0 else nxt + 1
        yield name, kind, help_text, start, body, end
        i = end


def openmetrics_header(name: str, kind: str, help_text: str) -> str:
    """A family's HELP, TYPE and UNIT lines in OpenMetrics, from its text-format header."""
    family = family_name(name, kind)
    # Text 0.0.4 escapes backslash and newline in HELP; OpenMetrics escapes the double quote too.
    lines = f"# HELP {family} {help_text.replace(chr(34), chr(92) + chr(34))}\n" \
            f"# TYPE {family} {'unknown' if kind == 'untyped' else kind}\n"
    unit = unit_of(family)
    return lines + (f"# UNIT {family} {unit}\n" if unit else "")


_CREATED_TYPES = ("counter", "histogram", "summary")


class _Selected:
    """A registry's metrics, filtered by ``name[]``, without the ``_created`` samples."""

    def __init__(self, registry: Any, exposition: Exposition) -> None:
        self.registry = registry
        self.exposition = exposition

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            if not self.exposition.wants(metric.name, metric.type):
                continue
            if metric.type in _CREATED_TYPES:
                created = metric.name + "_created"
                samples = [s for s in metric.samples if s.name != created]
                if len(samples) != len(metric.samples):
                    copy = Metric(metric.name, metric.documentation, metric.type, metric.unit)
                    copy.samples = samples
                    metric = copy
            yield metric
