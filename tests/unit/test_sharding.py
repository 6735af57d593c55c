"""Sharding: every (feed, symbol) on exactly one shard, a stable hash, minimal movement when N changes.

The hash is deterministic (keyed BLAKE2), so the statistical checks below give the same numbers on
every run: they cannot flake, and a change to the hash that breaks a bound fails them for good.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import subprocess
import sys

import pytest

from exporter.config import ConfigError, load_data
from exporter.sharding import MAX_SHARDS, Shard, instrument_owner, owner

SYMBOLS = [f"S{i:05d}" for i in range(20_000)]


@functools.lru_cache(maxsize=None)
def assignment(count: int, feed: str = "stocks") -> dict[str, int]:
    return {s: owner(feed, s, count) for s in SYMBOLS}


@pytest.mark.parametrize("text, index, count", [("0/1", 0, 1), ("1/3", 1, 3), (" 2 / 3 ", 2, 3), ("255/256", 255, 256)])
def test_parse(text, index, count):
    shard = Shard.parse(text)
    assert (shard.index, shard.count) == (index, count)
    assert str(shard) == f"{index}/{count}"


@pytest.mark.parametrize("text, message", [
    ("3/3", "index 3 is out of range: with 3 shard(s) the index is 0 to 2"),
    ("1/0", "the number of shards must be 1 to 256, got 0"),
    ("0/257", "the number of shards must be 1 to 256, got 257"),
    ("1", "expected a shard as INDEX/COUNT, like 0/3 (shards are numbered from 0), got '1'"),
    ("-1/3", "expected a shard as INDEX/COUNT"),
    ("a/b", "expected a shard as INDEX/COUNT"),
])
def test_parse_refuses_nonsense_and_says_why(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Shard.parse(text)


def test_the_hash_is_pinned():
    """Changing the hash would move every symbol of every deployment on upgrade: these must hold."""
    assert [owner("stocks", "AAPL", n) for n in range(1, 9)] == [0, 1, 1, 1, 1, 1, 1, 1]
    assert [owner("stocks", "MSFT", n) for n in range(1, 9)] == [0, 1, 1, 3, 3, 3, 6, 6]
    assert [owner("binance", "BTCUSDT", n) for n in range(1, 9)] == [0, 0, 2, 2, 2, 2, 2, 2]
    assert [owner("binance", "ETHUSDT", n) for n in range(1, 9)] == [0, 1, 2, 2, 4, 4, 4, 4]


def test_the_hash_does_not_depend_on_the_process():
    """Not Python's salted hash(): another interpreter with another hash seed agrees."""
    code = ("import json; from exporter.sharding import owner; "
            "print(json.dumps([owner('stocks', f'S{i:05d}', 5) for i in range(500)]))")
    for seed in ("1", "4242"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        assert json.loads(out.stdout) == [owner("stocks", s, 5) for s in SYMBOLS[:500]]


def test_the_feed_is_part_of_the_key():
    same = sum(owner("a", s, 4) == owner("b", s, 4) for s in SYMBOLS)
    assert 0.2 < same / len(SYMBOLS) < 0.3  # independent: agree about 1 time in 4


@pytest.mark.parametrize("count", [2, 3, 4, 7])
def test_every_symbol_has_exactly_one_shard(count):
    shards = [Shard(i, count) for i in range(count)]
    assert all(sum(shard.owns("stocks", s) for shard in shards) == 1 for s in SYMBOLS[:2000])


@pytest.mark.parametrize("count", [2, 3, 4, 7, 8])
def test_the_shares_are_even(count):
    sizes = collections.Counter(assignment(count).values())
    expected = len(SYMBOLS) / count
    # Binomial spread: sqrt(n p (1-p)) is at most ~71 here; 5 standard deviations of slack.
    assert all(abs(sizes[i] - expected) < 5 * (expected * (1 - 1 / count)) ** 0.5 for i in range(count)), sizes


@pytest.mark.parametrize("before, after", [(3, 4), (1, 2), (2, 3), (4, 5), (7, 8)])
def test_adding_a_shard_moves_about_one_in_n_symbols_all_to_the_new_shard(before, after):
    old, new = assignment(before), assignment(after)
    moved = [s for s in SYMBOLS if old[s] != new[s]]
    assert {new[s] for s in moved} == {after - 1}, "nothing moves between the shards that stay"
    share = len(moved) / len(SYMBOLS)
    expected = 1 / after
    sigma = (expected * (1 - expected) / len(SYMBOLS)) ** 0.5
    assert abs(share - expected) < 5 * sigma, (share, expected)


def test_going_from_3_to_4_moves_a_quarter():
    old, new = assignment(3), assignment(4)
    share = sum(old[s] != new[s] for s in SYMBOLS) / len(SYMBOLS)
    assert 0.24 < share < 0.26


@pytest.mark.parametrize("before, after", [(4, 3), (2, 1), (8, 7)])
def test_removing_the_last_shard_moves_only_its_own_symbols(before, after):
    old, new = assignment(before), assignment(after)
    moved = {s for s in SYMBOLS if old[s] != new[s]}
    assert moved == {s for s in SYMBOLS if old[s] == before - 1}


def test_max_shards_is_allowed_and_one_more_is_not():
    assert owner("stocks", "AAPL", MAX_SHARDS) in range(MAX_SHARDS)
    with pytest.raises(ValueError):
        Shard(0, MAX_SHARDS + 1)


CONFIG = {
    "feeds": [
        {"name": "stocks", "kind": "polygon", "url": "ws://x", "symbols": [f"S{i}" for i in range(30)]},
        {"name": "crypto", "kind": "binance", "url": "ws://y", "symbols": ["BTCUSDT"]},
        {"name": "bot", "kind": "trading", "url": "ws://z"},
    ],
    "trading": {"accounts": [{"name": "main", "symbols": {"BTCUSDT": "crypto"}}]},
}


def test_a_share_is_the_configuration_cut_down_to_the_shard():
    config = load_data(CONFIG, {})
    shares = [Shard(i, 3).share(config) for i in range(3)]
    stocks = [next((f.symbols for f in s.config.feeds if f.name == "stocks"), ()) for s in shares]
    assert sorted(s for part in stocks for s in part) == sorted(config.feeds[0].symbols)
    assert all(stocks), "30 symbols over 3 shards: each has some"
    crypto_owner = owner("crypto", "BTCUSDT", 3)
    for i, share in enumerate(shares):
        names = [f.name for f in share.config.feeds]
        # The single crypto symbol is on one shard; the others keep that feed on standby.
        assert ("crypto" in names) == (i == crypto_owner)
        assert ("crypto" in share.standby) == (i != crypto_owner)
        assert share.standby.get("crypto") is None or share.standby["crypto"].symbols == ()
        # The symbol-less trading stream and the trading section are shard 0's, whatever N is.
        assert ("bot" in names) == (i == 0) and ("bot" in share.standby) == (i != 0)
        assert (share.config.trading is not None) == (i == 0)
        assert share.config.shard == "0/1"  # the share says nothing about the key: run sets it


def test_one_shard_runs_the_whole_configuration():
    config = load_data(CONFIG, {})
    share = Shard().share(config)
    assert share.config is config and share.standby == {}


def test_the_config_key():
    assert load_data({"shard": "2/3"}, {}).shard == "2/3"
    assert load_data({}, {}).shard == "0/1"
    with pytest.raises(ConfigError) as err:
        load_data({"shard": "3/3"}, {})
    assert err.value.errors == ["shard: shard index 3 is out of range: with 3 shard(s) the index is 0 to 2"]
    with pytest.raises(ConfigError) as err:
        load_data({"shard": 2}, {})
    assert err.value.errors[0].startswith("shard: expected a shard as INDEX/COUNT")


def test_shard_info_exposition():
    assert Shard(1, 3).render() == (
        "# HELP feedwatch_shard_info Always 1; this replica's shard (0 to shards-1) and the number of shards.\n"
        "# TYPE feedwatch_shard_info gauge\n"
        'feedwatch_shard_info{shard="1",shards="3"} 1\n')


INSTRUMENTS = {
    "feeds": [
        {"name": "binance", "kind": "binance", "url": "ws://a", "symbols": [f"C{i}USDT" for i in range(40)]},
        {"name": "bybit", "kind": "bybit", "url": "ws://b", "symbols": [f"C{i}USDT" for i in range(40)]},
    ],
    # One instrument per coin on both venues, named like the coin.
    "instruments": {f"C{i}": {"binance": f"C{i}USDT", "bybit": f"C{i}USDT"} for i in range(20)},
}


def test_the_instrument_hash_is_pinned():
    assert [instrument_owner("BTC", n) for n in range(1, 9)] == [0, 1, 1, 1, 1, 1, 1, 1]
    assert [instrument_owner("ETH", n) for n in range(1, 9)] == [0, 1, 2, 2, 2, 2, 2, 2]


@pytest.mark.parametrize("count", [2, 3, 4])
def test_an_instruments_members_are_watched_by_one_shard(count):
    """The exporter compares an instrument's prices in one process (Book.deviations): split over
    shards, every member would see only itself and its deviation would stay unknown for ever."""
    config = load_data(INSTRUMENTS, {})
    shares = [Shard(i, count).share(config).config for i in range(count)]
    watched = [{(f.name, s) for f in share.feeds for s in f.symbols} for share in shares]
    split = 0
    for i in range(20):
        home = instrument_owner(f"C{i}", count)
        members = {("binance", f"C{i}USDT"), ("bybit", f"C{i}USDT")}
        assert all(members <= watched[home] if n == home else not members & watched[n] for n in range(count))
        split += owner("binance", f"C{i}USDT", count) != owner("bybit", f"C{i}USDT", count)
    assert split, "the plain pair hash would have split some of them: the test shows the pinning"
    # Symbols outside any instrument keep the pair hash; every pair is still watched exactly once.
    for i in range(20, 40):
        for feed in ("binance", "bybit"):
            assert (feed, f"C{i}USDT") in watched[owner(feed, f"C{i}USDT", count)]
    assert sum(len(w) for w in watched) == 80
    # Run-time additions and the 421 answers judge by the same placement.
    bound = Shard(0, count).bound(config)
    assert all(bound.owner_of(feed, f"C{i}USDT") == instrument_owner(f"C{i}", count)
               for i in range(20) for feed in ("binance", "bybit"))
