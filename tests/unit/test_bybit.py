"""The Bybit v5 adapter, driven by the documentation's examples (tests/fixtures/bybit/), no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporter.book import Book
from exporter.config import ConfigError, load_data
from exporter.feeds import registry
from exporter.feeds.base import Acknowledged, Heartbeat, Problem, Unsubscribed
from exporter.feeds.bybit import MAX_ARGS_CHARS, BybitAdapter

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bybit"
NOW = 1_700_000_000.5


def frame(name: str) -> str:
    return (FIXTURES / name).read_text()


def make(channels=("publicTrade", "tickers"), symbols=("BTCUSDT", "ETHUSDT"), category="spot",
         url="wss://stream.bybit.com/v5/public/spot"):
    config = load_data({"feeds": [{
        "name": "bybit", "kind": "bybit", "url": url, "symbols": list(symbols),
        "channels": list(channels), "category": category,
    }]})
    feed = Book(config.feeds, NOW - 10).feed("bybit")
    for state in feed.symbols.values():
        state.guard = False  # the first-print guard has its own tests; these check decoding
    return feed, BybitAdapter(config.feeds[0], feed)


def test_registered_as_bybit_kind():
    assert registry.get("bybit") is BybitAdapter


def test_ping_is_the_documented_app_level_ping():
    _, adapter = make()
    ping = json.loads(adapter.ping_message())
    assert ping["op"] == json.loads(frame("docs_ping.json"))["op"] == "ping"


@pytest.mark.parametrize("name", ["docs_pong_spot.json", "docs_pong_linear.json"])
def test_both_pong_shapes_are_heartbeats(name):
    feed, adapter = make()
    assert adapter.handle(frame(name), NOW) == (Heartbeat(),)
    assert feed.errors["protocol"] == 0


def test_spot_subscribe_is_batched_ten_args_per_request():
    _, adapter = make(channels=("publicTrade",), symbols=[f"S{i}USDT" for i in range(25)])
    requests = [json.loads(m) for m in adapter.subscribe_messages([f"S{i}USDT" for i in range(25)])]
    assert [len(r["args"]) for r in requests] == [10, 10, 5]
    documented = json.loads(frame("docs_subscribe_request.json"))
    assert all(r.keys() == documented.keys() and r["op"] == "subscribe" for r in requests)
    assert [a for r in requests for a in r["args"]] == [f"publicTrade.S{i}USDT" for i in range(25)]
    assert len({r["req_id"] for r in requests}) == 3


def test_two_channels_count_two_args_per_symbol():
    _, adapter = make()
    requests = [json.loads(m) for m in adapter.subscribe_messages([f"S{i}USDT" for i in range(7)])]
    assert [len(r["args"]) for r in requests] == [10, 4]


def test_linear_requests_are_not_held_to_the_spot_limit():
    _, adapter = make(category="linear", url="wss://stream.bybit.com/v5/public/linear")
    [request] = adapter.subscribe_messages([f"S{i}USDT" for i in range(30)])
    assert len(json.loads(request)["args"]) == 60


def test_capacity_keeps_a_connections_args_under_21000_characters():
    symbols = [f"SYMBOL{i:04d}USDT" for i in range(3000)]
    _, adapter = make(symbols=symbols)
    cap = adapter.capacity()
    args = [a for s in symbols[:cap] for a in adapter.topics(s)]
    assert len(json.dumps(args)) < MAX_ARGS_CHARS
    assert len(json.dumps([a for s in symbols[:cap + 40] for a in adapter.topics(s)])) >= MAX_ARGS_CHARS * 0.99


def test_subscribe_reply_acknowledges_that_requests_symbols():
    _, adapter = make()
    first, second = adapter.subscribe_messages([f"S{i}USDT" for i in range(7)])
    reply = {"success": True, "ret_msg": "subscribe", "conn_id": "c", "req_id": json.loads(second)["req_id"], "op": "subscribe"}
    assert adapter.handle(json.dumps(reply), NOW) == (Acknowledged(("S5USDT", "S6USDT")),)
    # The documentation's reply carries a req_id we never sent: the oldest subscribe is answered.
    assert adapter.handle(frame("docs_subscribe_reply.json"), NOW) == (Acknowledged(tuple(f"S{i}USDT" for i in range(5))),)


def test_refused_subscription_is_a_subscribe_error_with_the_venue_message():
    feed, adapter = make(channels=("publicTrade",), symbols=("BTCUSDT", "NOPEUSDT"))
    adapter.subscribe_messages(["BTCUSDT", "NOPEUSDT"])  # req_id "0-1"
    signals = adapter.handle(frame("subscribe_refused.json"), NOW)
    assert signals[0] == Problem("subscribe", "Bybit refused subscribe: error:handler not found,topic:publicTrade.NOPEUSDT")
    assert signals[1] == Acknowledged(("BTCUSDT",))  # the topic not named in the refusal is live
    assert feed.messages["control"] == 1


def test_unsubscribe_reply():
    _, adapter = make()
    [message] = adapter.unsubscribe_messages(["BTCUSDT"])
    req_id = json.loads(message)["req_id"]
    reply = {"success": True, "ret_msg": "", "conn_id": "c", "req_id": req_id, "op": "unsubscribe"}
    assert adapter.handle(json.dumps(reply), NOW) == (Unsubscribed(("BTCUSDT",)),)


def test_docs_public_trade_example_decodes():
    feed, adapter = make()
    assert adapter.handle(frame("docs_public_trade.json"), NOW) == ()
    state = feed.symbols["BTCUSDT"]
    assert state.price == 16578.5 and state.updates == 1
    assert state.event_time == pytest.approx(1672304486.865)  # T, the fill time, not the message ts
    assert feed.messages["trade"] == 1


def test_trade_batch_applies_in_order_and_does_not_count_cross_sequence_gaps():
    feed, adapter = make()
    adapter.handle(frame("public_trade_batch.json"), NOW)
    state = feed.symbols["ETHUSDT"]
    assert state.price == 2000.2 and state.updates == 3
    assert state.event_time == pytest.approx(1700000000.25)
    assert feed.sequence_gaps == 0 and state.gaps == 0  # seq jumps are not lost trades on Bybit
    assert sum(feed.latency_counts) == 1                # one observation per frame, its oldest trade
    assert feed.latency_sum == pytest.approx(NOW - 1700000000.1)


def test_docs_linear_ticker_uses_the_bid_ask_mid():
    feed, adapter = make(category="linear", url="wss://stream.bybit.com/v5/public/linear")
    assert adapter.handle(frame("docs_ticker_linear.json"), NOW) == ()
    state = feed.symbols["BTCUSDT"]
    assert state.price == pytest.approx((17215.5 + 17216.0) / 2)
    assert state.event_time == pytest.approx(1673272861.686)
    assert feed.messages["quote"] == 1


def test_ticker_delta_merges_missing_fields_as_unchanged():
    feed, adapter = make(category="linear", url="wss://stream.bybit.com/v5/public/linear")
    adapter.handle(frame("docs_ticker_linear.json"), NOW)
    adapter.handle(frame("ticker_linear_delta.json"), NOW + 0.1)  # only bid1Price changed
    state = feed.symbols["BTCUSDT"]
    assert state.price == pytest.approx((17210.5 + 17216.0) / 2)
    assert state.updates == 2 and state.last_update == NOW + 0.1


def test_delta_before_any_snapshot_still_merges():
    feed, adapter = make(category="linear", url="wss://stream.bybit.com/v5/public/linear")
    adapter.handle(frame("ticker_linear_delta.json"), NOW)  # only a bid: no mid, no last price yet
    assert feed.symbols["BTCUSDT"].updates == 0
    adapter.handle('{"topic":"tickers.BTCUSDT","type":"delta","ts":1673272861886,"data":{"symbol":"BTCUSDT","ask1Price":"17211"}}', NOW)
    assert feed.symbols["BTCUSDT"].price == pytest.approx((17210.5 + 17211) / 2)


def test_docs_spot_ticker_uses_the_last_price():
    feed, adapter = make()
    adapter.handle(frame("docs_ticker_spot.json"), NOW)
    state = feed.symbols["BTCUSDT"]
    assert state.price == 16363.78 and feed.messages["trade"] == 1


def test_empty_book_side_falls_back_to_last_price():
    feed, adapter = make(category="linear", url="wss://stream.bybit.com/v5/public/linear")
    adapter.handle('{"topic":"tickers.ETHUSDT","type":"snapshot","ts":1700000000000,"data":{"symbol":"ETHUSDT","lastPrice":"2000","bid1Price":"","ask1Price":"2001"}}', NOW)
    assert feed.symbols["ETHUSDT"].price == 2000.0


def test_bad_frames_are_problems_not_crashes():
    feed, adapter = make()
    [problem] = adapter.handle("not json", NOW)
    assert problem.kind == "decode"
    [problem] = adapter.handle('{"topic":"publicTrade.BTCUSDT","data":[{"s":"BTCUSDT"}]}', NOW)
    assert problem.kind == "decode" and "publicTrade" in problem.message
    [problem] = adapter.handle('{"hello":1}', NOW)
    assert problem.kind == "protocol"
    adapter.handle('{"topic":"publicTrade.XRPUSDT","type":"snapshot","ts":1,"data":[{"T":1,"s":"XRPUSDT","p":"1"}]}', NOW)
    assert feed.rejected["unknown_symbol"] == 1
    assert feed.symbols["BTCUSDT"].updates == 0


def test_check_config_names_the_key():
    with pytest.raises(ConfigError) as err:
        load_data({"feeds": [{"name": "b", "kind": "bybit", "url": "wss://stream.bybit.com/v5/public/linear",
                              "symbols": ["btcusdt"], "channels": ["publicTrade", "orderbook.1"]}]})
    assert err.value.errors == [
        "feeds[0].channels[1]: unknown channel 'orderbook.1' (use publicTrade or tickers)",
        "feeds[0].symbols[0]: Bybit symbols are upper-case letters and digits like BTCUSDT, got 'btcusdt'",
        "feeds[0].category: the url serves 'linear' but category is 'spot'; set category: linear",
    ]
