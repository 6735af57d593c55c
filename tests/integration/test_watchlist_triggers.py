"""Trigger files over a real socket: the price checker's ``immediate_*.json`` beside today's
``triggers/<feed>/<SYMBOL>``, unusable files counted and moved aside, the symbol caps."""

from __future__ import annotations

import json
import logging
import os

from tests.integration.feedharness import simulated_feed


def touch(path, clock, text: str = "") -> None:
    path.write_text(text)
    os.utime(path, (clock.time(), clock.time()))


async def test_immediate_files_watch_their_tickers_until_mtime_plus_ttl(clock, tmp_path):
    top = {"watchlist": {"trigger_dir": str(tmp_path), "ttl": "60s", "scan_interval": "50ms"}}
    async with simulated_feed(clock, sim_symbols=("AAPL", "MSFT", "NVDA", "AMD", "TSLA"), top=top) as h:
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscriptions acknowledged")
        touch(tmp_path / "immediate_20260101_news.json", clock,
              json.dumps({"tickers": ["NVDA", "AMD"], "ttl": "5m", "reason": "earnings"}))
        touch(tmp_path / "immediate_2.json", clock, json.dumps({"ticker": "TSLA", "feed": "stocks"}))
        (tmp_path / "stocks").mkdir()
        touch(tmp_path / "stocks" / "MSFT", clock)            # configured: never the watchlist's

        await h.wait(lambda: h.acked("NVDA", "AMD", "TSLA"), "tickers from both files subscribed")
        await h.flowing("NVDA", "TSLA")
        book = h.service.book
        await h.wait(lambda: book.trigger_files["accepted"] == 3, "three files counted as accepted")
        clock.advance(1)
        await h.service.watchlist.scan()
        assert book.trigger_files["accepted"] == 3           # counted once per modification, not per scan

        clock.advance(60)                                     # TSLA's file used watchlist.ttl (60s)
        await h.wait(lambda: "TSLA" not in h.feed.symbols, "TSLA dropped at mtime + 60s")
        assert {"NVDA", "AMD"} <= set(h.feed.symbols)         # their file said 5m
        clock.advance(240)
        await h.wait(lambda: "NVDA" not in h.feed.symbols and "AMD" not in h.feed.symbols, "NVDA, AMD dropped")
        assert "MSFT" in h.feed.symbols and h.feed.connects == 1


async def test_unusable_files_are_counted_logged_once_and_moved_aside(clock, tmp_path, caplog):
    top = {"watchlist": {"trigger_dir": str(tmp_path), "ttl": "60s", "scan_interval": "50ms"}}
    caplog.set_level(logging.WARNING, logger="exporter.feeds.watchlist")
    async with simulated_feed(clock, sim_symbols=("AAPL", "MSFT", "NVDA"), top=top) as h:
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscriptions acknowledged")
        touch(tmp_path / "immediate_broken.json", clock, "{not json")
        touch(tmp_path / "immediate_star.json", clock, json.dumps({"ticker": "*"}))
        touch(tmp_path / "immediate_where.json", clock, json.dumps({"ticker": "NVDA", "feed": "nosuch"}))
        (tmp_path / "stocks").mkdir()
        touch(tmp_path / "stocks" / "B?D", clock)             # today's layout, an impossible name
        touch(tmp_path / "notes.json", clock, "{")            # not a trigger file: left alone

        book = h.service.book
        await h.wait(lambda: book.trigger_files == {"accepted": 0, "malformed": 1, "invalid_symbol": 2,
                                                    "unknown_feed": 1}, "four files rejected and counted")
        rejected = tmp_path / "rejected"
        assert sorted(p.name for p in rejected.iterdir()) == sorted([
            "immediate_broken.json", "immediate_broken.json.reason", "immediate_star.json",
            "immediate_star.json.reason", "immediate_where.json", "immediate_where.json.reason",
            "stocks__B?D", "stocks__B?D.reason"])
        assert (rejected / "immediate_star.json.reason").read_text().startswith(
            "invalid_symbol: symbol '*' looks like a wildcard")
        assert not (tmp_path / "immediate_broken.json").exists() and (tmp_path / "notes.json").exists()
        for _ in range(3):                                   # moved: never counted or logged again
            await h.service.watchlist.scan()
        assert sum(book.trigger_files.values()) == 4
        lines = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
        assert len(lines) == 4, lines
        assert any("immediate_where.json rejected (unknown_feed): no feed named 'nosuch'" in line for line in lines)
        assert set(h.feed.symbols) == {"AAPL", "MSFT"}
        assert h.feed.refused["invalid_name"] == 0            # refused before reaching the feed's gate


async def test_a_flood_of_triggers_stops_at_max_symbols(clock, tmp_path, caplog):
    top = {"watchlist": {"trigger_dir": str(tmp_path), "ttl": "60s", "scan_interval": "50ms"}, "max_symbols": 100}
    caplog.set_level(logging.WARNING, logger="exporter.feeds.runner")
    async with simulated_feed(clock, sim_symbols=(), top=top, max_symbols=5) as h:
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscriptions acknowledged")
        touch(tmp_path / "immediate_flood.json", clock, json.dumps({"tickers": [f"S{i:03d}" for i in range(300)]}))
        await h.wait(lambda: h.feed.refused["feed_limit"] == 297, "297 refused past the feed's max_symbols")
        assert len(h.feed.symbols) == 5
        for _ in range(3):                                   # refused once, not again at every scan
            await h.service.watchlist.scan()
        assert h.feed.refused["feed_limit"] == 297
        await h.wait(lambda: h.acked(*h.feed.symbols), "the three that fit subscribed")
        lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert len(lines) == 1, lines                        # one line, however many scans refuse again
        assert "refused 297 new symbol(s) 'S003', 'S004', 'S005', 'S006', 'S007' and 292 more" in lines[0]
        assert "its max_symbols (5)" in lines[0]
