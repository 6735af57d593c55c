"""What each transport (exporter/feeds/transport.py) must carry for the link, over real sockets on
127.0.0.1 against a hand-written venue that sends exactly the frames a case needs: a message in
fragments with a ping between them, the venue's own close code and words, a frame that breaks the
protocol, TLS with a throwaway CA, the receive backlog, and a refused handshake's HTTP status. Each case runs over aiohttp and picows
and must come out the same."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import socket
import ssl
import struct
import threading
from pathlib import Path
from typing import Awaitable, Callable

import pytest

from bench.wsserver import accept, text_frame
from exporter.book import Book
from exporter.clock import SystemClock
from exporter.config import load_data
from exporter.feeds.runner import FeedRunner
from tests.integration.feedharness import TRANSPORTS
from tests.tlsca import CA
from tests.waiting import async_wait_for

pytestmark = pytest.mark.parametrize("transport", TRANSPORTS)

SYMBOL = "BTCUSDT"


def trade(trade_id: int) -> bytes:
    return (b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1700000000001,"s":"BTCUSDT","t":%d,'
            b'"p":"100.5","q":"1","T":1700000000000,"m":true,"M":true}}' % trade_id)


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """An unmasked server frame (payloads under 126 bytes or up to 64 KiB)."""
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        return bytes((first, len(payload))) + payload
    return bytes((first, 126)) + struct.pack("!H", len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One masked client frame: (opcode, payload)."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", await reader.readexactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4)
    data = await reader.readexactly(length)
    return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


Venue = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class Server:
    """A WebSocket venue running ``venue(reader, writer, connection_number)`` per connection,
    recording the client's frames (``received``: opcode, payload) from its reader helper."""

    def __init__(self, venue: Venue, tls=None) -> None:
        self.venue = venue
        self.tls = tls
        self.connections = 0
        self.received: list[tuple[int, bytes]] = []
        self.server: asyncio.AbstractServer | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await accept(reader, writer)
            await self.venue(reader, writer, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def drain_client(self, reader: asyncio.StreamReader) -> None:
        """Read the client's frames into ``received`` until it goes."""
        try:
            while True:
                self.received.append(await read_frame(reader))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass

    async def __aenter__(self) -> "Server":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def url(self, scheme: str = "ws") -> str:
        assert self.server is not None
        return f"{scheme}://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


async def running(url: str, transport: str, **extra):
    config = load_data({"feeds": [{"name": "venue", "kind": "binance", "url": url, "symbols": [SYMBOL],
                                   "streams": ["trade"], "transport": transport, "ping_interval": 0,
                                   "heartbeat_timeout": "1h", "connect_timeout": "5s",
                                   "reconnect": {"initial_delay": "50ms", "max_delay": "200ms"}, **extra}]})
    feed = Book(config.feeds, 1_700_000_000.0).feed("venue")
    runner = FeedRunner(config.feeds[0], feed, SystemClock())
    await runner.start()
    return runner, feed


async def test_a_fragmented_message_is_one_frame_and_a_ping_between_its_fragments_is_answered(transport):
    whole = trade(1)

    async def venue(reader, writer, number):
        drain = asyncio.create_task(server.drain_client(reader))
        writer.write(frame(0x1, whole[:40], fin=False) + frame(0x9, b"venue-ping")
                     + frame(0x0, whole[40:90], fin=False) + frame(0x0, whole[90:]) + text_frame(trade(2)))
        await drain

    async with Server(venue) as server:
        runner, feed = await running(server.url(), transport)
        try:
            await async_wait_for(lambda: feed.symbols[SYMBOL].updates == 2 and (0xA, b"venue-ping") in server.received,
                                 what="two trades and the pong")
            assert feed.messages["trade"] == 2 and feed.bytes == len(whole) + len(trade(2))
            assert feed.messages["heartbeat"] == 1 and sum(feed.errors.values()) == 0
        finally:
            await runner.stop()


async def test_the_venues_close_code_and_words_are_the_disconnect_reason_and_logged(transport, caplog):
    caplog.set_level(logging.INFO, logger="exporter.feeds.runner")

    async def venue(reader, writer, number):
        drain = asyncio.create_task(server.drain_client(reader))
        writer.write(text_frame(trade(number)) + frame(0x8, struct.pack("!H", 4001) + b"maintenance, bye"))
        await drain

    async with Server(venue) as server:
        runner, feed = await running(server.url(), transport)
        try:
            await async_wait_for(lambda: feed.disconnects["server_closed"] >= 2, what="two server closes")
            lines = [r.getMessage() for r in caplog.records if "reconnecting in" in r.getMessage()]
            assert lines and all("(server_closed: close code 4001 'maintenance, bye'; attempt" in line
                                 for line in lines), lines
            # Each close frame answered with one of ours (RFC 6455 5.5.1; aiohttp answers 1000,
            # picows echoes the code).
            assert sum(op == 0x8 for op, _ in server.received) >= 2, server.received
            assert sum(feed.disconnects.values()) == feed.disconnects["server_closed"]
        finally:
            await runner.stop()


async def test_a_frame_that_breaks_the_protocol_is_a_protocol_error(transport):
    async def venue(reader, writer, number):
        drain = asyncio.create_task(server.drain_client(reader))
        writer.write(text_frame(trade(number)) + frame(0x3, b"reserved opcode"))
        await drain

    async with Server(venue) as server:
        runner, feed = await running(server.url(), transport)
        try:
            await async_wait_for(lambda: feed.disconnects["protocol_error"] >= 2, what="two protocol errors")
            assert feed.messages["trade"] >= 2   # the frame before it counted
            assert sum(feed.disconnects.values()) == feed.disconnects["protocol_error"]
        finally:
            await runner.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> tuple[CA, object]:
    ca = CA(tmp_path_factory.mktemp("venue-ca"))
    return ca, ca.issue("venue", ["IP:127.0.0.1"])


async def test_wss_with_the_ca_from_ssl_cert_file_and_refused_without(transport, pki, monkeypatch, caplog):
    ca, leaf = pki
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf.cert, leaf.key)

    async def venue(reader, writer, number):
        drain = asyncio.create_task(server.drain_client(reader))
        writer.write(text_frame(trade(number)))
        await drain

    async with Server(venue, tls=context) as server:
        # Trusted through OpenSSL's SSL_CERT_FILE, read when the runner makes its TLS context.
        monkeypatch.setenv("SSL_CERT_FILE", str(ca.cert))
        runner, feed = await running(server.url("wss"), transport)
        try:
            await async_wait_for(lambda: feed.messages["trade"] == 1, what="a trade over TLS")
            assert feed.connects == 1 and sum(feed.errors.values()) == 0
        finally:
            await runner.stop()

        # Not trusted: the connect fails on the certificate, counted, and not retried soon (fatal).
        monkeypatch.delenv("SSL_CERT_FILE")
        caplog.set_level(logging.INFO, logger="exporter.feeds.runner")
        runner, feed = await running(server.url("wss"), transport)
        try:
            await async_wait_for(lambda: feed.errors["connect"] >= 1 and any(
                "retrying soon will not help" in r.getMessage() for r in caplog.records), what="a refused certificate")
            assert feed.connects == 0 and feed.messages["trade"] == 0
            assert any("certificate verify failed" in r.getMessage() for r in caplog.records)
        finally:
            await runner.stop()


async def test_the_receive_backlog_counts_what_waits_in_the_kernel(transport):
    """The sweep's ``receive_backlog``: bytes that arrived and wait for the reader. The venue (a
    thread, so it writes while this event loop is held) sends 64 KiB; the loop, held, has not
    read them: the kernel holds them, and the link says so. Read, it says nothing waits."""
    trades = [trade(i) for i in range(1, 401)]
    payload = b"".join(text_frame(t) for t in trades)
    listener = socket.create_server(("127.0.0.1", 0))
    sent = threading.Event()
    go = threading.Event()

    def venue() -> None:
        conn, _ = listener.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key"))
            digest = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + digest + b"\r\n\r\n")
            go.wait(30)
            conn.sendall(payload)
            sent.set()
            while conn.recv(65536):   # until the client goes
                pass

    thread = threading.Thread(target=venue, daemon=True)
    thread.start()
    runner, feed = await running(f"ws://127.0.0.1:{listener.getsockname()[1]}", transport)
    try:
        await async_wait_for(lambda: feed.connects == 1, what="connected")
        link = runner.shards["0"].link
        assert link is not None and runner.receive_backlog() == 0
        go.set()
        assert sent.wait(30)           # the loop is held here: nothing has read the bytes yet
        backlog = runner.receive_backlog()
        assert 0 < backlog <= len(payload), backlog
        await async_wait_for(lambda: feed.messages["trade"] == 400 and runner.receive_backlog() == 0,
                             what="read, nothing waits")
        assert feed.bytes == sum(map(len, trades))   # every frame's payload, headers parsed off
    finally:
        await runner.stop()
        listener.close()
        thread.join(10)


async def test_a_refused_handshake_status_is_fatal_and_a_5xx_is_retried(transport, caplog):
    """The venue answers the upgrade with an HTTP status: 401 (a wrong key, a wrong URL) waits the
    capped delay every time (runner.classify), 503 the growing backoff; either way the status is in
    the log line."""
    caplog.set_level(logging.INFO, logger="exporter.feeds.runner")
    status = {"code": b"401 Unauthorized"}

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 " + status["code"] + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        for code, verdict in ((b"401 Unauthorized", "retrying soon will not help"), (b"503 Service Unavailable", "reconnecting in")):
            status["code"] = code
            caplog.clear()
            runner, feed = await running(url, transport)
            try:
                await async_wait_for(lambda: any(verdict in r.getMessage() for r in caplog.records),
                                     what=f"{code.decode()}: {verdict}")
                line = next(r.getMessage() for r in caplog.records if verdict in r.getMessage())
                assert code[:3].decode() in line, line
                assert feed.connects == 0 and feed.errors["connect"] >= 1
            finally:
                await runner.stop()
    finally:
        server.close()
