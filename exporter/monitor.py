"""feedwatch inside a bot's own process: ``exporter.Monitor``.

Many bots already hold the prices they trade on and would rather not run a second process. The
monitor is the same ``Book`` (health model) and ``Tracker`` (trading metrics) the exporter uses,
behind a few plain methods, plus ``/metrics`` served from the bot's process::

    from exporter import Monitor

    monitor = Monitor(feeds={"binance": ["BTCUSDT", "ETHUSDT"]}, thresholds={"stale": "30s"},
                      trading={"accounts": [{"name": "main", "symbols": {"BTCUSDT": "binance"}}],
                               "state_file": "bot-state.sqlite"})
    port = monitor.serve(9110)                       # /metrics in a background thread
    monitor.update_price("binance", "BTCUSDT", 43_000.0)
    if monitor.is_fresh("binance", "BTCUSDT", max_staleness=5):
        ...                                          # safe to act on the price
    monitor.record_trade("main", "BTCUSDT", "long", quantity=0.1, entry_price=43_000,
                         exit_price=43_100, pnl=10.0, fees=0.4)
    monitor.record_equity("main", 10_010.0)

Freshness follows the health model of docs/configuration.md (healthy, degraded, stale, critical)
with the same thresholds and the same ``fresh`` verdict as ``GET /api/v1/symbols/{feed}/{symbol}``.
Trading events follow docs/trading-events.md; ``id`` and ``ts`` are filled in when omitted.
An invalid event raises ``ValueError`` (a bug in the calling code should be loud); a replayed id
returns False. Every method is thread-safe (one lock; the work under it is microseconds).

docs/in-process.md has the full reference and examples/monitor_position_check.py a runnable example.
"""

from __future__ import annotations

import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs, urlsplit

from exporter.web import status
from exporter.book import Book
from exporter.clock import SystemClock
from exporter.collector import BookCollector
from exporter.config import Config, ConfigError, FeedConfig, Thresholds, build_dataclass
from exporter.exposition import Exposition, negotiate
from exporter.trading.collector import TradingCollector
from exporter.trading.tracker import Account, attach, detach, event_from_mapping

IN_PROCESS_KIND = "in-process"


class Monitor:
    """Price freshness and trading metrics for one process, with an optional ``/metrics``."""

    def __init__(self, feeds: Mapping[str, Iterable[str]] | None = None, *,
                 thresholds: Mapping[str, Any] | None = None, trading: Mapping[str, Any] | None = None,
                 clock: Any = None, environ: Mapping[str, str] | None = None) -> None:
        """``feeds``: feed name -> symbols; ``thresholds``: health thresholds (``{"stale": "30s"}``);
        ``trading``: the ``trading:`` section of docs/trading-events.md, as a dict.

        Raises ``ConfigError`` listing every problem, like the exporter's config loader.
        """
        environ = os.environ if environ is None else environ
        errors: list[str] = []
        th = build_dataclass(Thresholds, dict(thresholds or {}), "thresholds", errors, environ) or Thresholds()
        th.validate("thresholds", errors)
        feed_configs = tuple(
            FeedConfig(name=name, kind=IN_PROCESS_KIND, symbols=tuple(symbols), resolved_thresholds=th)
            for name, symbols in (feeds or {}).items())
        trading_section = None
        if trading is not None:
            from exporter.trading import config as trading_config

            trading_section = trading_config.build_section(dict(trading), "trading", errors, environ, feed_configs)
        if errors:
            raise ConfigError(errors)
        self._setup(Config(thresholds=th, feeds=feed_configs, trading=trading_section), clock)

    @classmethod
    def from_config(cls, config: Config, clock: Any = None) -> "Monitor":
        """A monitor for an already loaded config (``exporter.config.load_file``); no feed is connected."""
        monitor = cls.__new__(cls)
        monitor._setup(config, clock)
        return monitor

    def _setup(self, config: Config, clock: Any) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        now = self.clock.time()
        self.book = Book(config.feeds, now, max_symbols=config.max_symbols)
        self.tracker = attach(config, now)
        self._lock = threading.RLock()
        book_collector = BookCollector(self.book)
        self._collectors: list[Any] = [book_collector]
        if self.tracker is not None:
            self._collectors.append(TradingCollector(self.tracker, book_collector.errors))
        self._http: ThreadingHTTPServer | None = None

    # --- prices -------------------------------------------------------------------------------

    def update_price(self, feed: str, symbol: str, price: float, ts: float | None = None) -> bool:
        """Record a price the bot received (``ts``: the exchange's timestamp, any Unix unit).

        A symbol not seen before is added to the feed, within the same guards as the exporter's
        run-time symbols (a wildcard-looking name or one past ``max_symbols`` is refused and
        counted in ``feedwatch_feed_symbols_refused_total``). False when the price or the symbol
        is refused (not a positive finite number); the refusal is counted like the exporter's.
        """
        with self._lock:
            book = self._feed(feed)
            if symbol not in book.symbols and not book.admit([symbol], self.clock.time())[0]:
                return False  # not a symbol name, or past max_symbols: counted in book.refused
            # Treated like a quote mid: the bot's own prices skip the garbage-first-print guard.
            return book.record(symbol, price, ts or 0, self.clock.time(), quote=True)

    def check(self, feed: str, symbol: str, max_staleness: float | None = None) -> status.SymbolView:
        """The full verdict (state, staleness, price, ``fresh``), as the JSON API gives it.

        Raises KeyError for a symbol the monitor does not know.
        """
        with self._lock:
            book = self._feed(feed)
            state = book.symbols.get(symbol)
            if state is None:
                raise KeyError(f"symbol {symbol!r} is not watched on feed {feed!r}")
            return status.symbol_view(book, state, self.clock.time(), max_staleness)

    def is_fresh(self, feed: str, symbol: str, max_staleness: float | None = None) -> bool:
        """"Is this price fresh enough to act on?": there is a price, it is healthy, not frozen,
        and no older than ``max_staleness`` seconds when given. An unknown symbol is not fresh."""
        try:
            view = self.check(feed, symbol, max_staleness)
        except KeyError:
            return False
        return view.fresh and view.price is not None

    def price(self, feed: str, symbol: str) -> float | None:
        view = self.check(feed, symbol)
        return view.price

    def _feed(self, name: str):
        book = self.book.feeds.get(name)
        if book is None:
            raise KeyError(f"unknown feed {name!r} (known: {', '.join(self.book.feeds) or 'none'})")
        return book

    # --- trading events -----------------------------------------------------------------------

    def record_event(self, event: Mapping[str, Any]) -> bool:
        """Any event of docs/trading-events.md as a dict; ``id`` and ``ts`` default to new/now.

        True when applied, False for a replayed id. Raises ValueError for an invalid event, and
        ``exporter.trading.store.StoreError`` when the state file cannot be written (the event
        was not applied: record it again later).
        """
        if self.tracker is None:
            raise RuntimeError("this monitor has no trading section: pass trading={...} to Monitor()")
        data = dict(event)
        data.setdefault("id", uuid.uuid4().hex)
        with self._lock:
            now = self.clock.time()
            data.setdefault("ts", now)
            parsed = event_from_mapping(data)
            result = self.tracker.ingest([parsed], now)
        if result.store_error is not None:
            from exporter.trading.store import StoreError

            raise StoreError(result.store_error)
        if result.accepted:
            return True
        if result.rejected.get("duplicate"):
            return False
        raise ValueError("; ".join(result.problems) or f"event refused: {result.rejected}")

    def record_trade(self, account: str, symbol: str, side: str, *, quantity: float, entry_price: float,
                     exit_price: float, pnl: float, fees: float = 0.0, **extra: Any) -> bool:
        """A closed trade; ``pnl`` before ``fees``, both in the account currency."""
        return self.record_event({"type": "trade", "account": account, "symbol": symbol, "side": side,
                                  "quantity": quantity, "entry_price": entry_price, "exit_price": exit_price,
                                  "pnl": pnl, "fees": fees, **extra})

    def record_equity(self, account: str, equity: float, **extra: Any) -> bool:
        return self.record_event({"type": "equity", "account": account, "equity": equity, **extra})

    def record_positions(self, account: str, positions: Mapping[str, float], limit: int | None = None,
                         **extra: Any) -> bool:
        """Every open position (signed quantity per symbol) and, optionally, the position limit."""
        return self.record_event({"type": "positions", "account": account, "positions": dict(positions),
                                  "limit": limit, **extra})

    def set_kill_switch(self, account: str, active: bool, reason: str = "", **extra: Any) -> bool:
        return self.record_event({"type": "safety", "account": account, "kill_switch": active,
                                  "reason": reason, **extra})

    def set_circuit_breaker(self, account: str, open: bool, reason: str = "", **extra: Any) -> bool:
        return self.record_event({"type": "safety", "account": account,
                                  "circuit_breaker": "open" if open else "closed", "reason": reason, **extra})

    def record_api_call(self, account: str, endpoint: str, ok: bool, latency: float, **extra: Any) -> bool:
        """One call to the exchange's API (``latency`` in seconds)."""
        return self.record_event({"type": "api_call", "account": account, "endpoint": endpoint, "ok": ok,
                                  "latency": latency, **extra})

    def account(self, name: str) -> Account:
        """The live trading state of one account (read-only use: equity, drawdowns, sharpe(now)...)."""
        if self.tracker is None or name not in self.tracker.accounts:
            raise KeyError(f"unknown account {name!r}")
        return self.tracker.accounts[name]

    # --- exposition ---------------------------------------------------------------------------

    def render(self, exposition: Exposition = Exposition()) -> str:
        """The Prometheus text of everything the monitor knows (what ``/metrics`` serves); OpenMetrics
        or some families only with an ``exporter.exposition.Exposition`` (what a scrape asks for)."""
        with self._lock:
            now = self.clock.time()
            parts = [exposition.render(collector.render(now)) for collector in self._collectors]
            parts.append(exposition.render(self._collectors[0].errors.render()))
            return exposition.finish(parts).decode()

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` (and ``/-/healthy``) from a daemon thread; returns the bound port.

        For asyncio bots, ``app()`` gives the exporter's full aiohttp application instead.
        """
        if self._http is not None:
            return self._http.server_address[1]
        monitor = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                url = urlsplit(self.path)
                if url.path == "/metrics":
                    exposition = negotiate(self.headers.get("Accept"), parse_qs(url.query).get("name[]", ()))
                    body, ctype, code = monitor.render(exposition).encode(), exposition.content_type, 200
                elif self.path == "/-/healthy":
                    body, ctype, code = b"OK", "text/plain", 200
                else:
                    body, ctype, code = b"not found: try /metrics\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a scrape every 15 s is not news

        self._http = ThreadingHTTPServer((host, port), Handler)
        self._http.daemon_threads = True
        # A short poll interval only bounds how long close() waits for the thread to notice.
        threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.1},
                         name="feedwatch-monitor-http", daemon=True).start()
        return self._http.server_address[1]

    def app(self):
        """The exporter's aiohttp app (``/metrics``, status page, JSON API, push API) on this state.

        Start it with ``runner, port = await exporter.web.app.serve(app, "127.0.0.1:9110")``. Use
        it from the event loop thread that also updates the monitor.
        """
        from exporter.web.app import create_app

        return create_app(self.book, self.config, self.clock)

    def close(self) -> None:
        """Stop ``/metrics`` and close the state file."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self.tracker is not None:
            detach(self.config)
            self.tracker = None
            self._collectors = self._collectors[:1]

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["Monitor", "ConfigError"]
