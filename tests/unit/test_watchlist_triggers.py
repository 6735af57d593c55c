"""The price checker's trigger files (``triggers/immediate_*.json``): the accepted fields, and
every way a file can be unusable (named, so it can be moved aside with its reason)."""

from __future__ import annotations

import json

import pytest

from exporter.config import FeedConfig, WatchlistConfig
from exporter.feeds.watchlist import TriggerError, parse_immediate

STOCKS = FeedConfig(name="stocks", kind="polygon")
CRYPTO = FeedConfig(name="crypto", kind="binance")
BOT = FeedConfig(name="bot", kind="trading")
ONE = {"stocks": STOCKS, "bot": BOT}            # one market-data feed (the bot's stream does not count)
TWO = {"stocks": STOCKS, "crypto": CRYPTO, "bot": BOT}
CONFIG = WatchlistConfig(trigger_dir="t", ttl=1800.0)


def parse(doc, feeds=ONE, config=CONFIG):
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return parse_immediate(raw, feeds, config)


def test_one_ticker_goes_to_the_only_market_feed_for_the_default_ttl():
    assert parse({"ticker": "NVDA"}) == ("stocks", ["NVDA"], 1800.0)


def test_tickers_feed_and_ttl_and_unknown_keys_ignored():
    doc = {"tickers": ["NVDA", "AMD", "NVDA"], "feed": "crypto", "ttl": "2h", "reason": "earnings beat",
           "headline": "..."}
    assert parse(doc, TWO) == ("crypto", ["NVDA", "AMD"], 7200.0)
    assert parse({"ticker": "NVDA", "ttl": 90}, ONE)[2] == 90.0          # seconds as a number


def test_default_feed_from_the_config_when_several_could_take_it():
    config = WatchlistConfig(trigger_dir="t", default_feed="crypto")
    assert parse({"ticker": "BTCUSDT"}, TWO, config)[0] == "crypto"


@pytest.mark.parametrize("raw, result, words", [
    (b"{not json", "malformed", "not JSON"),
    (b"\xff\xfe", "malformed", "not JSON"),
    ([1, 2], "malformed", "expected a JSON object"),
    ({}, "malformed", "exactly one of"),
    ({"ticker": "A", "tickers": ["B"]}, "malformed", "exactly one of"),
    ({"tickers": []}, "malformed", "non-empty list"),
    ({"tickers": "NVDA"}, "malformed", "non-empty list"),
    ({"ticker": 42}, "malformed", "must be a string"),
    ({"ticker": "NVDA", "ttl": "soon"}, "malformed", "ttl: invalid duration"),
    ({"ticker": "NVDA", "ttl": 0}, "malformed", "ttl: must be positive"),
    ({"ticker": "*"}, "invalid_symbol", "looks like a wildcard"),
    ({"tickers": ["NVDA", "AM D"]}, "invalid_symbol", "contains whitespace"),
    ({"ticker": "NVDA", "feed": "nosuch"}, "unknown_feed", "no feed named 'nosuch'"),
    ({"ticker": "NVDA", "feed": "bot"}, "unknown_feed", "trading bot's event stream"),
])
def test_unusable_files_say_why(raw, result, words):
    with pytest.raises(TriggerError) as caught:
        parse(raw)
    assert caught.value.result == result
    assert words in caught.value.message


def test_no_feed_with_several_candidates_says_what_to_do():
    with pytest.raises(TriggerError) as caught:
        parse({"ticker": "NVDA"}, TWO)
    assert caught.value.result == "unknown_feed"
    assert 'add "feed" or set watchlist.default_feed' in caught.value.message
