"""The generic (YAML-configured) adapter, driven by recorded frames (tests/fixtures/generic/)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from exporter.book import Book
from exporter.config import ConfigError, load_data
from exporter.feeds import registry
from exporter.feeds.base import Acknowledged, Heartbeat, Problem
from exporter.feeds.generic import MISSING_FIELD_GRACE, GenericAdapter

FIXTURES = Path(__file__).parent.parent / "fixtures" / "generic"
NOW = 1_700_000_000.5


def frame(name: str) -> str:
    return (FIXTURES / name).read_text()


def make(symbols=("BTC-USD", "ETH-USD"), url="wss://ws-feed.example.com", **options):
    config = load_data({"feeds": [{"name": "mine", "kind": "generic", "url": url,
                                   "symbols": list(symbols), **options}]})
    feed = Book(config.feeds, NOW - 10).feed("mine")
    for state in feed.symbols.values():
        state.guard = False  # the first-print guard has its own tests; these check decoding
    return feed, GenericAdapter(config.feeds[0], feed)


COINBASE = {
    "subscribe": '{"type":"subscribe","channels":["ticker"],"product_ids":{symbols}}',
    "match": {"type": "ticker"},
    "fields": {"symbol": "product_id", "bid": "best_bid", "ask": "best_ask", "timestamp": "time"},
    "timestamp_unit": "iso",
}
KRAKEN = {
    "records": "data",
    "match": {"channel": "ticker"},
    "fields": {"symbol": "symbol", "bid": "bid", "ask": "ask"},
}


def test_registered_as_generic_kind():
    assert registry.get("generic") is GenericAdapter


def test_coinbase_style_ticker_frames():
    feed, adapter = make(**COINBASE)
    assert adapter.handle(frame("coinbase_subscriptions.json"), NOW) == ()
    assert adapter.handle(frame("coinbase_heartbeat.json"), NOW) == ()
    assert adapter.handle(frame("coinbase_ticker.json"), NOW) == ()
    state = feed.symbols["ETH-USD"]
    assert state.price == pytest.approx((1285.04 + 1285.27) / 2)
    expected = datetime(2022, 10, 19, 23, 28, 22, 61769, tzinfo=timezone.utc).timestamp()
    assert state.event_time == pytest.approx(expected)
    assert feed.messages["quote"] == 1 and feed.messages["other"] == 2
    assert sum(feed.errors.values()) == 0


def test_kraken_style_records_under_a_key_with_a_frame_level_match():
    feed, adapter = make(symbols=("ALGO/USD",), **KRAKEN)
    adapter.handle(frame("kraken_heartbeat.json"), NOW)
    adapter.handle(frame("kraken_ticker.json"), NOW)
    state = feed.symbols["ALGO/USD"]
    assert state.price == pytest.approx((0.10025 + 0.10036) / 2)
    assert state.last_event == 0 and sum(feed.latency_counts) == 0  # no timestamp configured


def test_array_of_mixed_records_selected_per_record():
    feed, adapter = make(symbols=("AAPL", "MSFT"), match={"ev": "T"},
                         fields={"symbol": "sym", "price": "p", "timestamp": "t"})
    assert adapter.handle(frame("array_trades.json"), NOW) == ()
    assert feed.symbols["AAPL"].price == 189.5 and feed.symbols["MSFT"].price == 370.25
    assert feed.symbols["MSFT"].event_time == pytest.approx(1700000000.2)
    assert feed.messages["trade"] == 2


@pytest.mark.parametrize("unit,value", [("s", 1700000000.25), ("ms", 1700000000250),
                                        ("us", 1700000000250000), ("ns", "1700000000250000000")])
def test_timestamp_units(unit, value):
    feed, adapter = make(fields={"symbol": "s", "price": "p", "timestamp": "ts"}, timestamp_unit=unit)
    adapter.handle(json.dumps({"s": "BTC-USD", "p": "100.5", "ts": value}), NOW)
    assert feed.symbols["BTC-USD"].event_time == pytest.approx(1700000000.25)
    assert feed.latency_sum == pytest.approx(NOW - 1700000000.25)


def test_nested_paths_and_list_indexes():
    feed, adapter = make(records="result.items", fields={"symbol": "meta.name", "price": "px.0"})
    adapter.handle('{"result":{"items":[{"meta":{"name":"BTC-USD"},"px":[101.5,2]}]}}', NOW)
    assert feed.symbols["BTC-USD"].price == 101.5


def test_subscribe_templates_per_symbol_and_batched():
    _, adapter = make(subscribe='{"op":"sub","arg":"trades.{symbol}"}', fields={"symbol": "s", "price": "p"})
    assert adapter.subscribe_messages(["A", "B"]) == ['{"op":"sub","arg":"trades.A"}', '{"op":"sub","arg":"trades.B"}']
    assert not adapter.subscribed_in_url()
    _, adapter = make(subscribe='{"op":"sub","args":{symbols}}', batch_size=2, fields={"symbol": "s", "price": "p"})
    assert [json.loads(m)["args"] for m in adapter.subscribe_messages(["A", "B", "C"])] == [["A", "B"], ["C"]]
    _, adapter = make(subscribe="SUB {symbols_csv}", unsubscribe="UNSUB {symbols_csv}", fields={"symbol": "s", "price": "p"})
    assert adapter.subscribe_messages(["A", "B"]) == ["SUB A,B"]
    assert adapter.unsubscribe_messages(["A"]) == ["UNSUB A"]


def test_url_subscription_and_ping_message():
    _, adapter = make(url="ws://127.0.0.1:1/stream?s={symbols_csv}", ping_message='{"op":"ping"}',
                      fields={"symbol": "s", "price": "p"})
    assert adapter.subscribed_in_url()
    assert adapter.url(["A", "B"]) == "ws://127.0.0.1:1/stream?s=A,B"
    assert adapter.ping_message() == '{"op":"ping"}'
    _, adapter = make(fields={"symbol": "s", "price": "p"})
    assert adapter.subscribed_in_url() and adapter.ping_message() is None


def test_pong_frames_are_heartbeats():
    feed, adapter = make(ping_message='{"type":"ping"}', pong={"type": "pong"}, **COINBASE)
    assert adapter.handle('{"type":"pong"}', NOW) == (Heartbeat(),)
    assert adapter.handle(frame("coinbase_heartbeat.json"), NOW) == ()
    assert feed.symbols["ETH-USD"].updates == 0


def test_symbols_are_acknowledged_by_their_first_record():
    _, adapter = make(**COINBASE)
    adapter.subscribe_messages(["BTC-USD", "ETH-USD"])
    assert adapter.handle(frame("coinbase_ticker.json"), NOW) == [Acknowledged(("ETH-USD",))]
    assert adapter.handle(frame("coinbase_ticker.json"), NOW) == ()


def test_a_field_that_never_appears_is_a_missing_field_error():
    feed, adapter = make(fields={"symbol": "product_id", "price": "last_price"}, match={"type": "ticker"})
    ticker = frame("coinbase_ticker.json")
    for _ in range(MISSING_FIELD_GRACE):  # the first frames may be control messages: quiet
        assert adapter.handle(ticker, NOW) == ()
    [problem] = adapter.handle(ticker, NOW)
    assert isinstance(problem, Problem) and problem.kind == "missing_field"
    assert "fields.price path 'last_price' has not appeared" in problem.message
    assert '"product_id":"ETH-USD"' in problem.message  # a sample of what did arrive
    assert feed.symbols["ETH-USD"].updates == 0


def test_a_records_path_that_never_appears_is_a_missing_field_error():
    _, adapter = make(records="payload", fields={"symbol": "s", "price": "p"})
    signals = [adapter.handle('{"data":[{"s":"BTC-USD","p":1}]}', NOW) for _ in range(MISSING_FIELD_GRACE + 2)]
    assert signals[:MISSING_FIELD_GRACE] == [()] * MISSING_FIELD_GRACE
    assert [s[0].kind for s in signals[MISSING_FIELD_GRACE:]] == ["missing_field"] * 2
    assert "records path 'payload'" in signals[-1][0].message


def test_once_seen_a_missing_field_means_a_control_frame():
    feed, adapter = make(fields={"symbol": "product_id", "price": "price"})
    adapter.handle(frame("coinbase_ticker.json"), NOW)
    for _ in range(MISSING_FIELD_GRACE + 3):
        assert adapter.handle(frame("coinbase_subscriptions.json"), NOW) == ()
    assert feed.symbols["ETH-USD"].updates == 1


def test_bad_values_and_frames():
    feed, adapter = make(fields={"symbol": "s", "price": "p", "timestamp": "t"}, timestamp_unit="iso")
    [problem] = adapter.handle('{"s":"BTC-USD","p":"abc","t":"2024-01-01T00:00:00Z"}', NOW)
    assert isinstance(problem, Problem) and problem.kind == "decode" and "abc" in problem.message
    [problem] = adapter.handle('{"s":"BTC-USD","p":"1","t":12}', NOW)
    assert problem.kind == "decode" and "ISO-8601" in problem.message
    [problem] = adapter.handle("{nope", NOW)
    assert problem.kind == "decode"
    adapter.handle('{"s":"BTC-USD","p":"-1","t":"2024-01-01T00:00:00Z"}', NOW)
    assert feed.rejected["nonpositive_price"] == 1


def test_capacity_option():
    _, adapter = make(fields={"symbol": "s", "price": "p"})
    assert adapter.capacity() is None
    _, adapter = make(fields={"symbol": "s", "price": "p"}, max_symbols_per_connection=50)
    assert adapter.capacity() == 50


def test_check_config_names_the_key():
    with pytest.raises(ConfigError) as err:
        load_data({"feeds": [{"name": "g", "kind": "generic", "url": "ws://x", "subscribe": '{"sub":"x"}',
                              "batch_size": 0, "fields": {"price": "p", "bid": "b", "timestamp": "a..b"}}]})
    assert err.value.errors == [
        "feeds[0].fields.symbol: required (the dotted path to the symbol in each record)",
        "feeds[0].fields: give price (trades) or bid and ask (quotes), not both",
        "feeds[0].fields.timestamp: 'a..b' has an empty segment (use a.b.0, not a..b)",
        "feeds[0].subscribe: the template needs {symbol} (one message per symbol) or {symbols} / {symbols_csv} (one per batch)",
        "feeds[0].batch_size: must be at least 1, got 0",
    ]
    with pytest.raises(ConfigError) as err:
        load_data({"feeds": [{"name": "g", "kind": "generic", "url": "ws://x", "fields": {"symbol": "s", "bid": "b"},
                              "timestamp_unit": "minutes"}]})
    assert "feeds[0].fields.ask: required with fields.bid" in err.value.errors
    assert any(e.startswith("feeds[0].timestamp_unit: expected one of") for e in err.value.errors)
