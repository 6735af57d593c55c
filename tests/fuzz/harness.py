"""One fuzz target per adapter: a book, an adapter, and the properties every frame must keep.

``Target.feed_frame(data)`` plays the runner's part for one frame (``Problem`` signals counted as
the link counts them) and checks the properties of the fuzz tests:

1. ``handle()`` raises nothing (an escape is returned, not raised, so the long run can count it);
2. the frame is accepted or counted: a message, error or rejection counter moved (for the
   trading feed, the tracker's events or refusals), or the adapter answered with a signal;
3. the book holds no non-finite or non-positive price and no implausible venue timestamp (the
   tracker: no non-finite equity, P&L, drawdown or position).

``Target.check_render()`` renders ``/metrics`` as the server would (book collector, trading
collector, render errors) and checks it: prometheus_client's parser reads it, every sample value
is a number Prometheus can parse (Go's ParseFloat refuses digits past a float's range), and no
collector had to skip a sample (``feedwatch_render_errors_total`` stays 0: the edges sanitize).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from prometheus_client.parser import text_string_to_metric_families

from exporter.book import TIMESTAMP_RANGES, Book, FeedBook
from exporter.collector import BookCollector
from exporter.config import load_data
from exporter.feeds.base import Problem, Rejected
from exporter.feeds.binance import BinanceAdapter
from exporter.feeds.bybit import BybitAdapter
from exporter.feeds.generic import GenericAdapter
from exporter.feeds.polygon import PolygonAdapter
from exporter.feeds.trading import TradingAdapter
from exporter.trading.collector import TradingCollector
from exporter.trading.tracker import Tracker

NOW = 1_700_000_000.5
VENUES = ("polygon", "binance", "bybit", "generic", "trading")

# The generic adapter is fuzzed under the three configurations its fixtures come from.
GENERIC_CONFIGS = (
    {"symbols": ["BTC-USD", "ETH-USD"], "match": {"type": "ticker"}, "timestamp_unit": "iso",
     "fields": {"symbol": "product_id", "bid": "best_bid", "ask": "best_ask", "timestamp": "time"},
     "pong": {"type": "heartbeat"}},
    {"symbols": ["ALGO/USD"], "records": "data", "match": {"channel": "ticker"},
     "fields": {"symbol": "symbol", "bid": "bid", "ask": "ask"}},
    {"symbols": ["AAPL", "MSFT"], "match": {"ev": "T"}, "timestamp_unit": "ms",
     "fields": {"symbol": "sym", "price": "p", "timestamp": "t"}},
)
FEEDS = {
    "polygon": {"kind": "polygon", "url": "wss://socket.polygon.io/stocks", "api_key": "k",
                "symbols": ["AAPL", "MSFT", "BRK.A"]},
    "binance": {"kind": "binance", "url": "wss://stream.binance.com:9443", "symbols": ["BNBBTC", "BNBUSDT"],
                "streams": ["trade", "aggTrade", "bookTicker"]},
    "bybit": {"kind": "bybit", "url": "wss://stream.bybit.com/v5/public/linear", "category": "linear",
              "symbols": ["BTCUSDT", "ETHUSDT"], "channels": ["publicTrade", "tickers"]},
    "trading": {"kind": "trading", "url": "ws://127.0.0.1:1/events"},
}
ADAPTERS = {"polygon": PolygonAdapter, "binance": BinanceAdapter, "bybit": BybitAdapter,
            "generic": GenericAdapter, "trading": TradingAdapter}
# A sample line's value: the text format's numbers and specials, nothing else.
_VALUE = re.compile(r"^(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|NaN|[+-]Inf)$")


class Escape(Exception):
    """``handle()`` raised: the frame and the exception, for the report and the fixture."""

    def __init__(self, data: bytes | str, exc: BaseException) -> None:
        super().__init__(f"{exc!r} escaped handle() for frame {data[:200]!r}")
        self.data = data
        self.exc = exc


class Violation(AssertionError):
    """A property other than "no escape" failed."""


@dataclass
class Target:
    venue: str
    variant: int = 0
    feed: FeedBook = field(init=False)
    adapter: Any = field(init=False)
    tracker: Tracker | None = field(init=False, default=None)
    frames: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        raw: dict[str, Any] = {"name": self.venue, **(
            {"kind": "generic", "url": "wss://ws.example.com", **GENERIC_CONFIGS[self.variant]}
            if self.venue == "generic" else FEEDS[self.venue])}
        data: dict[str, Any] = {"feeds": [raw]}
        if self.venue == "trading":
            data["trading"] = {"accounts": [{"name": "main"}]}
        config = load_data(data, environ={})
        self.config = config
        self.feed = Book(config.feeds, NOW - 60).feed(self.venue)
        self.adapter = ADAPTERS[self.venue](config.feeds[0], self.feed, "0")
        if self.venue == "trading":
            self.tracker = Tracker(config.trading, NOW)   # memory store: nothing on disk
            self.adapter.tracker = self.tracker
        self.feed.connected("0", NOW - 60)
        self.adapter.open_messages()
        self.adapter.subscribe_messages(list(config.feeds[0].symbols))  # replies find their requests
        self.collector = BookCollector(Book([], NOW))
        self.collector.book.feeds[self.venue] = self.feed
        self.renderers: list[Callable[[float], str]] = []
        if self.tracker is not None:
            self.renderers.append(TradingCollector(self.tracker, self.collector.errors))

    # --- one frame ---------------------------------------------------------------------------

    def _counted(self) -> int:
        feed = self.feed
        total = sum(feed.messages.values()) + sum(feed.errors.values()) + sum(feed.rejected.values())
        if self.tracker is not None:
            total += sum(self.tracker.events.values()) + sum(self.tracker.rejected.values())
        return total

    def feed_frame(self, data: bytes | str) -> tuple:
        """Handle one frame like the runner; raise Escape or Violation when a property fails."""
        before = self._counted()
        try:
            signals = self.adapter.handle(data, NOW)
        except Exception as exc:  # noqa: BLE001 - counting escapes is the point
            raise Escape(data, exc) from exc
        self.frames += 1
        for signal in signals:
            if type(signal) is Problem:
                self.feed.error(signal.kind, signal.message)
            elif type(signal) is Rejected and signal.reason not in self.feed.rejected:
                raise Violation(f"Rejected signal with unknown reason {signal.reason!r}")
        if self._counted() == before and not any(type(s) is not Rejected for s in signals):
            raise Violation(f"frame neither accepted nor counted: {data[:200]!r}")
        self.check_state()
        return tuple(signals)

    def check_state(self) -> None:
        for state in self.feed.symbols.values():
            price = state.price
            if price == price and not (type(price) is float and 0.0 < price < math.inf):
                raise Violation(f"{state.symbol}: stored price {price!r}")
            ts = state.last_event
            if ts and not any(low <= ts < high for low, high in TIMESTAMP_RANGES):
                raise Violation(f"{state.symbol}: stored venue timestamp {ts!r}")
        if not (math.isfinite(self.feed.latency_sum) and self.feed.latency_sum >= 0.0):
            raise Violation(f"latency sum {self.feed.latency_sum!r}")
        if self.tracker is not None:
            for account in self.tracker.accounts.values():
                for name in ("equity", "peak", "max_drawdown", "day_peak", "week_peak", "pnl_total", "pnl_day",
                             "latency_sum", "last_event"):
                    value = getattr(account, name)
                    if value is not None and not math.isfinite(value):
                        raise Violation(f"account {account.name}: {name} = {value!r}")
                for symbol, quantity in account.positions.items():
                    if not math.isfinite(quantity):
                        raise Violation(f"account {account.name}: position {symbol} = {quantity!r}")

    # --- /metrics ------------------------------------------------------------------------------

    def render(self) -> str:
        parts = [self.collector.render(NOW)]
        parts.extend(renderer(NOW) for renderer in self.renderers)
        parts.append(self.collector.errors.render())
        return "".join(parts)

    def check_render(self) -> str:
        text = self.render()
        check_exposition(text)
        skipped = {k: v for k, v in self.collector.errors.counts.items() if v}
        if skipped:
            raise Violation(f"samples skipped by the render guard: {skipped}")
        text.encode("utf-8")  # what the server sends: must be valid UTF-8
        return text


def check_exposition(text: str) -> None:
    """The repo's exposition checks, without a process: parse it, and every value is a number."""
    families = list(text_string_to_metric_families(text))
    if not families:
        raise Violation("empty exposition")
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        value = line.rsplit(" ", 1)[-1]
        if not _VALUE.match(value) or (value not in ("NaN", "+Inf", "-Inf") and not math.isfinite(float(value))):
            raise Violation(f"sample value Prometheus cannot parse: {line[:200]!r}")
