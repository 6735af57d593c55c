"""POST / DELETE /api/v1/watchlist/{feed}/{symbol} over real sockets: a real simulator, the real
Service and the real HTTP app. Bearer and HMAC (over method, path and body), refused without a
configured secret, replays refused, 400 for a wildcard, 409 past max_symbols, every change
logged with who signed it and counted."""

from __future__ import annotations

import contextlib
import json
import logging

import aiohttp

from exporter.web.app import create_app, serve
from exporter.web.auth import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from exporter.web.watchlist_api import signed_message
from tests.integration.feedharness import simulated_feed

TOKEN = "watchlist-token-for-tests"
SECRET = "watchlist-hmac-for-tests"


@contextlib.asynccontextmanager
async def exporter(clock, api=None, **feed):
    top = {"watchlist": {"ttl": "60s", "scan_interval": "50ms", **({"api": api} if api is not None else {})}}
    async with simulated_feed(clock, sim_symbols=("AAPL", "MSFT", "NVDA", "AMD"), top=top, **feed) as h:
        app = create_app(h.service.book, h.service.config, clock, service=h.service)
        runner, port = await serve(app, "127.0.0.1:0")
        try:
            await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscriptions acknowledged")
            yield h, f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


async def call(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url + path, data=body, headers=headers or {}) as response:
            return response.status, await response.json()


def bearer() -> dict:
    return {"Authorization": f"Bearer {TOKEN}"}


def signed(method: str, path: str, body: bytes, stamp: float) -> dict:
    text = str(int(stamp))
    return {TIMESTAMP_HEADER: text, SIGNATURE_HEADER: sign(SECRET, text, signed_message(method, path, body))}


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/metrics") as response:
            return await response.text()


async def test_bearer_adds_and_removes_a_symbol_logged_with_who_signed(clock, caplog):
    caplog.set_level(logging.INFO, logger="exporter.feeds.watchlist")
    async with exporter(clock, {"token": TOKEN, "hmac_secret": SECRET}) as (h, url):
        status, reply = await call(url, "POST", "/api/v1/watchlist/stocks/NVDA", b'{"ttl": "2h"}', bearer())
        assert status == 200, reply
        assert reply["watching"] and reply["expires"] == clock.time() + 7200
        await h.wait(lambda: h.acked("NVDA"), "NVDA subscribed on the live connection")
        await h.flowing("NVDA")
        assert any("watchlist API: watching NVDA on stocks for 2h (signed with token, from 127.0.0.1)"
                   in r.getMessage() for r in caplog.records)

        clock.advance(600)                                   # still inside its 2h
        await h.service.watchlist.scan()
        assert "NVDA" in h.feed.symbols

        body = b""
        path = "/api/v1/watchlist/stocks/NVDA"
        status, reply = await call(url, "DELETE", path, body, signed("DELETE", path, body, clock.time()))
        assert status == 200 and not reply["watching"], reply
        assert "NVDA" not in h.feed.symbols
        assert any("stopped watching NVDA on stocks (signed with hmac" in r.getMessage() for r in caplog.records)
        text = await scrape(url)
        assert 'feedwatch_watchlist_api_changes_total{action="add",credential="token"} 1\n' in text
        assert 'feedwatch_watchlist_api_changes_total{action="remove",credential="hmac"} 1\n' in text
        assert h.feed.connects == 1


async def test_the_default_ttl_expires_an_api_symbol(clock):
    async with exporter(clock, {"token": TOKEN}) as (h, url):
        assert (await call(url, "POST", "/api/v1/watchlist/stocks/AMD", b"", bearer()))[0] == 200
        await h.wait(lambda: h.acked("AMD"), "AMD subscribed")
        clock.advance(61)                                    # watchlist.ttl is 60s
        await h.wait(lambda: "AMD" not in h.feed.symbols, "AMD dropped when its ttl ran out")


async def test_refused_without_a_configured_secret(clock):
    async with exporter(clock) as (h, url):
        status, reply = await call(url, "POST", "/api/v1/watchlist/stocks/NVDA", b"", bearer())
        assert status == 401
        assert "set watchlist.api.token or watchlist.api.hmac_secret" in reply["error"]
        assert "NVDA" not in h.feed.symbols
        assert 'feedwatch_http_requests_rejected_total{reason="unauthorized"} 1.0' in await scrape(url)


async def test_wrong_credentials_replays_and_moved_signatures_are_refused(clock):
    async with exporter(clock, {"token": TOKEN, "hmac_secret": SECRET}) as (h, url):
        path = "/api/v1/watchlist/stocks/NVDA"
        assert (await call(url, "POST", path, b"", {"Authorization": "Bearer nope"}))[0] == 401
        headers = signed("POST", path, b"", clock.time())
        # The same signature on another symbol's path: the signature covers the path.
        status, reply = await call(url, "POST", "/api/v1/watchlist/stocks/AMD", b"", headers)
        assert (status, reply["error"]) == (401, "invalid signature")
        assert (await call(url, "POST", path, b"", headers))[0] == 200
        status, reply = await call(url, "POST", path, b"", headers)            # replayed
        assert status == 401 and "already used" in reply["error"]
        old = signed("POST", path, b"", clock.time() - 3600)
        status, reply = await call(url, "POST", path, b"", old)
        assert status == 401 and "from the server clock" in reply["error"]
        assert "AMD" not in h.feed.symbols


async def test_wildcards_unknown_feeds_caps_and_configured_symbols(clock):
    async with exporter(clock, {"token": TOKEN}, max_symbols=3) as (h, url):
        status, reply = await call(url, "POST", "/api/v1/watchlist/stocks/*", b"", bearer())
        assert status == 400 and "looks like a wildcard" in reply["error"] and "list every symbol" in reply["error"]
        # Counted like any refused symbol (feedwatch_feed_symbols_refused_total, FeedSymbolsRefused).
        assert h.feed.refused["invalid_name"] == 1
        status, reply = await call(url, "POST", "/api/v1/watchlist/nosuch/NVDA", b"", bearer())
        assert status == 404 and "no feed named 'nosuch'" in reply["error"]
        status, reply = await call(url, "POST", "/api/v1/watchlist/stocks/NVDA", b'{"ttl": "soon"}', bearer())
        assert status == 400 and reply["error"].startswith("ttl: invalid duration")
        status, reply = await call(url, "POST", "/api/v1/watchlist/stocks/NVDA", b'{"tll": "1h"}', bearer())
        assert status == 400 and "unknown key(s) tll" in reply["error"]
        assert (await call(url, "POST", "/api/v1/watchlist/stocks/NVDA", b"", bearer()))[0] == 200
        status, reply = await call(url, "POST", "/api/v1/watchlist/stocks/AMD", b"", bearer())
        assert status == 409 and "max_symbols (3)" in reply["error"]
        assert h.feed.refused["feed_limit"] == 1
        status, reply = await call(url, "DELETE", "/api/v1/watchlist/stocks/AAPL", b"", bearer())
        assert status == 409 and "configured symbols" in reply["error"]
        status, reply = await call(url, "DELETE", "/api/v1/watchlist/stocks/AMD", b"", bearer())
        assert status == 404
        assert set(h.feed.symbols) == {"AAPL", "MSFT", "NVDA"}
        assert h.service.book.watchlist_changes[("add", "token")] == 1
