"""The live status page in a real headless Chromium, driven over the DevTools protocol.

The exporter app serves on 127.0.0.1 with a FakeClock; Chromium loads /status, and the tests read
the page's DOM (``Runtime.evaluate``) while the book changes underneath: a symbol going stale, a
feed's connection dropping, and the server restarting (the page must reconnect by itself).

The README screenshot is made by the same machinery (tests/integration/test_trading_view.py, which
also covers the trading panels, incidents and sparklines)::

    .venv/bin/python -m tests.integration.test_trading_view --screenshot docs/images/status-page.png
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter.book import Book
from exporter.clock import FakeClock
from exporter.config import load_data
from exporter.web.app import Settings, create_app, serve
from tests.waiting import async_wait_for, free_port

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Browser:
    """One headless Chromium with one page, spoken to over the DevTools WebSocket."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.profile = tempfile.mkdtemp(prefix="feedwatch-chromium-")
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ids = itertools.count(1)

    async def start(self, width: int = 1360, height: int = 900) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
            f"--window-size={width},{height}", f"--user-data-dir={self.profile}",
            "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        active = Path(self.profile) / "DevToolsActivePort"

        def port() -> int | None:
            lines = active.read_text().split("\n") if active.exists() else []
            return int(lines[0]) if lines and lines[0].strip() else None

        devtools_port = await async_wait_for(port, timeout=30, what="Chromium's DevTools port")
        self.session = aiohttp.ClientSession()

        async def page_target() -> str | None:
            async with self.session.get(f"http://127.0.0.1:{devtools_port}/json/list") as resp:
                targets = await resp.json()
            pages = [t for t in targets if t.get("type") == "page"]
            return pages[0]["webSocketDebuggerUrl"] if pages else None

        url = await async_wait_for(page_target, timeout=30, what="a Chromium page target")
        self.ws = await self.session.ws_connect(url, max_msg_size=0)

    async def call(self, method: str, **params: Any) -> dict:
        assert self.ws is not None
        call_id = next(self.ids)
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        while True:  # events interleave with replies; skip them
            message = await asyncio.wait_for(self.ws.receive(), 30)
            if message.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"DevTools connection ended: {message!r}")
            reply = json.loads(message.data)
            if reply.get("id") == call_id:
                if "error" in reply:
                    raise AssertionError(f"{method} failed: {reply['error']}")
                return reply["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page error: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def screenshot(self, path: Path, full_page: bool = False) -> None:
        """A PNG of the viewport, or of the whole page (``full_page``) at the viewport's width."""
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            size = (await self.call("Page.getLayoutMetrics"))["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        result = await self.call("Page.captureScreenshot", **params)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
async def browser():
    b = Browser()
    try:
        await b.start()
        yield b
    finally:
        await b.close()


def _row_state(symbol: str) -> str:
    return f'document.querySelector(\'tr[data-symbol="{symbol}"]\')?.dataset.state ?? null'


def _legend_count(feed: str, state: str) -> str:
    return (f'document.querySelector(\'article[data-feed="{feed}"] .legend [data-state="{state}"] b\')'
            "?.textContent ?? null")


@pytest.fixture
def book_and_clock(clock: FakeClock):
    config = load_data({"feeds": [{"name": "stocks", "kind": "polygon", "url": "wss://socket.invalid/stocks",
                                   "symbols": ["AAPL", "MSFT", "BRK.A"]}]}, environ={})
    book = Book(config.feeds, clock.time())
    feed = book.feeds["stocks"]
    feed.connected("0", clock.time())
    for symbol, price in (("AAPL", 189.5), ("MSFT", 370.25), ("BRK.A", 545000.0)):
        feed.record(symbol, price, 0, clock.time(), quote=True)
    return config, book, clock


async def test_page_follows_the_book_live(browser: Browser, book_and_clock) -> None:
    config, book, clock = book_and_clock
    feed = book.feeds["stocks"]
    app = create_app(book, config, clock, settings=Settings(stream_interval=0.1))
    runner, port = await serve(app, "127.0.0.1:0")
    try:
        await browser.goto(f"http://127.0.0.1:{port}/status")
        await async_wait_for(lambda: _poll(browser, _row_state("AAPL"), "healthy"), timeout=20,
                             what="AAPL shown healthy")
        assert await browser.evaluate(_legend_count("stocks", "healthy")) == "3"
        assert await browser.evaluate('document.getElementById("live").className') == "on"

        # AAPL and BRK.A go silent past the stale threshold (300 s); MSFT keeps trading.
        clock.advance(400)
        feed.record("MSFT", 371.0, 0, clock.time(), quote=True)
        await async_wait_for(lambda: _poll(browser, _row_state("AAPL"), "stale"), timeout=20,
                             what="AAPL shown stale after the clock moved")
        assert await browser.evaluate(_row_state("MSFT")) == "healthy"
        await async_wait_for(lambda: _poll(browser, _legend_count("stocks", "stale"), "2"), timeout=20,
                             what="the feed's bar counting 2 stale")
        # Staleness text of the stale symbol shows minutes (400 s -> "6m 40s" and ticking).
        text = await browser.evaluate('document.querySelector(\'tr[data-symbol="AAPL"] td.staleness\').textContent')
        assert text.startswith("6m"), text

        # Sortable: a click on "symbol" sorts A-Z, a second click Z-A; the filter narrows the rows.
        order = "Array.from(document.querySelectorAll('#symbols tbody tr')).map(r => r.dataset.symbol).join(',')"
        await browser.evaluate("document.querySelector('th[data-key=symbol]').click()")
        assert await browser.evaluate(order) == "AAPL,BRK.A,MSFT"
        await browser.evaluate("document.querySelector('th[data-key=symbol]').click()")
        assert await browser.evaluate(order) == "MSFT,BRK.A,AAPL"
        await browser.evaluate("const f = document.getElementById('filter'); f.value = 'stale';"
                               "f.dispatchEvent(new Event('input'))")
        await async_wait_for(lambda: _poll(browser, order, "BRK.A,AAPL"), timeout=20, what="the filter applied")

        feed.disconnected("0", "server_closed")
        await async_wait_for(lambda: _poll(browser, 'document.querySelector(\'article[data-feed="stocks"]\')'
                                           "?.dataset.up ?? null", "false"),
                             timeout=20, what="the feed shown down")
    finally:
        await runner.cleanup()


async def test_page_reconnects_after_a_server_restart(browser: Browser, book_and_clock) -> None:
    config, book, clock = book_and_clock
    port = free_port()
    runner, _ = await serve(create_app(book, config, clock, settings=Settings(stream_interval=0.1)),
                            f"127.0.0.1:{port}")
    try:
        await browser.goto(f"http://127.0.0.1:{port}/status")
        await async_wait_for(lambda: _poll(browser, _row_state("AAPL"), "healthy"), timeout=20,
                             what="AAPL shown healthy")
        await runner.cleanup()
        await async_wait_for(lambda: _poll(browser, 'document.getElementById("live").className', "off"),
                             timeout=20, what="the page noticing the stream ended")

        clock.advance(4000)  # beyond critical (1 h) while the page is disconnected
        runner, _ = await serve(create_app(book, config, clock, settings=Settings(stream_interval=0.1)),
                                f"127.0.0.1:{port}")
        await async_wait_for(lambda: _poll(browser, _row_state("AAPL"), "critical"), timeout=30,
                             what="the page reconnecting and showing AAPL critical")
        assert await browser.evaluate('document.getElementById("live").className') == "on"
    finally:
        await runner.cleanup()


async def _poll(browser: Browser, expression: str, expected: str) -> bool:
    return await browser.evaluate(expression) == expected
