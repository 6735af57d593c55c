"""Guards on what can be watched: symbol names that cannot be symbols, and the symbol caps.

Every way a symbol enters (the config, trigger files, the watchlist API, the in-process
Monitor) goes through ``config.symbol_problem`` and ``FeedBook.admit``; these tests hold the
rules themselves, the entry points have their own tests.
"""

from __future__ import annotations

import pytest

from exporter.book import Book
from exporter.clock import FakeClock
from exporter.collector import BookCollector
from exporter.config import (
    DEFAULT_FEED_MAX_SYMBOLS, DEFAULT_MAX_SYMBOLS, SYMBOL_MAX_LENGTH, ConfigError, load_data, symbol_problem,
)
from exporter.monitor import Monitor
from exporter.sharding import owner


def feed(name="stocks", symbols=("AAPL",), **more):
    return {"name": name, "kind": "polygon", "url": "ws://x", "symbols": list(symbols), **more}


def errors_of(data) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_data(data, environ={})
    return caught.value.errors


@pytest.mark.parametrize("bad, words", [
    ("*", "looks like a wildcard ('*')"),
    ("BTC*", "looks like a wildcard ('*')"),
    ("AAP?", "looks like a wildcard ('?')"),
    ("%", "looks like a wildcard ('%')"),
    ("", "empty symbol"),
    (" AAPL", "contains whitespace"),
    ("AA PL", "contains whitespace"),
    ("AAPL\t", "contains a control character"),
    ("AA\x00PL", "contains a control character"),
    ("A" * (SYMBOL_MAX_LENGTH + 1), f"at most {SYMBOL_MAX_LENGTH}"),
])
def test_impossible_symbols_are_named_with_the_reason(bad, words):
    problem = symbol_problem(bad)
    assert problem is not None and words in problem


@pytest.mark.parametrize("good", ["AAPL", "BRK.B", "BTCUSDT", "BTC-USD", "BTC/USD", "ES=F", "A" * SYMBOL_MAX_LENGTH])
def test_real_symbols_pass(good):
    assert symbol_problem(good) is None


def test_a_wildcard_in_the_config_names_the_key_and_says_what_to_do():
    errors = errors_of({"feeds": [feed(symbols=["AAPL", "*"])]})
    assert len(errors) == 1
    assert errors[0].startswith("feeds[0].symbols[1]: symbol '*' looks like a wildcard")
    assert "list every symbol you want" in errors[0] and "trigger files" in errors[0]


def test_the_caps_have_documented_defaults():
    config = load_data({"feeds": [feed()]}, environ={})
    assert config.max_symbols == DEFAULT_MAX_SYMBOLS == 10_000
    assert config.feeds[0].max_symbols == DEFAULT_FEED_MAX_SYMBOLS == 5_000


def test_a_config_over_the_caps_is_refused_with_the_key():
    errors = errors_of({"max_symbols": 3, "feeds": [feed("a", ["A", "B"]), feed("b", ["C", "D"], max_symbols=1)]})
    assert any(e.startswith("feeds[1].symbols: 2 symbols, more than feeds[1].max_symbols (1)") for e in errors), errors
    assert any(e.startswith("max_symbols: the feeds list 4 symbols together, more than max_symbols (3)")
               for e in errors), errors
    assert errors_of({"max_symbols": 0})[0].startswith("max_symbols: must be at least 1")


def test_sharded_the_caps_count_the_shards_own_symbols():
    """Each replica watches its share of the file (docs/scaling.md): 20 symbols over 2 shards fit
    caps of 14 on each replica, and the refusal names the shard whose share does not fit."""
    symbols = [f"S{i:02d}" for i in range(20)]
    shares = [sum(owner("stocks", s, 2) == i for s in symbols) for i in (0, 1)]
    assert max(shares) <= 14 < 20 and min(shares) > 0, shares
    data = {"max_symbols": 14, "feeds": [feed(symbols=symbols, max_symbols=14)]}
    errors = errors_of(data)   # one exporter watches all 20
    assert any(e.startswith("feeds[0].symbols: 20 symbols, more than feeds[0].max_symbols (14)") for e in errors)
    assert any(e.startswith("max_symbols: the feeds list 20 symbols together, more than") for e in errors)
    for index in (0, 1):   # the file's shard: key, or --shard (load_file's shard=)
        assert load_data({**data, "shard": f"{index}/2"}, environ={}).max_symbols == 14
        assert load_data(data, environ={}, shard=f"{index}/2").shard == f"{index}/2"
    small = min(shares)
    with pytest.raises(ConfigError) as caught:
        load_data({"max_symbols": small - 1, "feeds": [feed(symbols=symbols, max_symbols=small - 1)]},
                  environ={}, shard=f"{shares.index(small)}/2")
    assert any(e.startswith(f"feeds[0].symbols: {small} symbols on shard {shares.index(small)}/2, more than")
               and e.endswith("or split the list over several feeds or shards") for e in caught.value.errors)
    assert any(e.startswith(f"max_symbols: the feeds list {small} symbols together on shard") and
               e.endswith("or run more shards") for e in caught.value.errors)


def test_admit_refuses_past_the_feed_cap_and_counts():
    clock = FakeClock(1_700_000_000.0)
    config = load_data({"feeds": [feed(symbols=["AAPL"], max_symbols=3)]}, environ={})
    book = Book(config.feeds, clock.time(), max_symbols=config.max_symbols)
    stocks = book.feeds["stocks"]
    added, refused = stocks.admit(["AAPL", "MSFT", "*", "NVDA", "TSLA", "AMD"], clock.time())
    assert added == ["MSFT", "NVDA"]                       # AAPL was there; room for two more
    assert refused == {"*": "invalid_name", "TSLA": "feed_limit", "AMD": "feed_limit"}
    assert stocks.refused == {"invalid_name": 1, "feed_limit": 2, "exporter_limit": 0}
    assert set(stocks.symbols) == {"AAPL", "MSFT", "NVDA"}


def test_admit_refuses_past_the_exporter_cap_across_feeds():
    clock = FakeClock(1_700_000_000.0)
    config = load_data({"max_symbols": 4, "feeds": [feed("a", ["A1", "A2"]), feed("b", ["B1"])]}, environ={})
    book = Book(config.feeds, clock.time(), max_symbols=config.max_symbols)
    assert book.feeds["b"].admit(["B2", "B3"], clock.time()) == (["B2"], {"B3": "exporter_limit"})
    assert book.feeds["a"].admit(["A3"], clock.time()) == ([], {"A3": "exporter_limit"})
    book.feeds["a"].remove_symbol("A1")                    # room again
    assert book.feeds["a"].admit(["A3"], clock.time()) == (["A3"], {})
    text = BookCollector(book).render(clock.time())
    assert 'feedwatch_feed_symbols_refused_total{feed="b",reason="exporter_limit"} 1\n' in text
    assert 'feedwatch_feed_symbols_refused_total{feed="a",reason="exporter_limit"} 1\n' in text
    assert 'feedwatch_feed_symbols_refused_total{feed="a",reason="feed_limit"} 0\n' in text
    assert "feedwatch_max_symbols 4\n" in text
    assert f'feedwatch_feed_max_symbols{{feed="a"}} {DEFAULT_FEED_MAX_SYMBOLS}\n' in text


def test_the_in_process_monitor_refuses_a_wildcard_symbol():
    monitor = Monitor({"bot": ["AAPL"]}, clock=FakeClock(1_700_000_000.0))
    assert monitor.update_price("bot", "NVDA", 100.0)
    assert not monitor.update_price("bot", "*", 100.0)
    assert "*" not in monitor.book.feeds["bot"].symbols
    assert monitor.book.feeds["bot"].refused["invalid_name"] == 1
