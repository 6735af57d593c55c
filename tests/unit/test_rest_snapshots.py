"""The REST fallback's pure parts: each venue's requests (URLs, batching, weights) and answers
read from recorded responses in tests/fixtures/<venue>/, every failure named by its result."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from exporter.book import Book
from exporter.clock import FakeClock
from exporter.config import load_data
from exporter.feeds.rest import RestError, Snapshot, rest_venue

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture(venue: str, name: str) -> bytes:
    return (FIXTURES / venue / "rest" / name.removeprefix("rest_")).read_bytes()


def venue_for(kind: str, **extra):
    feed = {"name": "f", "kind": kind, "url": "ws://x", "api_key": "K/ey", "symbols": ["A"],
            "rest": {"enabled": True, **extra.pop("rest", {})}, **extra}
    if kind == "generic":
        feed.setdefault("fields", {"symbol": "s", "price": "p"})
    return rest_venue(load_data({"feeds": [feed]}, {}).feeds[0])


# --- Polygon --------------------------------------------------------------------------------------

def test_polygon_polls_the_last_trade_with_the_feeds_key():
    venue = venue_for("polygon", channels=["T", "Q"])
    [request] = venue.requests(["AAPL"])
    assert request.url == "https://api.polygon.io/v2/last/trade/AAPL?apiKey=K%2Fey"
    assert venue.parse(request, 200, fixture("polygon", "rest_last_trade.json")) == [
        Snapshot("AAPL", 129.8473, 129.8473, 1617901342969834000)]


def test_polygon_quotes_only_polls_the_nbbo():
    venue = venue_for("polygon", channels=["Q"], rest={"url": "http://127.0.0.1:9/"})
    [request] = venue.requests(["AAPL"])
    assert request.url == "http://127.0.0.1:9/v2/last/nbbo/AAPL?apiKey=K%2Fey"
    assert venue.parse(request, 200, fixture("polygon", "rest_last_nbbo.json")) == [
        Snapshot("AAPL", 127.96, 127.98, 1617827221349730300)]


@pytest.mark.parametrize("status, body, result", [
    (401, fixture("polygon", "rest_unknown_key.json"), "http_error"),
    (500, b"<html>oops</html>", "http_error"),
    (429, b"", "rate_limited"),
    (200, b"{not json", "decode_error"),
    (200, b'{"status": "OK"}', "decode_error"),
    (200, b'{"status": "OK", "results": {"p": "abc", "t": 1}}', "decode_error"),
])
def test_polygon_failures_are_named(status, body, result):
    venue = venue_for("polygon", channels=["T"])
    with pytest.raises(RestError) as caught:
        venue.parse(venue.requests(["AAPL"])[0], status, body, {})
    assert caught.value.result == result


def test_a_rate_limit_carries_retry_after():
    venue = venue_for("polygon", channels=["T"])
    with pytest.raises(RestError) as caught:
        venue.parse(venue.requests(["AAPL"])[0], 429, b"", {"Retry-After": "7"})
    assert caught.value.retry_after == 7.0
    with pytest.raises(RestError) as caught:
        venue.parse(venue.requests(["AAPL"])[0], 429, b"", {})
    assert caught.value.retry_after == 60.0


# --- Binance --------------------------------------------------------------------------------------

def test_binance_batches_symbols_and_weighs_them():
    venue = venue_for("binance")
    [one] = venue.requests(["LTCBTC"])
    assert (one.url, one.weight) == ("https://api.binance.com/api/v3/ticker/bookTicker?symbol=LTCBTC", 2)
    many = venue.requests([f"S{i}" for i in range(150)])
    assert [len(r.symbols) for r in many] == [100, 50] and {r.weight for r in many} == {4}
    query = parse_qs(urlsplit(many[1].url).query)
    assert json.loads(query["symbols"][0]) == [f"S{i}" for i in range(100, 150)]
    assert venue.rate == 5.0                                  # 5 x weight 4 = 1,200 of 6,000 a minute


def test_binance_reads_one_and_many_book_tickers():
    venue = venue_for("binance")
    [one] = venue.requests(["LTCBTC"])
    assert venue.parse(one, 200, fixture("binance", "rest_book_ticker.json")) == [Snapshot("LTCBTC", 4.0, 4.000002)]
    [both] = venue.requests(["LTCBTC", "ETHBTC"])
    got = venue.parse(both, 200, fixture("binance", "rest_book_tickers.json"))
    assert [s.symbol for s in got] == ["LTCBTC", "ETHBTC"] and got[1].ask == 100000.0


@pytest.mark.parametrize("status, name, result", [
    (400, "rest_invalid_symbol.json", "http_error"),
    (429, "rest_too_many_requests.json", "rate_limited"),
    (418, "rest_too_many_requests.json", "rate_limited"),
])
def test_binance_failures_are_named(status, name, result):
    venue = venue_for("binance")
    with pytest.raises(RestError) as caught:
        venue.parse(venue.requests(["LTCBTC"])[0], status, fixture("binance", name), {"Retry-After": "30"})
    assert caught.value.result == result


# --- Bybit ----------------------------------------------------------------------------------------

def test_bybit_one_symbol_per_request_or_the_whole_category():
    venue = venue_for("bybit", category="linear")
    [one] = venue.requests(["BTCUSDT"])
    assert one.url == "https://api.bybit.com/v5/market/tickers?category=linear&symbol=BTCUSDT"
    [every] = venue.requests([f"S{i}" for i in range(11)])
    assert every.url == "https://api.bybit.com/v5/market/tickers?category=linear" and len(every.symbols) == 11


def test_bybit_reads_the_best_bid_and_ask_with_the_server_time():
    venue = venue_for("bybit")
    got = venue.parse(venue.requests(["BTCUSDT"])[0], 200, fixture("bybit", "rest_tickers_spot.json"))
    assert got == [Snapshot("BTCUSDT", 20517.96, 20527.77, 1673859087947)]


@pytest.mark.parametrize("status, body, result", [
    (200, fixture("bybit", "rest_rate_limited.json"), "rate_limited"),
    (403, b"access too frequent", "rate_limited"),
    (200, fixture("bybit", "rest_not_supported.json"), "http_error"),
    (502, b"bad gateway", "http_error"),
    (200, b'{"retCode": 0, "result": {"list": "nope"}}', "decode_error"),
])
def test_bybit_failures_are_named(status, body, result):
    venue = venue_for("bybit")
    with pytest.raises(RestError) as caught:
        venue.parse(venue.requests(["BTCUSDT"])[0], status, body, {})
    assert caught.value.result == result


# --- generic --------------------------------------------------------------------------------------

def test_generic_fills_the_template_and_follows_the_paths():
    venue = venue_for("generic", rest={"url": "http://127.0.0.1:9/t/{symbol}",
                                       "fields": {"bid": "data.bid", "ask": "data.ask", "timestamp": "data.ts"}})
    [request] = venue.requests(["BTC-USD"])
    assert unquote(request.url) == "http://127.0.0.1:9/t/BTC-USD"
    assert venue.parse(request, 200, fixture("generic", "rest_ticker.json")) == [
        Snapshot("BTC-USD", 101.49, 101.51, 1714564800123)]
    broken = venue_for("generic", rest={"url": "http://x/{symbol}", "fields": {"price": "data.nope"}})
    with pytest.raises(RestError) as caught:
        broken.parse(request, 200, fixture("generic", "rest_ticker.json"))
    assert caught.value.result == "decode_error" and "'data.nope'" in caught.value.message


def test_config_refuses_rest_where_it_cannot_work():
    from exporter.config import ConfigError
    with pytest.raises(ConfigError) as caught:
        load_data({"feeds": [
            {"name": "g", "kind": "generic", "url": "ws://x", "fields": {"symbol": "s", "price": "p"},
             "rest": {"enabled": True, "url": "http://x/ticker"}},
            {"name": "p", "kind": "polygon", "url": "ws://x", "rest": {"enabled": True, "interval": 0,
                                                                       "fields": {"price": "x"}}},
        ]}, {})
    errors = "\n".join(caught.value.errors)
    assert "feeds[0].rest.url: a generic feed's REST fallback needs a URL template with {symbol}" in errors
    assert "feeds[0].rest.fields: give price, or bid and ask" in errors
    assert "feeds[1].rest.interval: must be positive" in errors


# --- the book side ----------------------------------------------------------------------------------

def test_a_rest_price_is_dated_by_the_venue_and_marked_until_the_socket_delivers():
    clock = FakeClock(1_700_000_000.0)
    config = load_data({"feeds": [{"name": "s", "kind": "polygon", "url": "ws://x", "symbols": ["A", "B"]}]}, {})
    feed = Book(config.feeds, clock.time()).feeds["s"]
    a = feed.symbols["A"]
    clock.advance(100)                                   # staleness counts from the start at the earliest
    # Ten seconds old by the venue's clock: the book says so (staleness 10 s, not 0).
    assert feed.apply_rest("A", 10.0, 10.0, (clock.time() - 10) * 1e9, clock.time())
    assert a.from_rest and a.last_update == clock.time() - 10 and feed.staleness(a, clock.time()) == 10
    assert feed.last_update == 0.0                       # the socket's health is not faked by REST
    # The same snapshot again is nothing new; an older one neither.
    assert not feed.apply_rest("A", 11.0, 11.0, (clock.time() - 10) * 1e9, clock.time())
    assert a.price == 10.0
    # A venue clock ahead of ours is capped at now; no timestamp means now.
    clock.advance(1)
    assert feed.apply_rest("A", 12.0, 12.0, (clock.time() + 60) * 1e3, clock.time())
    assert a.last_update == clock.time()
    clock.advance(1)
    assert feed.apply_rest("B", 5.0, 5.2, 0, clock.time()) and feed.symbols["B"].price == 5.1
    # Crossed or bad prices are refused and counted like the socket's.
    assert not feed.apply_rest("B", 6.0, 5.0, 0, clock.time() + 1)
    assert feed.rejected["crossed_quote"] == 1
    # A socket update ends REST as the source.
    feed.record("A", 12.5, 0, clock.time(), quote=True)
    assert not a.from_rest and feed.symbols["B"].from_rest
    assert feed.rest_updates == 3


@pytest.mark.parametrize("ts", [
    float("inf"), float("nan"), -1, 1.0,                 # no time at all, or 1970
    10 ** 400, 1e300,                                    # a 401-digit integer, a float past every unit
    253_402_300_800_000,                                 # the year 10000 in ms
    5e12 * 1e3,                                          # between the ms and the us ranges
])
def test_an_implausible_rest_timestamp_is_rejected_counted_and_noted(ts):
    """REST answers pass the socket's plausibility window (2000-2100 in any unit): a bad one is
    counted as implausible_timestamp and noted for the poller's log, never stored, never raises."""
    clock = FakeClock(1_700_000_000.0)
    config = load_data({"feeds": [{"name": "s", "kind": "polygon", "url": "ws://x", "symbols": ["A"]}]}, {})
    feed = Book(config.feeds, clock.time()).feeds["s"]
    a = feed.symbols["A"]
    clock.advance(1)
    assert not feed.apply_rest("A", 10.0, 10.0, ts, clock.time())
    assert (a.updates, a.last_event, a.from_rest, a.price != a.price) == (0, 0, False, True)
    assert feed.rejected["implausible_timestamp"] == 1 and feed.rest_updates == 0
    [(reason, detail)] = feed.take_notes()
    assert reason == "implausible_timestamp" and detail.startswith("A: REST timestamp")
    # A plausible stamp in another unit than the socket's is fine (Polygon: ns over REST).
    assert feed.apply_rest("A", 10.0, 10.0, int(clock.time() * 1e9), clock.time())
    assert a.event_time == clock.time()


# --- garbage never escapes as anything but a counted result -----------------------------------------

def _mangled(body: bytes):
    """Every prefix of a recorded answer, and the answer with each value swapped for odd JSON."""
    for end in range(0, len(body), max(1, len(body) // 40)):
        yield body[:end]
    data = json.loads(body)
    odd = (None, True, "x", -1, 1e400, [], {}, "NaN")

    def walk(value, path=()):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, path + (k,))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from walk(v, path + (i,))
        yield path

    for path in list(walk(data)):
        for replacement in odd:
            copy = json.loads(body)
            if not path:
                copy = replacement
            else:
                target = copy
                for step in path[:-1]:
                    target = target[step]
                target[path[-1]] = replacement
            yield json.dumps(copy).encode()


@pytest.mark.parametrize("kind, name, symbols, extra", [
    ("polygon", "last_trade.json", ["AAPL"], {"channels": ["T"]}),
    ("polygon", "last_nbbo.json", ["AAPL"], {"channels": ["Q"]}),
    ("binance", "book_tickers.json", ["LTCBTC", "ETHBTC"], {}),
    ("bybit", "tickers_spot.json", ["BTCUSDT"], {}),
    ("generic", "ticker.json", ["BTC-USD"], {"rest": {"url": "http://x/{symbol}",
                                                     "fields": {"bid": "data.bid", "ask": "data.ask",
                                                                "timestamp": "data.ts"}}}),
])
def test_mangled_answers_raise_only_rest_errors(kind, name, symbols, extra):
    venue = venue_for(kind, **extra)
    [request] = venue.requests(symbols)
    # What the poller does with whatever parses: into a book, which must store only what it can
    # render (a finite price above 0, a plausible venue time) and never raise.
    config = load_data({"feeds": [{"name": "s", "kind": "polygon", "url": "ws://x", "symbols": symbols}]}, {})
    feed = Book(config.feeds, 1_700_000_000.0).feeds["s"]
    now = 1_700_000_000.0
    seen = 0
    for body in _mangled(fixture(kind, name)):
        for status in (200, 404, 503):
            try:
                got = venue.parse(request, status, body, {})
            except RestError as exc:
                assert exc.result in ("http_error", "decode_error", "rate_limited")
            else:
                assert all(isinstance(s, Snapshot) and s.symbol in symbols for s in got)
                for snap in got:
                    now += 1
                    feed.apply_rest(snap.symbol, snap.bid, snap.ask, snap.ts, now)
            seen += 1
    assert seen > 50
    for state in feed.symbols.values():
        assert state.updates == 0 or 0 < state.price < float("inf")
        assert 0 <= state.event_time < 4_102_444_800.0
