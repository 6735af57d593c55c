"""The live trading view in a real headless Chromium: every state, pushed within 1 s, phone and keyboard.

The exporter app serves on 127.0.0.1 with a FakeClock, a trading tracker fed through the real
push API (``POST /api/v1/events``) and an incident journal; Chromium loads /status and the tests
read its DOM (``Runtime.evaluate``). A screenshot of each state is kept under
``.artifacts/statuspage/`` (``$FEEDWATCH_ARTIFACTS`` overrides; gitignored); the README's image
is the ``docs`` one (``python -m tests.integration.test_trading_view --screenshot ...`` makes it).

The push latency is measured, not assumed: the test takes the wall-clock time just before it
sends the kill switch event, and the page stamps the wall-clock time at the animation frame
after its DOM shows the change (``data-painted-at``); both clocks are this machine's. The full
snapshot interval is set to 30 s, so only the push path can meet the 1 s the product promises.
"""

from __future__ import annotations

import json
import os
import time
import types
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter.book import Book
from exporter.clock import FakeClock
from exporter.config import load_data
from exporter.journal.config import JournalConfig
from exporter.journal.journal import Journal
from exporter.journal.sinks import MemorySink
from exporter.trading.api import TRACKER
from exporter.web.app import HISTORY, Settings, create_app, serve
from tests.integration.test_statuspage import Browser, _poll
from tests.waiting import async_wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("FEEDWATCH_ARTIFACTS", REPO / ".artifacts")) / "statuspage"
TOKEN = "view-token"
DAY = 86400.0
START = 1_700_058_600.0  # Wednesday 2023-11-15 14:30 UTC, 09:30 in New York


def view_config() -> Any:
    return load_data({
        "feeds": [{"name": "stocks", "kind": "polygon", "url": "wss://socket.invalid/stocks", "api_key": "k",
                   "symbols": ["AAPL", "MSFT", "NVDA"]},
                  {"name": "bot", "kind": "trading", "url": "ws://127.0.0.1:1/ws/events"}],
        "trading": {"accounts": [{"name": "main", "currency": "USD", "symbols": {"AAPL": "stocks"}}],
                    "limits": {"drawdown_daily": 0.05, "drawdown_weekly": 0.10, "drawdown_total": 0.20,
                               "consecutive_losses": 5, "api_errors_per_minute": 3},
                    "api": {"token": TOKEN}},
    }, environ={})


class View:
    """The app, its book, tracker and journal, and a page on it."""

    def __init__(self, browser: Browser, clock: FakeClock, stream_interval: float = 0.2) -> None:
        self.browser = browser
        self.clock = clock
        self.config = view_config()
        self.book = Book(self.config.feeds, clock.time() - 3600)
        self.journal = Journal(JournalConfig(replica="view", flush_interval=0.05), MemorySink(), clock, self.book)
        self.book.listeners.append(self.journal.on_transition)
        self.book.connection_listeners.append(self.journal.on_connection)
        service = types.SimpleNamespace(journal=self.journal, renderers=())
        self.app = create_app(self.book, self.config, clock, service=service,
                              settings=Settings(stream_interval=stream_interval, history_interval=0.05))
        self.tracker = self.app[TRACKER]
        self.journal.tracker = self.tracker
        self.tracker.listeners.append(self.journal.on_trading)
        self.ids = 0
        self.runner = None
        self.port = 0

    async def start(self) -> None:
        stocks = self.book.feeds["stocks"]
        stocks.connected("0", self.clock.time() - 3000)
        self.book.feeds["bot"].connected("0", self.clock.time() - 3000)
        for symbol, price in (("AAPL", 189.52), ("MSFT", 370.31), ("NVDA", 487.16)):
            for _ in range(3):
                stocks.record(symbol, price, 0, self.clock.time(), quote=True)
        await self.journal.start()
        self.runner, self.port = await serve(self.app, "127.0.0.1:0")
        await self.browser.goto(f"http://127.0.0.1:{self.port}/status")
        await async_wait_for(lambda: _poll(self.browser, "document.body.dataset.snapshots ? 'yes' : 'no'", "yes"),
                             timeout=30, what="the first snapshot shown")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        await self.journal.stop()

    async def send(self, *events: dict[str, Any]) -> None:
        """Events through the real push API, stamped now on the app's clock."""
        body = []
        for event in events:
            self.ids += 1
            body.append({"account": "main", "id": f"ev-{self.ids}", "ts": event.pop("ts", self.clock.time()),
                         **event})
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{self.port}/api/v1/events", json=body,
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                answer = await resp.json()
        assert resp.status == 200 and answer["accepted"] == len(body), answer

    async def text(self, selector: str) -> str | None:
        return await self.browser.evaluate(f"document.querySelector({json.dumps(selector)})?.textContent?.trim() ?? null")

    async def attr(self, selector: str, name: str) -> str | None:
        return await self.browser.evaluate(
            f"document.querySelector({json.dumps(selector)})?.getAttribute({json.dumps(name)}) ?? null")

    async def until(self, selector: str, expected: str, what: str, attr: str | None = None, timeout: float = 20) -> None:
        async def check() -> bool:
            got = await (self.attr(selector, attr) if attr else self.text(selector))
            return got == expected
        await async_wait_for(check, timeout=timeout, what=what)

    async def screenshot(self, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        await self.browser.screenshot(path)
        assert path.stat().st_size > 10_000
        return path


ACCOUNT = '[data-account="main"]'


def history(now: float) -> list[dict[str, Any]]:
    """Five completed days of closes (the Sharpe and desk ratios are defined from the start)."""
    closes = (10_000.0, 10_080.0, 10_020.0, 10_150.0, 10_110.0)
    return [{"type": "equity", "ts": now - (len(closes) - i) * DAY, "equity": e} for i, e in enumerate(closes)]


def healthy_session(now: float) -> list[dict[str, Any]]:
    trade = {"type": "trade", "symbol": "AAPL", "side": "long", "quantity": 1, "entry_price": 100, "exit_price": 101}
    return [
        *history(now),
        {"type": "equity", "equity": 10_200.0},
        {**trade, "pnl": 120.0, "fees": 1.0}, {**trade, "pnl": 60.0, "fees": 1.0},
        {**trade, "pnl": 45.5, "fees": 0.5}, {**trade, "pnl": -80.0, "fees": 1.0},
        {"type": "positions", "positions": {"AAPL": 50, "MSFT": -10}, "limit": 5},
        *({"type": "api_call", "endpoint": "POST /order", "ok": True, "latency": 0.040 + i / 1000} for i in range(20)),
        {"type": "safety", "kill_switch": False, "circuit_breaker": "closed", "reason": "session start"},
    ]


@pytest.fixture
async def browser():
    b = Browser()
    try:
        await b.start()
        yield b
    finally:
        await b.close()


async def test_each_state_of_the_trading_view(browser: Browser) -> None:
    clock = FakeClock(START)
    page = View(browser, clock)
    await page.start()
    try:
        # --- healthy: everything within its limits --------------------------------------------
        await page.send(*healthy_session(clock.time()))
        await page.until(f'{ACCOUNT} [data-figure="win_rate"] .value', "75.0 %", "the session shown")
        assert await page.attr(f'{ACCOUNT} [data-switch="kill_switch"]', "data-state") == "INACTIVE"
        assert await page.text(f'{ACCOUNT} [data-switch="circuit_breaker"] .state') == "CLOSED"
        assert await page.text(f'{ACCOUNT} [data-figure="equity"] .value') == "$10,200.00"
        assert await page.text(f'{ACCOUNT} [data-figure="pnl"] .value') == "+$142.00"   # 120 + 60 + 45.5 - 80, less 3.50 fees
        assert await page.attr(f'{ACCOUNT} [data-figure="pnl"] .value', "class") == "value lv-ok"
        sharpe = await page.text(f'{ACCOUNT} [data-figure="sharpe"] .value')
        assert len(sharpe.split(".")[1]) == 2, sharpe                                   # 2 decimals
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{page.port}/api/v1/trading/main") as resp:
                bot_view = await resp.json()
            async with http.get(f"http://127.0.0.1:{page.port}/api/v1/trading/nope") as resp:
                assert resp.status == 404 and "configured: main" in (await resp.json())["error"]
        assert sharpe == f"{bot_view['sharpe']:.2f}"                                     # the same numbers as JSON
        assert await page.text(f'{ACCOUNT} [data-desk="profit_factor"]') == f"{bot_view['desk']['profit_factor']:.2f}"
        assert await page.text(f'{ACCOUNT} [data-desk="average_loss"]') == "-$81.00"
        positions = f'{ACCOUNT} [data-meter="positions"] [role="meter"]'
        assert (await page.attr(positions, "aria-valuenow"), await page.attr(positions, "aria-valuemax")) == ("2", "5")
        assert await page.text(f'{ACCOUNT} [data-meter="positions"] .text') == "2 / 5"
        assert await page.text(f'{ACCOUNT} [data-figure="latency"] .value') == "59 ms"  # p99 of 40..59 ms
        for meter in ("drawdown_current", "drawdown_daily", "drawdown_weekly", "losing_streak"):
            assert await page.attr(f'{ACCOUNT} [data-meter="{meter}"] .meter', "class") == "meter lv-ok", meter
        # The bot's event stream is the account's, not an empty price feed.
        assert await browser.evaluate('document.querySelector(\'article.feed[data-feed="bot"]\') === null')
        assert await page.text(f'{ACCOUNT} [data-stream="bot"]') == "stream bot up"
        # The last hour: a staleness line per price feed, an equity line per account.
        await async_wait_for(lambda: _poll(browser, f"!!document.querySelector('{ACCOUNT} svg.spark polyline.line') "
                                           "&& !!document.querySelector('article.feed[data-feed=\"stocks\"] svg.spark')",
                                           True), timeout=20, what="sparklines drawn")
        await page.screenshot("1-healthy")

        # --- warning: the day's drawdown at 80 % of its limit -----------------------------------
        clock.advance(60)
        await page.send({"type": "equity", "equity": 9_772.0})                          # 4.2 % below today's peak
        await page.until(f'{ACCOUNT} [data-meter="drawdown_daily"] .meter', "meter lv-warn", "the warning colour",
                         attr="class")
        assert await page.text(f'{ACCOUNT} [data-meter="drawdown_daily"] .text') == "4.20 % / 5 %"
        await page.screenshot("2-warning")

        # --- breach: limits crossed, kill switch and breaker, a feed down, incidents ------------
        clock.advance(60)
        loss = {"type": "trade", "symbol": "AAPL", "side": "short", "quantity": 1, "entry_price": 100,
                "exit_price": 101, "pnl": -20.0, "fees": 0.0}
        await page.send({"type": "equity", "equity": 9_600.0}, *(dict(loss) for _ in range(5)),
                        *({"type": "api_call", "endpoint": "POST /order", "ok": False, "latency": 2.5}
                          for _ in range(4)),
                        {"type": "safety", "kill_switch": True, "reason": "operator stop"},
                        {"type": "safety", "circuit_breaker": "open", "reason": "volatility halt"})
        await page.until(f'{ACCOUNT} [data-switch="kill_switch"] .state', "ACTIVE", "the kill switch shown")
        assert await page.text(f'{ACCOUNT} [data-switch="kill_switch"] .reason') == "operator stop"
        assert await page.text(f'{ACCOUNT} [data-switch="circuit_breaker"] .state') == "OPEN"
        assert await page.text(f'{ACCOUNT} [data-switch="circuit_breaker"] .reason') == "volatility halt"
        for meter in ("drawdown_daily", "losing_streak"):
            assert await page.attr(f'{ACCOUNT} [data-meter="{meter}"] .meter', "class") == "meter lv-breach", meter
        assert await page.attr(f'{ACCOUNT} [data-figure="api"] .value', "class") == "value lv-breach"
        assert "kill switch ACTIVE operator stop" in await page.text("#announce")        # told to screen readers
        page.book.feeds["stocks"].disconnected("0", "heartbeat_timeout", clock.time())
        page.book.feeds["bot"].disconnected("0", "server_closed", clock.time())
        clock.advance(400)                                                               # AAPL, MSFT, NVDA go stale
        page.book.sweep(clock.time())
        await page.until('article.feed[data-feed="stocks"] .why b', "heartbeat_timeout", "the down reason")
        assert "6m 40s ago" in await page.text('article.feed[data-feed="stocks"] .why')  # since when
        assert await page.text(f'{ACCOUNT} [data-stream="bot"]') == "stream bot down"
        kinds = "Array.from(document.querySelectorAll('#incidents tbody tr')).map(r => r.dataset.kind).sort().join()"
        await async_wait_for(lambda: browser.evaluate(kinds), timeout=20, what="incidents listed")
        shown = set((await browser.evaluate(kinds)).split(","))
        assert {"symbol", "feed", "trading"} <= shown, shown
        await page.screenshot("3-breach")
    finally:
        await page.stop()


async def test_a_kill_switch_shows_within_one_second(browser: Browser) -> None:
    clock = FakeClock(START)
    page = View(browser, clock, stream_interval=30.0)   # no full snapshot to lean on: pushes only
    await page.start()
    latencies = []
    try:
        await page.send(*healthy_session(clock.time()))
        await page.until(f'{ACCOUNT} [data-switch="kill_switch"] .state', "INACTIVE", "the panel", timeout=30)
        for n, (active, shown) in enumerate(((True, "ACTIVE"), (False, "INACTIVE"), (True, "ACTIVE"))):
            clock.advance(1)
            sent = time.time()
            await page.send({"type": "safety", "kill_switch": active, "reason": f"drill {n}"})
            selector = f'{ACCOUNT} [data-switch="kill_switch"]'
            await page.until(selector, shown, f"kill switch {shown}", attr="data-state")
            await async_wait_for(lambda: page.attr(selector, "data-painted-at"), timeout=10, what="the paint")
            painted = int(await page.attr(selector, "data-painted-at")) / 1000
            latencies.append(painted - sent)
        print(f"\nkill switch push latency (event sent -> shown in the page): "
              f"{', '.join(f'{x * 1000:.0f} ms' for x in latencies)}")
        assert all(0 < x <= 1.0 for x in latencies), latencies
        assert int(await browser.evaluate("document.body.dataset.pushes || '0'")) >= 3
        await page.screenshot("4-kill-switch-pushed")
    finally:
        await page.stop()


async def test_phone_and_keyboard(browser: Browser) -> None:
    clock = FakeClock(START)
    page = View(browser, clock)
    await page.start()
    try:
        await page.send(*healthy_session(clock.time()))
        await page.until(f'{ACCOUNT} [data-figure="win_rate"] .value', "75.0 %", "the session shown")

        # Keyboard: Tab reaches the account panel, the feed cards and the sort headers; Enter sorts.
        seen = []
        for _ in range(40):
            await browser.call("Input.dispatchKeyEvent", type="keyDown", key="Tab", code="Tab",
                               windowsVirtualKeyCode=9)
            await browser.call("Input.dispatchKeyEvent", type="keyUp", key="Tab", code="Tab", windowsVirtualKeyCode=9)
            focused = await browser.evaluate(
                "(e => e.dataset.account ? 'account' : e.dataset.feed ? 'feed' : e.dataset.key ? 'th:' + e.dataset.key"
                " : e.id || e.tagName)(document.activeElement)")
            seen.append(focused)
            if focused == "th:symbol":
                break
        assert "account" in seen and "feed" in seen and "filter" in seen and seen[-1] == "th:symbol", seen
        await browser.call("Input.dispatchKeyEvent", type="keyDown", key="Enter", code="Enter",
                           windowsVirtualKeyCode=13)
        await browser.call("Input.dispatchKeyEvent", type="keyUp", key="Enter", code="Enter", windowsVirtualKeyCode=13)
        assert await page.attr('th[data-key="symbol"]', "aria-sort") == "ascending"
        order = "Array.from(document.querySelectorAll('#symbols tbody tr')).map(r => r.dataset.symbol).join()"
        assert await browser.evaluate(order) == "AAPL,MSFT,NVDA"
        assert await page.attr(f'{ACCOUNT} [data-meter="drawdown_daily"] [role="meter"]', "aria-label") == "drawdown today"

        # A phone: one column, nothing wider than the screen (tables scroll inside their box).
        await browser.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2,
                           mobile=True)
        await browser.call("Page.reload")
        await async_wait_for(lambda: _poll(browser, "document.body.dataset.snapshots ? 'yes' : 'no'", "yes"),
                             timeout=30, what="the page reloaded on a phone")
        await page.until(f'{ACCOUNT} [data-switch="kill_switch"] .state', "INACTIVE", "the panel on a phone")
        widths = await browser.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], widths
        columns = await browser.evaluate("getComputedStyle(document.getElementById('accounts'))"
                                         ".gridTemplateColumns.split(' ').length")
        assert columns == 1
        await page.screenshot("5-phone")
        await browser.call("Emulation.clearDeviceMetricsOverride")
    finally:
        await page.stop()


# --- the README screenshot ------------------------------------------------------------------------

def scene_config() -> Any:
    stocks = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "XOM", "PMN"]
    crypto = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"]
    return load_data({
        "feeds": [{"name": "stocks", "kind": "polygon", "url": "wss://socket.polygon.io/stocks", "api_key": "k",
                   "symbols": stocks, "market": "us-equities"},
                  {"name": "binance", "kind": "binance", "url": "wss://stream.binance.com:9443", "symbols": crypto},
                  {"name": "bybit", "kind": "bybit", "url": "wss://stream.bybit.com/v5/public/spot",
                   "symbols": ["BTCUSDT", "ETHUSDT"]},
                  {"name": "bot", "kind": "trading", "url": "ws://10.0.0.5:8000/ws/events"}],
        "trading": {"accounts": [{"name": "crypto-main", "currency": "USDT", "symbols": {"BTCUSDT": "binance"}},
                                 {"name": "stocks-desk", "currency": "USD", "symbols": {"AAPL": "stocks"}}],
                    "limits": {"consecutive_losses": 8}, "api": {"token": TOKEN}},
    }, environ={})


async def play_scene(browser: Browser, clock: FakeClock) -> View:
    """An hour of a plausible morning, played through the real book, tracker, journal and history."""
    import random

    rng = random.Random(12)
    page = View.__new__(View)
    page.browser, page.clock, page.config, page.ids = browser, clock, scene_config(), 0
    page.book = Book(page.config.feeds, clock.time() - 7200)
    page.journal = Journal(JournalConfig(replica="demo", flush_interval=0.05), MemorySink(), clock, page.book)
    page.book.listeners.append(page.journal.on_transition)
    page.book.connection_listeners.append(page.journal.on_connection)
    page.app = create_app(page.book, page.config, clock,
                          service=types.SimpleNamespace(journal=page.journal, renderers=()),
                          settings=Settings(stream_interval=0.5, history_interval=10.0))
    page.tracker = page.app[TRACKER]
    page.journal.tracker = page.tracker
    page.tracker.listeners.append(page.journal.on_trading)
    await page.journal.start()
    history = page.app[HISTORY]
    prices = {"AAPL": 189.5, "MSFT": 370.3, "NVDA": 487.2, "AMZN": 146.1, "GOOGL": 135.4, "META": 334.9,
              "TSLA": 236.1, "JPM": 153.0, "XOM": 102.8, "PMN": 0.341, "BTCUSDT": 37312.4, "ETHUSDT": 2051.4,
              "SOLUSDT": 58.9, "BNBUSDT": 248.6, "XRPUSDT": 0.612}
    for feed in page.book.feeds.values():
        for n in range(2 if feed.name == "binance" else 1):
            feed.connected(str(n), clock.time() - 3700)
    equity = {"crypto-main": 25_000.0, "stocks-desk": 100_000.0}
    trade = {"type": "trade", "side": "long", "quantity": 1, "entry_price": 100, "exit_price": 101}
    for name, start in equity.items():
        page.tracker.ingest_json(json.dumps([
            {"type": "equity", "account": name, "id": f"{name}-h{d}", "ts": clock.time() - 3600 - d * DAY,
             "equity": start * (1 + rng.gauss(0.002, 0.01) * (5 - d))} for d in range(5, 0, -1)]), clock.time() - 3600)
    clock.advance(-3600)
    n = 0
    for step in range(360):                   # one sample every 10 s over the last hour
        clock.advance(10)
        now = clock.time()
        for feed in page.book.feeds.values():
            if feed.config.kind == "trading":
                continue
            for symbol in feed.symbols:
                silent = (symbol == "XOM" and step > 30) or (symbol == "PMN" and step > 300) or \
                         (symbol == "TSLA" and 200 < step < 260) or (feed.name == "bybit" and step > 340)
                if not silent:
                    prices[symbol] *= 1 + rng.gauss(0, 0.0004)
                    feed.record(symbol, prices[symbol], 0, now - rng.uniform(0, 2), quote=True)
        if step == 120:
            page.book.feeds["binance"].disconnected("1", "heartbeat_timeout", now)
        if step == 123:
            page.book.feeds["binance"].connected("1", now)
        if step == 345:
            page.book.feeds["bybit"].disconnected("0", "network_error", now)
        page.book.sweep(now)
        events = []
        for name in equity:
            drift = -0.0009 if name == "stocks-desk" and step > 240 else 0.0002
            equity[name] *= 1 + rng.gauss(drift, 0.0015)
            n += 1
            events.append({"type": "equity", "account": name, "id": f"{name}-{n}", "ts": now, "equity": round(equity[name], 2)})
            if step % 9 == 0:
                n += 1
                events.append({**trade, "account": name, "id": f"{name}-{n}", "ts": now,
                               "symbol": "BTCUSDT" if name == "crypto-main" else "AAPL",
                               "pnl": round(rng.gauss(18 if name == "crypto-main" else -8, 60), 2), "fees": 0.8})
            n += 1
            events.append({"type": "api_call", "account": name, "id": f"{name}-{n}", "ts": now,
                           "endpoint": "POST /order", "ok": rng.random() > 0.02, "latency": rng.uniform(0.02, 0.3)})
        if step == 330:
            n += 1
            events.append({"type": "safety", "account": "stocks-desk", "id": f"s-{n}", "ts": now,
                           "circuit_breaker": "open", "reason": "AAPL moved 4 % in 2 minutes"})
        if step == 0:
            for name in equity:
                n += 1
                events.append({"type": "positions", "account": name, "id": f"p-{n}", "ts": now, "limit": 6,
                               "positions": {"BTCUSDT": 0.8, "ETHUSDT": 5.0} if name == "crypto-main"
                               else {"AAPL": 200, "MSFT": -50, "NVDA": 40, "JPM": 100}})
                n += 1
                events.append({"type": "safety", "account": name, "id": f"s-{n}", "ts": now, "kill_switch": False,
                               "circuit_breaker": "closed", "reason": "session start"})
        page.tracker.ingest_json(json.dumps(events), now)
        history.sample(now)
    page.runner, page.port = await serve(page.app, "127.0.0.1:0")
    return page


async def make_screenshot(path: Path) -> None:
    clock = FakeClock(START + 3600)  # 10:30 in New York: the stocks have traded for an hour
    browser = Browser()
    page = None
    try:
        await browser.start(width=1280, height=1000)
        page = await play_scene(browser, clock)
        await browser.goto(f"http://127.0.0.1:{page.port}/status")
        await page.until('[data-account="stocks-desk"] [data-switch="circuit_breaker"] .state', "OPEN", "the scene")
        await async_wait_for(lambda: _poll(browser, "document.querySelectorAll('#incidents tbody tr').length > 2",
                                           True), timeout=20, what="incidents listed")
        await browser.screenshot(path, full_page=True)
    finally:
        if page is not None:
            await page.stop()
        await browser.close()


async def test_the_docs_screenshot_is_taken_from_the_live_page() -> None:
    path = ARTIFACTS / "docs-status-page.png"
    await make_screenshot(path)
    assert path.stat().st_size > 50_000


if __name__ == "__main__":
    import argparse
    import asyncio

    parser = argparse.ArgumentParser(description="Take the README's status page screenshot.")
    parser.add_argument("--screenshot", type=Path, required=True, help="PNG file to write")
    asyncio.run(make_screenshot(parser.parse_args().screenshot))
