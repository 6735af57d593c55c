"""The Polygon adapter, driven by recorded frames (tests/fixtures/polygon/), no network."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from exporter.book import Book
from exporter.config import load_data
from exporter.feeds import registry
from exporter.feeds.base import Acknowledged, Authenticated, AuthFailed, Problem, Rejected, Unsubscribed
from exporter.feeds.polygon import PolygonAdapter

FIXTURES = Path(__file__).parent.parent / "fixtures" / "polygon"
NOW = 1_700_000_000.5


def frame(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture
def feed_and_adapter():
    config = load_data({"feeds": [{
        "name": "stocks", "kind": "polygon", "url": "ws://127.0.0.1:1/stocks", "api_key": "secret",
        "symbols": ["AAPL", "MSFT", "BRK.A"],
    }]})
    book = Book(config.feeds, NOW - 10)
    feed = book.feed("stocks")
    return feed, PolygonAdapter(config.feeds[0], feed)


def test_registered_as_polygon_kind():
    assert registry.get("polygon") is PolygonAdapter


def test_auth_and_subscribe_messages(feed_and_adapter):
    _, adapter = feed_and_adapter
    assert [json.loads(m) for m in adapter.open_messages()] == [{"action": "auth", "params": "secret"}]
    [sub] = adapter.subscribe_messages(["AAPL", "BRK.A"])
    assert json.loads(sub) == {"action": "subscribe", "params": "T.AAPL,Q.AAPL,T.BRK.A,Q.BRK.A"}
    [unsub] = adapter.unsubscribe_messages(["AAPL"])
    assert json.loads(unsub) == {"action": "unsubscribe", "params": "T.AAPL,Q.AAPL"}


def test_subscribe_messages_are_batched(feed_and_adapter):
    _, adapter = feed_and_adapter
    symbols = [f"S{i}" for i in range(1200)]
    messages = adapter.subscribe_messages(symbols)
    assert len(messages) == 3  # 500 symbols per message
    params = ",".join(json.loads(m)["params"] for m in messages).split(",")
    assert params == [f"{c}.{s}" for s in symbols for c in ("T", "Q")]


def test_docs_trade_example_decodes(feed_and_adapter):
    feed, adapter = feed_and_adapter
    feed.symbols["MSFT"].guard = False  # the guard has its own tests; this checks decoding
    assert adapter.handle(frame("docs_trade.json"), NOW) == ()
    msft = feed.symbols["MSFT"]
    assert msft.price == 114.125
    assert msft.event_time == pytest.approx(1536036818.784)
    assert msft.last_update == NOW and msft.updates == 1
    assert feed.messages["trade"] == 1


def test_docs_quote_example_decodes_to_mid(feed_and_adapter):
    feed, adapter = feed_and_adapter
    assert adapter.handle(frame("docs_quote.json"), NOW) == ()
    msft = feed.symbols["MSFT"]
    assert msft.price == pytest.approx((114.125 + 114.128) / 2)
    assert msft.event_time == pytest.approx(1536036818.784)
    assert feed.messages["quote"] == 1


def test_status_messages_become_signals(feed_and_adapter):
    feed, adapter = feed_and_adapter
    assert adapter.handle(frame("status_connected.json"), NOW) == []
    assert adapter.handle(frame("status_auth_success.json"), NOW) == [Authenticated()]
    assert adapter.handle(frame("status_auth_failed.json"), NOW) == [AuthFailed("auth_failed", "authentication failed")]
    [signal] = adapter.handle(frame("status_max_connections.json"), NOW)
    assert isinstance(signal, AuthFailed) and signal.reason == "max_connections"
    assert adapter.handle(frame("status_subscribed.json"), NOW) == [Acknowledged(("MSFT", "BRK.A"))]
    assert adapter.handle(frame("status_unsubscribed.json"), NOW) == [Unsubscribed(("MSFT",))]
    assert feed.messages["status"] == 8


def test_mixed_frame_applies_quotes_and_trades_in_order(feed_and_adapter):
    feed, adapter = feed_and_adapter
    adapter.handle(frame("mixed_trades_quotes.json"), NOW)
    aapl, msft = feed.symbols["AAPL"], feed.symbols["MSFT"]
    # The quote set AAPL's reference mid (189.50), so the first trade print is confirmed at once.
    assert aapl.price == 189.5 and aapl.updates == 2
    # MSFT's first print has no reference: held back until the next update confirms it.
    assert math.isnan(msft.price) and msft.ref == 370.25 and msft.updates == 0
    # One latency observation per frame, for its oldest event (t=...100 ms, received at NOW).
    assert sum(feed.latency_counts) == 1
    assert feed.latency_sum == pytest.approx(NOW - 1_700_000_000.100)


def test_nanosecond_timestamps_are_tolerated(feed_and_adapter):
    feed, adapter = feed_and_adapter
    feed.symbols["MSFT"].guard = False
    adapter.handle(frame("trade_nanoseconds.json"), NOW)
    assert feed.symbols["MSFT"].event_time == pytest.approx(1_700_000_000.123456789)


def test_bad_prices_are_counted_and_skipped(feed_and_adapter):
    feed, adapter = feed_and_adapter
    signals = adapter.handle(frame("bad_prices.json"), NOW)
    # Counted by the book, and reported for the runner's rate-limited log (not as errors).
    assert [(type(s), s.reason) for s in signals] == [
        (Rejected, "nonpositive_price"), (Rejected, "nonpositive_price"), (Rejected, "crossed_quote"),
        (Rejected, "unknown_symbol")]
    assert "AAPL: price 0.0 is not above 0; frame: [" in signals[0].message
    assert feed.rejected["nonpositive_price"] == 2
    assert feed.rejected["crossed_quote"] == 1
    assert feed.rejected["unknown_symbol"] == 1
    assert feed.symbols["AAPL"].updates == 0 and math.isnan(feed.symbols["AAPL"].price)
    assert feed.messages["trade"] == 3 and feed.messages["quote"] == 1


def test_garbage_frame_is_a_decode_problem(feed_and_adapter):
    feed, adapter = feed_and_adapter
    [problem] = adapter.handle(b"\x00not json", NOW)
    assert isinstance(problem, Problem) and problem.kind == "decode"
    [problem] = adapter.handle(frame("truncated.txt"), NOW)
    assert problem.kind == "decode"
    assert feed.symbols["AAPL"].updates == 0


def test_unknown_event_type_does_not_cost_the_rest_of_the_frame(feed_and_adapter):
    feed, adapter = feed_and_adapter
    feed.symbols["AAPL"].guard = False
    [problem] = adapter.handle(frame("unknown_event.json"), NOW)
    assert problem.kind == "protocol" and "unknown shape" in problem.message
    assert feed.symbols["AAPL"].price == 189.5
    assert feed.messages["other"] == 1


def test_status_inside_a_data_frame_is_not_lost(feed_and_adapter):
    feed, adapter = feed_and_adapter
    feed.symbols["AAPL"].guard = False
    data = b'[{"ev":"T","sym":"AAPL","p":10.0,"t":1700000000000},{"ev":"status","status":"auth_success","message":"x"}]'
    assert adapter.handle(data, NOW) == [Authenticated()]
    assert feed.symbols["AAPL"].price == 10.0


def test_check_config_rejects_unknown_channel():
    from exporter.config import ConfigError

    with pytest.raises(ConfigError) as err:
        load_data({"feeds": [{"name": "s", "kind": "polygon", "url": "ws://x", "channels": ["T", "AM"]}]})
    assert err.value.errors == ["feeds[0].channels[1]: unknown channel 'AM' (use T for trades, Q for quotes)"]
