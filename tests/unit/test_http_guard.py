"""The connection guard on a real socket: slowloris headers cut, idle keep-alive closed, the
connection cap evicting half-open clients so a scrape still gets through, 503 when all are busy.

The large floods (1 MiB bodies, 1,100 half-open connections against a process whose open files
limit is 1,024) run against ``feedwatch run`` in tests/integration/test_http_floods.py.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from exporter.book import Book
from exporter.config import load_data
from exporter.web.app import CONNECTION_GUARD, create_app, serve
from tests.waiting import async_wait_for


TOKEN = "guard-test-token"
GUARDS: dict = {}  # port -> the app's connection guard


def make_config(**http):
    return load_data({"listen": "127.0.0.1:0", "http": http, "feeds": [
        {"name": "stocks", "kind": "polygon", "url": "wss://stocks.invalid", "symbols": ["AAPL"]}],
        "trading": {"accounts": [{"name": "main"}], "api": {"token": TOKEN}}}, {})


@pytest.fixture
async def start(clock):
    runners = []

    async def start(**http) -> int:
        config = make_config(**http)
        app = create_app(Book(config.feeds, clock.time()), config, clock)
        runner, port = await serve(app, "127.0.0.1:0")
        runners.append(runner)
        GUARDS[port] = app[CONNECTION_GUARD]
        return port

    yield start
    for runner in runners:
        await runner.cleanup()


async def metrics(port: int, timeout: float = 10.0) -> str:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            return await response.text()


def rejected(text: str, reason: str) -> float:
    return float(text.split(f'feedwatch_http_requests_rejected_total{{reason="{reason}"}} ')[1].split()[0])


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    data = b""
    try:
        while chunk := await reader.read(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


async def test_slowloris_headers_are_cut_after_header_timeout(start):
    port = await start(header_timeout="500ms")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    closed = asyncio.create_task(read_until_closed(reader))
    # A header line every 100 ms for up to 60 s: a server without a deadline waits it out.
    for i in range(600):
        if closed.done():
            break
        try:
            writer.write(f"X-Slow-{i}: y\r\n".encode())
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.sleep(0.1)
    assert closed.done(), "the server kept a connection whose headers never finished"
    assert (await closed).startswith(b"HTTP/1.1 408 ")
    writer.close()
    assert 'feedwatch_http_requests_rejected_total{reason="header_timeout"} 1.0' in await metrics(port)


async def test_a_silent_connection_and_an_idle_keepalive_are_closed(start):
    port = await start(header_timeout="300ms", idle_timeout="300ms")
    silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
    assert (await asyncio.wait_for(read_until_closed(silent_reader), 20)).startswith(b"HTTP/1.1 408 ")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await asyncio.wait_for(read_until_closed(reader), 20)  # served, then closed when idle
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"OK")
    for w in (silent, writer):
        w.close()


async def test_half_open_clients_are_evicted_so_a_scrape_gets_through(start):
    port = await start(max_connections=8, header_timeout="1m")
    half_open = []
    for _ in range(30):  # far more than the cap, each stuck in its headers
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        half_open.append((reader, writer))
    text = await metrics(port)
    assert "feedwatch_feed_up" in text
    assert "feedwatch_http_max_connections 8.0" in text
    evicted = [r for r, _ in half_open[:10]]
    # The oldest were closed to make room; the most recent ones are still waiting.
    await async_wait_for(lambda: all(r.at_eof() or r.exception() for r in evicted), what="oldest evicted")
    assert rejected(text, "connection_limit") >= 22
    for _, writer in half_open:
        writer.close()


async def test_when_every_connection_is_busy_a_new_one_gets_503(start):
    port = await start(max_connections=8)
    busy = []
    for _ in range(2):  # status-page streams: active for as long as they are open, a quarter at most
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).startswith(b"HTTP/1.1 200 ")
        busy.append(writer)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).startswith(b"HTTP/1.1 503 ")
    writer.close()
    for _ in range(6):  # authenticated pushes whose bodies are on their way (http.body_timeout: 1m)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                     "Content-Length: 100\r\n\r\n[".encode())
        busy.append(writer)
    await async_wait_for(lambda: _all_active(port), what="8 busy connections")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await asyncio.wait_for(read_until_closed(reader), 10)
    assert answer.startswith(b"HTTP/1.1 503 ")
    writer.close()
    busy.pop().close()
    text = await async_wait_for(lambda: _scrape_or_none(port), what="a slot after a push gave up")
    assert rejected(text, "connection_limit") >= 2  # the stream and the scrape, and any try before the slot was free
    for w in busy:
        w.close()


def _all_active(port: int) -> bool:
    return GUARDS[port].phases() == {"waiting": 0, "active": 8, "idle": 0}


async def _scrape_or_none(port: int) -> str | None:
    try:
        return await metrics(port, timeout=2)
    except (aiohttp.ClientError, AssertionError, asyncio.TimeoutError):
        return None


async def test_keepalive_scrapes_share_one_connection(start):
    port = await start(idle_timeout="1m")
    async with aiohttp.ClientSession() as session:
        for _ in range(5):
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200
                text = await response.text()
    assert "feedwatch_http_connections 1.0" in text
