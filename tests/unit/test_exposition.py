"""Exposition formats (exporter/exposition.py): negotiation, name[] filtering, OpenMetrics.

OpenMetrics output is checked with prometheus_client's OpenMetrics parser, which is strict
(promtool reads only the text format); a real Prometheus scraping it is
tests/integration/test_openmetrics.py.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.clock import FakeClock
from exporter.collector import (
    EXPORTER_FAMILIES,
    FEED_FAMILIES,
    INSTRUMENT_FAMILIES,
    MARKET_FAMILIES,
    REST_FAMILIES,
    SYMBOL_FAMILIES,
    BookCollector,
)
from exporter.exposition import (
    CONTENT_TYPE_OPENMETRICS,
    CONTENT_TYPE_TEXT,
    Exposition,
    negotiate,
    split_families,
)
from exporter.trading.collector import TradingCollector
from tests.unit.test_collector import GOLDEN, golden_book
from tests.unit.test_trading_collector import NOW, busy_tracker

PROMETHEUS_2_42_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
                          "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
ALL_FAMILIES = {**SYMBOL_FAMILIES, **FEED_FAMILIES, **MARKET_FAMILIES, **INSTRUMENT_FAMILIES, **REST_FAMILIES,
                **EXPORTER_FAMILIES}


@pytest.mark.parametrize("accept, openmetrics", [
    (PROMETHEUS_2_42_ACCEPT, True),
    ("application/openmetrics-text; version=1.0.0", True),
    ("application/openmetrics-text", True),
    ("application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5", True),
    ("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5", False),
    ("application/openmetrics-text;version=1.0.0;q=0", False),
    ("application/openmetrics-text;version=2.0.0", False),     # a version we do not speak
    ("text/plain", False), ("*/*", False), ("", False), (None, False),
])
def test_the_format_follows_accept(accept, openmetrics) -> None:
    exposition = negotiate(accept)
    assert exposition.openmetrics is openmetrics
    assert exposition.content_type == (CONTENT_TYPE_OPENMETRICS if openmetrics else CONTENT_TYPE_TEXT)


def test_the_default_is_the_collectors_text_unchanged() -> None:
    text = GOLDEN.read_text()
    assert Exposition().render(text) is text
    assert Exposition().finish([text]) == GOLDEN.read_bytes()


def test_families_split_whole_and_in_order(clock: FakeClock) -> None:
    text = GOLDEN.read_text()
    chunks = list(split_families(text))
    assert [name for name, *_ in chunks] == list(ALL_FAMILIES)
    assert "".join(text[start:end] for *_, start, _, end in chunks) == text
    empty = "# HELP a A.\n# TYPE a gauge\n# HELP b_total B.\n# TYPE b_total counter\nb_total 1\n"
    assert [(n, k, text_[0:0] + empty[s:e]) for n, k, text_, s, _, e in split_families(empty)] == [
        ("a", "gauge", "# HELP a A.\n# TYPE a gauge\n"),
        ("b_total", "counter", "# HELP b_total B.\n# TYPE b_total counter\nb_total 1\n")]


def trading_text() -> str:
    return TradingCollector(busy_tracker()).render(NOW)   # every trading family populated


def samples(families) -> dict:
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


def test_the_book_renders_openmetrics_headers_itself(clock: FakeClock) -> None:
    book = golden_book(clock)
    om = Exposition(openmetrics=True)
    assert BookCollector(book).render(clock.time(), om) == om.render(GOLDEN.read_text())


def test_openmetrics_is_the_same_data_in_the_strict_format(clock: FakeClock) -> None:
    text = GOLDEN.read_text() + trading_text()
    om = Exposition(openmetrics=True).finish([Exposition(openmetrics=True).render(text)]).decode()
    assert om.endswith("\n# EOF\n") and om.count("# EOF") == 1
    families = {f.name: f for f in parse_openmetrics(om)}   # raises on anything invalid
    assert samples(families.values()) == samples(parse_text(text))
    # Counters are named without _total in their metadata; units are declared by their suffix.
    assert "# TYPE feedwatch_feed_connects counter\n" in om and "# TYPE feedwatch_feed_connects_total" not in om
    assert families["feedwatch_feed_connects"].type == "counter"
    assert families["feedwatch_feed_latency_seconds"].unit == "seconds"
    assert families["feedwatch_feed_bytes"].unit == "bytes"
    assert families["feedwatch_trading_drawdown_ratio"].unit == "ratio"
    assert families["feedwatch_symbol_price"].unit == ""
    # A double quote in HELP is escaped in OpenMetrics (text 0.0.4 leaves it). None of ours has
    # one: promtool's text parser refuses the escaped form (tests/integration/test_promtool.py).
    quoted = Exposition(openmetrics=True).render('# HELP a_total Say "hi".\n# TYPE a_total counter\na_total 1\n')
    assert '# HELP a Say \\"hi\\".\n' in quoted
    assert next(iter(parse_openmetrics(quoted + "# EOF\n"))).documentation == 'Say "hi".'
    assert '"' not in "".join(f.documentation for f in families.values())


@pytest.mark.parametrize("name", sorted(ALL_FAMILIES))
def test_name_filter_gives_exactly_that_family_and_the_collector_skips_the_rest(clock: FakeClock, name: str) -> None:
    book = golden_book(clock)
    full = BookCollector(book).render(clock.time())
    kind = ALL_FAMILIES[name][0]
    asked = {"counter": name[:-6], "histogram": name + "_bucket"}.get(kind, name)   # any of its names
    exposition = negotiate(None, [asked])
    direct = BookCollector(book).render(clock.time(), exposition)
    filtered = exposition.render(full)
    assert direct == filtered
    om = Exposition(openmetrics=True, names=exposition.names)
    assert BookCollector(book).render(clock.time(), om) == om.render(full)   # headers written straight in
    assert [n for n, *_ in split_families(filtered)] == [name]
    assert filtered == next(full[s:e] for n, _, _, s, _, e in split_families(full) if n == name)


def test_a_filter_without_symbol_families_skips_the_symbol_pass(clock: FakeClock) -> None:
    book = golden_book(clock)
    for feed in book.feeds.values():   # symbols the per-symbol pass cannot even list
        feed.symbols = None            # type: ignore[assignment]
    text = BookCollector(book).render(clock.time(), negotiate(None, ["feedwatch_feed_up"]))
    assert [n for n, *_ in split_families(text)] == ["feedwatch_feed_up"]


def test_registry_part_has_no_created_samples_and_filters_by_any_name() -> None:
    registry = CollectorRegistry()
    Counter("feedwatch_things", "Things.", registry=registry).inc()
    Gauge("feedwatch_level", "Level.", registry=registry).set(2)
    Histogram("feedwatch_wait_seconds", "Waits.", buckets=(1.0,), registry=registry).observe(0.5)
    for openmetrics in (False, True):
        text = Exposition(openmetrics=openmetrics).registry_text(registry)
        assert "_created" not in text
        assert "feedwatch_things_total 1.0" in text and "feedwatch_wait_seconds_count 1.0" in text
        only = Exposition(openmetrics=openmetrics, names=frozenset({"feedwatch_things_total", "feedwatch_wait_seconds_sum"}))
        parse = parse_openmetrics if openmetrics else parse_text
        body = only.registry_text(registry) + ("# EOF\n" if openmetrics else "")
        assert [f.name for f in parse(body)] == ["feedwatch_things", "feedwatch_wait_seconds"]
    assert "# UNIT" not in Exposition().registry_text(registry)
