"""A TCP proxy on 127.0.0.1 that can black-hole its connections: the half-open socket, on demand.

    proxy = BlackHoleProxy("127.0.0.1", sim.port)
    await proxy.start()                 # proxy.port: point the exporter at ws://127.0.0.1:<port>
    await proxy.black_hole()            # every open connection stops forwarding, both ways
    await proxy.stop()

A black-holed connection is what a dead NAT entry, a pulled cable or a peer that lost power
looks like: nothing is closed (no FIN, no RST, no close frame), bytes simply stop arriving in
either direction and the exporter's writes vanish. Connections opened afterwards are forwarded
normally, so a client that gives the dead one up can reconnect through the same proxy.
"""

from __future__ import annotations

import asyncio
import contextlib


class _Pair:
    """One client connection and its upstream connection, with their two pumps."""

    def __init__(self, client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.client = client
        self.upstream = upstream
        self.pumps = [asyncio.create_task(self._pump(client[0], upstream[1])),
                      asyncio.create_task(self._pump(upstream[0], client[1]))]
        self.forwarded = 0
        self.client_closed = False   # the client closed its end (seen while black-holed)
        self._drain: asyncio.Task[None] | None = None

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                self.forwarded += len(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        with contextlib.suppress(Exception):  # one side ended: end the other (a normal close)
            writer.close()

    async def stop_forwarding(self) -> None:
        """Forward nothing more, either way; keep both sockets open. What the client sends is
        read and dropped, only to notice when it closes its end (``client_closed``)."""
        for pump in self.pumps:
            pump.cancel()
        await asyncio.gather(*self.pumps, return_exceptions=True)
        if self._drain is None:
            self._drain = asyncio.create_task(self._swallow(self.client[0]))

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        try:
            while await reader.read(65536):
                pass
        except (ConnectionError, OSError):
            pass
        self.client_closed = True

    async def close(self) -> None:
        await self.stop_forwarding()
        if self._drain is not None:
            self._drain.cancel()
            await asyncio.gather(self._drain, return_exceptions=True)
        for _, writer in (self.client, self.upstream):
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class BlackHoleProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.pairs: list[_Pair] = []
        self.holed: list[_Pair] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.pairs.append(_Pair((reader, writer), upstream))

    async def black_hole(self) -> int:
        """Every connection open now stops forwarding both ways, without closing; returns how many."""
        holed = [p for p in self.pairs if p not in self.holed]
        self.holed.extend(holed)
        await asyncio.gather(*(pair.stop_forwarding() for pair in holed))
        return len(holed)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await asyncio.gather(*(pair.close() for pair in self.pairs), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
