"""The status page's history: the worst staleness per feed, sampled on the event loop every 10 s."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from exporter.book import Book
from exporter.config import load_data
from exporter.markets import NEW_YORK
from exporter.slices import run_all
from exporter.web import history as history_module
from exporter.web.history import History, feed_staleness


@dataclass
class T:
    symbol: str
    price: float
    ts: int = 0
    is_quote = False


def book_of(clock, **feed) -> Book:
    spec = {"name": "stocks", "kind": "polygon", "url": "ws://x", "symbols": ["AAPL", "MSFT", "PMN"]}
    spec.update(feed)
    return Book(load_data({"feeds": [spec]}).feeds, clock.time())


def at_once(steps):
    """The pass run to its end, as ``History.sample`` runs it."""
    return lambda now: run_all(steps(now))


def worst_by_hand(book: Book, now: float) -> float:
    """The definition: the largest ``FeedBook.staleness`` of any symbol, to the millisecond."""
    feed = book.feed("stocks")
    return round(max(feed.staleness(s, now) for s in feed.symbols.values()), 3)


def test_the_worst_staleness_counts_never_updated_symbols_from_their_subscription(clock):
    book = book_of(clock)
    feed = book.feed("stocks")
    sample = at_once(feed_staleness(book))
    clock.advance(5)
    feed.acknowledge(["AAPL", "MSFT", "PMN"], clock.time())
    clock.advance(2.5)
    feed.apply([T("AAPL", 10.0), T("AAPL", 10.0)], clock.time())
    clock.advance(7.25)
    # MSFT and PMN never updated: their clocks run from the acknowledgement, 9.75 s ago.
    assert sample(clock.time()) == {"stocks": worst_by_hand(book, clock.time())} == {"stocks": 9.75}
    feed.apply([T("MSFT", 20.0), T("MSFT", 20.0), T("PMN", 5.0), T("PMN", 5.0)], clock.time())
    clock.advance(1.5)
    # Now AAPL, updated 8.75 s ago, is the worst.
    assert sample(clock.time()) == {"stocks": worst_by_hand(book, clock.time())} == {"stocks": 8.75}


def test_the_worst_staleness_restarts_at_the_session_open_and_is_unknown_while_closed(clock):
    friday = dt.datetime(2026, 11, 20, 15, 0, tzinfo=NEW_YORK).timestamp()
    clock.set(friday)
    book = book_of(clock, market="us-equities")
    feed = book.feed("stocks")
    feed.apply([T(s, 10.0) for s in ("AAPL", "AAPL", "MSFT", "MSFT", "PMN", "PMN")], clock.time())
    sample = at_once(feed_staleness(book))
    clock.set(friday + 86400)   # Saturday
    assert sample(clock.time()) == {"stocks": None}
    monday_open = dt.datetime(2026, 11, 23, 9, 30, 0, tzinfo=NEW_YORK).timestamp()
    clock.set(monday_open + 10)
    # Friday's prints do not count against Monday: the clocks restart when the open is seen.
    assert sample(clock.time()) == {"stocks": worst_by_hand(book, clock.time())} == {"stocks": 0.0}
    clock.advance(12)
    assert sample(clock.time()) == {"stocks": worst_by_hand(book, clock.time())} == {"stocks": 12.0}


def test_the_sample_does_not_call_python_per_symbol(clock):
    """It runs on the event loop: at 100,000 symbols a classify and a staleness call per symbol
    stalled the loop ~70 ms every 10 s (issue 14). Those methods must not be called per symbol."""
    book = book_of(clock)
    feed = book.feed("stocks")
    feed.apply([T("AAPL", 10.0), T("AAPL", 10.0)], clock.time())
    clock.advance(3)

    def per_symbol(*args):
        raise AssertionError("called per symbol")

    feed.classify = feed.staleness = per_symbol   # type: ignore[method-assign]
    history = History(interval=10.0, span=60.0)
    history.add_pass("feeds", feed_staleness(book))
    history.sample(clock.time())
    assert history.to_json()["feeds"] == {"stocks": [3.0]}


def test_the_sample_gives_the_event_loop_back_between_chunks_of_symbols(clock, monkeypatch):
    """Issue 14: gathered at once, the worst staleness of 100,000 symbols held the event loop
    17-25 ms every 10 s (an iteration over the 20 ms budget, scraping or not). It is a pass that
    yields after every ``CHUNK`` symbols, and its value is the same as at once, whichever chunk
    holds the oldest symbol, including one never updated."""
    monkeypatch.setattr(history_module, "CHUNK", 1)
    book = book_of(clock)
    feed = book.feed("stocks")
    feed.acknowledge(["AAPL", "MSFT", "PMN"], clock.time())
    clock.advance(4)
    feed.apply([T("AAPL", 10.0), T("AAPL", 10.0), T("PMN", 5.0), T("PMN", 5.0)], clock.time())
    clock.advance(3)
    history = History(interval=10.0, span=60.0)
    history.add_pass("feeds", feed_staleness(book))
    history.add("accounts", lambda now: {"main": 100.0})
    steps = history.sample_steps(clock.time())
    turns = sum(1 for _ in steps)
    assert turns == 3   # one per symbol: the loop gets a turn after each chunk
    # MSFT, never updated, is the worst (from the acknowledgement, 7 s ago), in the middle chunk.
    assert history.to_json()["feeds"] == {"stocks": [7.0]} == {"stocks": [worst_by_hand(book, clock.time())]}
    assert history.to_json()["accounts"] == {"main": [100.0]}
    feed.apply([T("MSFT", 20.0), T("MSFT", 20.0)], clock.time())
    clock.advance(2)
    history.sample(clock.time())
    assert history.to_json()["feeds"] == {"stocks": [7.0, 5.0]}   # AAPL and PMN, updated 5 s ago


def test_a_failing_sampler_leaves_a_gap_in_its_own_lines_only(clock):
    history = History(interval=10.0, span=60.0)
    history.add("accounts", lambda now: {"main": 1.0})

    def broken(now):
        yield
        raise RuntimeError("boom")

    history.add_pass("feeds", broken)
    history.sample(clock.time())
    history.add_pass("feeds", feed_staleness(book_of(clock)))
    clock.advance(1)
    history.sample(clock.time())
    assert history.to_json()["accounts"] == {"main": [1.0, 1.0]}
    assert history.to_json()["feeds"] == {"stocks": [None, 1.0]}   # the gap, then a value
