"""The aiohttp transport (``transport: aiohttp``, the default): ``transport.Transport`` on aiohttp's
WebSocket client, opened on the feed runner's ``ClientSession``.

aiohttp parses every frame of a socket read into its reader queue before handing the first one
over, and ``receive()`` returns queued frames without yielding to the event loop: a batch is the
first frame after a wait plus whatever is queued behind it (the queue's length is a private
attribute, ``ws._reader._buffer``, looked up once per socket, defensively: if aiohttp ever renames
it, every frame is a batch of its own, still exact). Pings and pongs are ours, not aiohttp's
(``autoping=False``): they are heartbeats (``link.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
from typing import Any, Sequence

import aiohttp
from aiohttp import WSCloseCode, WSMsgType

from exporter.feeds.transport import CLOSE_OK, CLOSE_TIMEOUT, MAX_FRAME, ConnectFailed, Event, fionread

# Hand frames over as bytes where aiohttp can (3.13+): msgspec decodes bytes directly, and
# len() is then the byte count the bytes counter promises.
_NO_DECODE = {"decode_text": False} if "decode_text" in inspect.signature(
    aiohttp.ClientSession.ws_connect).parameters else {}
_DATA = (WSMsgType.TEXT, WSMsgType.BINARY)


def _queue_of(ws: aiohttp.ClientWebSocketResponse) -> Any:
    """aiohttp's deque of parsed frames not yet handed over, for its length only (None if renamed)."""
    buffer = getattr(getattr(ws, "_reader", None), "_buffer", None)
    try:
        len(buffer)  # type: ignore[arg-type]
    except TypeError:
        return None
    return buffer


def _event(msg: aiohttp.WSMessage) -> Event:
    kind = msg.type
    if kind is WSMsgType.PING:
        return Event(Event.PING, msg.data)
    if kind is WSMsgType.PONG:
        return Event(Event.PONG)
    if kind is WSMsgType.CLOSE:
        return Event(Event.CLOSE, code=msg.data if isinstance(msg.data, int) else 0, text=msg.extra or "")
    if kind is WSMsgType.ERROR:
        exc = msg.data
        # A frame that breaks the protocol is the venue's fault; a transport error is not.
        return Event(Event.ERROR, exc, protocol=isinstance(exc, aiohttp.WebSocketError))
    # CLOSING / CLOSED: we closed it, or the TCP connection went away without a close frame.
    return Event(Event.ENDED)


async def connect(session: aiohttp.ClientSession, url: str, timeout: float,
                  tls: ssl.SSLContext | None) -> "AiohttpTransport":
    """Open ``url`` on ``session`` within ``timeout`` seconds; ``tls`` verifies a wss:// venue."""
    try:
        ws = await asyncio.wait_for(session.ws_connect(
            url,
            autoping=False,     # pings and pongs come to us: they are heartbeats
            heartbeat=None,     # the link's keeper does liveness, on its own deadline
            autoclose=True,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT),
            max_msg_size=MAX_FRAME,
            compress=0,
            ssl=tls if tls is not None else True,
            **_NO_DECODE,
        ), timeout)
    except asyncio.TimeoutError as exc:
        raise ConnectFailed(f"connect timed out after {timeout}s") from exc
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise ConnectFailed(str(exc)) from exc
    return AiohttpTransport(ws)


class AiohttpTransport:
    """``transport.Transport`` on an open ``aiohttp.ClientWebSocketResponse``."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._receive = ws.receive
        self._queue = _queue_of(ws)

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def read(self) -> tuple[Sequence[bytes], Event | None]:
        receive, queue = self._receive, self._queue
        msg = await receive()
        if msg.type not in _DATA:
            return (), _event(msg)
        batch = [msg.data]
        append = batch.append
        # Queued frames come back from receive() without a wait: the batch is what is queued now.
        while queue:
            msg = await receive()
            if msg.type not in _DATA:
                return batch, _event(msg)
            append(msg.data)
        return batch, None

    async def send(self, text: str) -> None:
        try:
            await self.ws.send_str(text)
        except (aiohttp.ClientError, RuntimeError) as exc:
            raise ConnectionError(str(exc) or type(exc).__name__) from exc

    async def ping(self, payload: bytes) -> None:
        try:
            await self.ws.ping(payload)
        except (ConnectionError, aiohttp.ClientError, RuntimeError):
            pass  # the reader sees the socket go

    async def pong(self, payload: bytes) -> None:
        try:
            await self.ws.pong(payload)
        except (ConnectionError, aiohttp.ClientError, RuntimeError):
            pass  # the reader sees the socket go

    async def close(self, code: int = CLOSE_OK) -> BaseException | None:
        ws = self.ws
        # aiohttp gives up on the handshake after its own ws_close (CLOSE_TIMEOUT) and drops the
        # connection, reporting it as an abnormal closure.
        await ws.close(code=code)
        if ws.close_code == WSCloseCode.ABNORMAL_CLOSURE:
            return ws.exception() or asyncio.TimeoutError()
        return None

    def backlog(self) -> int:
        """What the kernel holds for this socket (``FIONREAD``) plus the bytes of the frames aiohttp
        has read off it and not yet handed over (its reader's ``_size``: private, read defensively;
        0 if it is ever renamed)."""
        ws = self.ws
        if ws.closed:
            return 0
        queued = getattr(getattr(ws, "_reader", None), "_size", 0)
        return fionread(ws.get_extra_info("socket")) + (queued if isinstance(queued, int) else 0)
