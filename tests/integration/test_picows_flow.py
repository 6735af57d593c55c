"""The picows transport's flow control (exporter/feeds/transport_picows.py): picows reads its
socket whenever it is readable, so a reader that falls behind must stop it, the way aiohttp's
queue stops aiohttp; otherwise a firehose would be read on into memory without bound and TCP
would never hold the venue back. A real socket on 127.0.0.1: the venue writes 16 MB of trades
at once and the client does not read them; then it reads every one."""

from __future__ import annotations

import asyncio

from bench.wsserver import accept, text_frame
from exporter.feeds import transport_picows
from exporter.feeds.transport import fionread
from tests.integration.test_link_transports import trade
from tests.waiting import async_wait_for

COUNT = 80_000   # ~200 bytes each


async def test_a_reader_that_falls_behind_stops_the_socket_and_loses_nothing() -> None:
    trades = [trade(i) for i in range(1, COUNT + 1)]
    burst = b"".join(text_frame(t) for t in trades)

    async def venue(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept(reader, writer)
        writer.write(burst)
        try:
            while await reader.read(65536):   # until the client goes
                pass
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(venue, "127.0.0.1", 0)
    ws = await transport_picows.connect(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", 5.0, None)
    listener = ws.listener
    sock = ws.transport.underlying_transport.get_extra_info("socket")
    try:
        # Not read: once QUEUE_HIGH bytes of frames wait, the socket is no longer read, and the
        # rest stays in the kernel (and in the venue's buffer): bounded, not 16 MB in our memory.
        await async_wait_for(lambda: listener.paused and fionread(sock) > 0, timeout=30,
                             what="the socket paused with bytes left in the kernel")
        # (QUEUE_HIGH plus what one socket read had brought when it was crossed.)
        assert listener.queued <= 2 * transport_picows.QUEUE_HIGH, listener.queued
        # Read: every frame, in order, and the socket read again.
        got: list[bytes] = []
        while len(got) < COUNT:
            batch, event = await asyncio.wait_for(ws.read(), 10)
            assert event is None, event
            got.extend(batch)
        assert got == trades
        assert not listener.paused and listener.queued == 0
    finally:
        await ws.close()
        server.close()
        await server.wait_closed()
