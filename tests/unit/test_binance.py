"""The Binance adapter, driven by the documentation's examples (tests/fixtures/binance/), no network."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from exporter.book import Book
from exporter.config import ConfigError, load_data
from exporter.feeds import registry
from exporter.feeds.base import Acknowledged, Close, Problem, Reply, Unsubscribed
from exporter.feeds.binance import DEFAULT_MAX_AGE, SUBSCRIBE_BATCH, BinanceAdapter, base_url

FIXTURES = Path(__file__).parent.parent / "fixtures" / "binance"
NOW = 1_700_000_000.5


def frame(name: str) -> str:
    return (FIXTURES / name).read_text()


def make(streams=("trade", "bookTicker"), symbols=("BNBBTC", "BNBUSDT", "BTCUSDT"), **extra):
    config = load_data({"feeds": [{
        "name": "binance", "kind": "binance", "url": "wss://stream.binance.com:9443",
        "symbols": list(symbols), "streams": list(streams), **extra,
    }]})
    feed = Book(config.feeds, NOW - 10).feed("binance")
    for state in feed.symbols.values():
        state.guard = False  # the first-print guard has its own tests; these check decoding
    return feed, BinanceAdapter(config.feeds[0], feed)


def trade(symbol: str, trade_id: int, price: float = 10.0, trade_ms: int = 1_700_000_000_000,
          event_ms: int | None = None) -> str:
    data = {"e": "trade", "E": event_ms or trade_ms, "s": symbol, "t": trade_id, "p": f"{price:.8f}",
            "q": "1", "T": trade_ms, "m": False, "M": True}
    return json.dumps({"stream": f"{symbol.lower()}@trade", "data": data})


def test_registered_as_binance_kind():
    assert registry.get("binance") is BinanceAdapter


def test_limits_follow_the_venue_rules():
    _, adapter = make(streams=("trade", "bookTicker"))
    assert adapter.capacity() == 512          # 1024 streams / 2 per symbol
    assert make(streams=("trade",))[1].capacity() == 1024
    assert adapter.control_rate < 5 and adapter.server_pings
    assert adapter.max_connection_age() == DEFAULT_MAX_AGE < 24 * 3600
    assert make(max_connection_age="30s")[1].max_connection_age() == 30.0


def test_url_is_the_combined_stream_endpoint():
    _, adapter = make()
    assert adapter.url(["BTCUSDT"]) == "wss://stream.binance.com:9443/stream"
    assert base_url("ws://127.0.0.1:5/stream/") == base_url("ws://127.0.0.1:5/ws") == "ws://127.0.0.1:5"
    assert not adapter.subscribed_in_url()


def test_subscribe_requests_have_the_documented_shape_and_end_with_an_audit():
    _, adapter = make()
    message, audit = adapter.subscribe_messages(["BTCUSDT", "BNBBTC"])
    request = json.loads(message)
    documented = json.loads(frame("docs_subscribe_request.json"))
    assert request.keys() == documented.keys()
    assert request == {"method": "SUBSCRIBE", "id": 1,
                       "params": ["btcusdt@trade", "btcusdt@bookTicker", "bnbbtc@trade", "bnbbtc@bookTicker"]}
    assert json.loads(audit) == {"method": "LIST_SUBSCRIPTIONS", "id": 2}
    [unsub] = adapter.unsubscribe_messages(["BNBBTC"])
    assert json.loads(unsub) == {"method": "UNSUBSCRIBE", "params": ["bnbbtc@trade", "bnbbtc@bookTicker"], "id": 3}


def test_subscribe_requests_are_batched():
    _, adapter = make(streams=("trade",))
    symbols = [f"S{i}USDT" for i in range(450)]
    *messages, audit = [json.loads(m) for m in adapter.subscribe_messages(symbols)]
    assert [len(m["params"]) for m in messages] == [SUBSCRIBE_BATCH, SUBSCRIBE_BATCH, 50]
    assert [m["id"] for m in messages] == [1, 2, 3]
    assert [p for m in messages for p in m["params"]] == [f"s{i}usdt@trade" for i in range(450)]
    assert audit["method"] == "LIST_SUBSCRIPTIONS"


@pytest.mark.parametrize("name", ["combined_trade.json", "docs_trade.json"])
def test_docs_trade_example_decodes(name):
    feed, adapter = make()
    assert adapter.handle(frame(name), NOW) == ()
    state = feed.symbols["BNBBTC"]
    assert state.price == 0.001 and state.updates == 1 and state.last_update == NOW
    assert state.event_time == pytest.approx(1672515782.136)
    assert state.last_seq == 12345
    assert feed.messages["trade"] == 1


@pytest.mark.parametrize("name", ["combined_aggtrade.json", "docs_aggtrade.json"])
def test_docs_aggtrade_example_decodes(name):
    feed, adapter = make(streams=("aggTrade",))
    assert adapter.handle(frame(name), NOW) == ()
    state = feed.symbols["BNBBTC"]
    assert state.price == 0.001 and state.updates == 1
    assert state.last_seq == 12345  # the aggregate id is the sequence when trade is not subscribed


@pytest.mark.parametrize("name", ["combined_bookticker.json", "docs_bookticker.json"])
def test_docs_bookticker_example_updates_staleness_but_not_latency(name):
    feed, adapter = make()
    assert adapter.handle(frame(name), NOW) == ()
    state = feed.symbols["BNBUSDT"]
    assert state.price == pytest.approx((25.3519 + 25.3652) / 2)
    assert state.last_update == NOW and state.updates == 1
    assert state.last_event == 0                    # bookTicker carries no exchange time
    assert sum(feed.latency_counts) == 0            # so no latency is observed
    assert feed.messages["quote"] == 1


def test_latency_is_measured_from_trade_time_not_event_time():
    feed, adapter = make()
    adapter.handle(trade("BTCUSDT", 1, trade_ms=1_700_000_000_000, event_ms=1_700_000_000_400), NOW)
    state = feed.symbols["BTCUSDT"]
    assert state.event_time == pytest.approx(1_700_000_000.0)
    assert feed.latency_sum == pytest.approx(NOW - 1_700_000_000.0)


def test_bytes_frames_decode_like_text_frames():
    feed, adapter = make()
    adapter.handle(frame("combined_trade.json").encode(), NOW)
    adapter.handle(frame("combined_bookticker.json").encode(), NOW)
    assert feed.symbols["BNBBTC"].updates == 1 and feed.symbols["BNBUSDT"].updates == 1


def test_subscribe_reply_acknowledges_that_requests_symbols():
    _, adapter = make()
    adapter.subscribe_messages(["BNBBTC", "BNBUSDT"])                   # id 1, audit id 2
    assert adapter.handle(frame("docs_subscribe_reply.json"), NOW) == (Acknowledged(("BNBBTC", "BNBUSDT")),)


def test_audit_reply_confirms_the_listed_streams():
    _, adapter = make(streams=("trade",))
    *_, audit = adapter.subscribe_messages([f"S{i}USDT" for i in range(300)])  # ids 1, 2; audit 3
    assert adapter.handle('{"result":null,"id":2}', NOW) == (Acknowledged(tuple(f"S{i}USDT" for i in range(200, 300))),)
    listed = [f"s{i}usdt@trade" for i in range(300)]
    assert adapter.handle(json.dumps({"result": listed, "id": json.loads(audit)["id"]}), NOW) == [
        Acknowledged(tuple(f"S{i}USDT" for i in range(300)))]


def test_list_subscriptions_audit_reports_and_re_requests_missing_streams():
    feed, adapter = make()
    _, audit = adapter.subscribe_messages(["BTCUSDT", "BNBBTC"])  # id 1, audit id 2
    adapter.handle('{"result":null,"id":1}', NOW)
    audit_id = json.loads(audit)["id"]
    listed = ["btcusdt@trade", "btcusdt@bookTicker", "bnbbtc@trade", "ethusdt@trade"]
    signals = adapter.handle(json.dumps({"result": listed, "id": audit_id}), NOW)
    assert Acknowledged(("BTCUSDT", "BNBBTC")) in signals
    problems = {s.kind: s.message for s in signals if isinstance(s, Problem)}
    assert "1 requested stream(s) not active" in problems["subscribe"] and "bnbbtc@bookTicker" in problems["subscribe"]
    assert "ethusdt@trade" in problems["protocol"]
    again, audit_again = [json.loads(s.text) for s in signals if isinstance(s, Reply)]
    assert again["method"] == "SUBSCRIBE" and again["params"] == ["bnbbtc@bookTicker"]
    assert audit_again["method"] == "LIST_SUBSCRIPTIONS"
    assert feed.messages["control"] == 2


def test_audit_stops_re_requesting_after_a_few_attempts():
    _, adapter = make(streams=("trade",), symbols=("BTCUSDT",))
    _, audit = adapter.subscribe_messages(["BTCUSDT"])
    audit_id = json.loads(audit)["id"]
    re_requests = 0
    for _ in range(6):  # a venue that never lists the stream
        signals = adapter.handle(json.dumps({"result": [], "id": audit_id}), NOW)
        retry = [json.loads(s.text) for s in signals if isinstance(s, Reply)]
        if not retry:
            assert "not retrying" in next(s for s in signals if isinstance(s, Problem)).message
            break
        re_requests += 1
        audit_id = retry[-1]["id"]
    assert re_requests == 3


def test_unsubscribe_reply_and_error_replies():
    _, adapter = make()
    adapter.subscribe_messages(["BTCUSDT"])                      # id 1, audit id 2
    adapter.unsubscribe_messages(["BTCUSDT"])                    # id 3
    assert adapter.handle('{"result":null,"id":3}', NOW) == (Unsubscribed(("BTCUSDT",)),)
    [problem] = adapter.handle('{"code":2,"msg":"Invalid request: too many parameters","id":1}', NOW)
    assert problem.kind == "subscribe" and "too many parameters" in problem.message
    [problem] = adapter.handle(frame("docs_error_reply.json"), NOW)
    assert problem.kind == "protocol" and "request ID must be an unsigned integer" in problem.message
    [problem] = adapter.handle('{"result":null,"id":99}', NOW)
    assert problem.kind == "protocol" and "unknown request id 99" in problem.message


def test_docs_list_subscriptions_reply_is_audited():
    _, adapter = make(streams=("aggTrade",), symbols=("BTCUSDT", "BNBBTC"))
    adapter.subscribe_messages(["BTCUSDT", "BNBBTC"])  # id 1, audit id 2
    adapter.list_message()                             # id 3: the documentation's example reply
    signals = adapter.handle(frame("docs_list_subscriptions_reply.json"), NOW)
    assert Acknowledged(("BTCUSDT",)) in signals
    [problem] = [s for s in signals if isinstance(s, Problem)]
    assert "bnbbtc@aggTrade" in problem.message


def test_server_shutdown_is_a_planned_reconnect():
    feed, adapter = make()
    [signal] = adapter.handle(frame("docs_server_shutdown.json"), NOW)
    assert isinstance(signal, Close) and signal.reason == "server_shutdown"
    # Also when delivered inside the combined-stream wrapper or bare.
    assert adapter.handle('{"e":"serverShutdown","E":1}', NOW)[0].reason == "server_shutdown"
    assert adapter.handle('{"stream":"x","data":{"e":"serverShutdown","E":1}}', NOW)[0].reason == "server_shutdown"
    assert feed.messages["status"] == 3


def test_trade_id_gaps_are_counted_per_symbol():
    feed, adapter = make()
    for trade_id in (100, 101, 102, 105, 106, 110):
        adapter.handle(trade("BTCUSDT", trade_id), NOW)
    for trade_id in (7, 8, 9):
        adapter.handle(trade("BNBBTC", trade_id), NOW)
    assert feed.symbols["BTCUSDT"].gaps == 2 and feed.symbols["BNBBTC"].gaps == 0
    assert feed.sequence_gaps == 2
    assert feed.symbols["BTCUSDT"].updates == 6


def test_duplicates_from_an_overlapping_connection_are_dropped():
    feed, adapter = make()
    old, new = adapter, BinanceAdapter(adapter.config, feed, "1")
    for trade_id in (1, 2, 3):
        old.handle(trade("BTCUSDT", trade_id), NOW)
    for trade_id in (2, 3, 4):        # the replacement connection starts while the old one still runs
        new.handle(trade("BTCUSDT", trade_id), NOW)
    old.handle(trade("BTCUSDT", 4), NOW)
    state = feed.symbols["BTCUSDT"]
    assert state.updates == 4 and state.gaps == 0 and state.last_seq == 4


def test_restarted_trade_ids_resume_counting():
    feed, adapter = make()
    adapter.handle(trade("BTCUSDT", 5_000_000), NOW)
    adapter.handle(trade("BTCUSDT", 1), NOW)
    adapter.handle(trade("BTCUSDT", 2), NOW)
    state = feed.symbols["BTCUSDT"]
    assert state.updates == 3 and state.last_seq == 2 and state.gaps == 0


def test_aggtrade_ids_are_not_mixed_with_trade_ids():
    feed, adapter = make(streams=("trade", "aggTrade"))
    adapter.handle(trade("BTCUSDT", 1000), NOW)
    agg = {"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade", "E": 1, "s": "BTCUSDT", "a": 5,
                                                   "p": "10", "q": "1", "f": 1, "l": 1, "T": 1_700_000_000_000}}
    adapter.handle(json.dumps(agg), NOW)
    adapter.handle(trade("BTCUSDT", 1001), NOW)
    state = feed.symbols["BTCUSDT"]
    assert state.updates == 3 and state.gaps == 0 and state.last_seq == 1001


def test_bad_frames_are_problems_not_crashes():
    feed, adapter = make()
    [problem] = adapter.handle("\x00not json", NOW)
    assert problem.kind == "decode"
    [problem] = adapter.handle('{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT"}}', NOW)
    assert problem.kind == "decode" and "malformed trade" in problem.message
    [problem] = adapter.handle('{"stream":"btcusdt@kline_1m","data":{"e":"kline","s":"BTCUSDT"}}', NOW)
    assert problem.kind == "protocol" and "kline" in problem.message
    [problem] = adapter.handle("[1,2]", NOW)
    assert problem.kind == "protocol"
    assert feed.symbols["BTCUSDT"].updates == 0 and feed.messages["other"] == 3


def test_bad_prices_and_unknown_symbols_are_rejected_by_the_book():
    feed, adapter = make()
    adapter.handle(trade("BTCUSDT", 1, price=0.0), NOW)
    adapter.handle(trade("DOGEUSDT", 1), NOW)
    crossed = {"stream": "btcusdt@bookTicker", "data": {"u": 1, "s": "BTCUSDT", "b": "11", "B": "1", "a": "10", "A": "1"}}
    adapter.handle(json.dumps(crossed), NOW)
    assert feed.rejected["nonpositive_price"] == 1
    assert feed.rejected["unknown_symbol"] == 1
    assert feed.rejected["crossed_quote"] == 1
    assert math.isnan(feed.symbols["BTCUSDT"].price)


def test_check_config_names_the_key():
    with pytest.raises(ConfigError) as err:
        load_data({"feeds": [{"name": "b", "kind": "binance", "url": "wss://x/stream?streams=a@trade",
                              "symbols": ["BTCUSDT", "ethusdt"], "streams": ["trade", "depth", "trade"],
                              "max_connection_age": "25h"}]})
    assert err.value.errors == [
        "feeds[0].streams[1]: unknown stream type 'depth' (use trade, aggTrade or bookTicker)",
        "feeds[0].streams[2]: duplicate stream type 'trade'",
        "feeds[0].symbols[1]: Binance symbols are upper-case letters and digits like BTCUSDT, got 'ethusdt'",
        "feeds[0].url: give the base endpoint (wss://stream.binance.com:9443); feedwatch builds the stream names itself",
        "feeds[0].max_connection_age: must be more than 0 and at most 24h (Binance closes every connection at 24 hours)",
    ]
