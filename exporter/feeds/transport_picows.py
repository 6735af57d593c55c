"""The picows transport (``transport: picows``): ``transport.Transport`` on picows, a Cython
WebSocket client that parses a socket read in C and hands each frame to a callback.

Read side: picows calls ``_Listener.on_ws_frame`` for every frame of a socket read, in one go,
before the event loop runs anything else. A data frame's payload is appended to the current
batch (a list); a ping, pong or close frame closes the batch: (batch, event) goes to a queue and
a new batch starts, so the reader sees everything in the order it arrived. The first frame wakes
the reader (a future it waits on when there is nothing); ``read()`` then takes a whole batch at
once, and ``Link`` reads the clock once for it.

Flow control, as aiohttp does it for its queue: picows itself reads the socket whenever it is
readable, so a reader that falls behind (a firehose feed while a scrape renders) would let it
read on into memory without bound, and the venue would never be held back by TCP, which is how
the processing lag shows (``feedwatch_feed_processing_lag_seconds``, the receive backlog). Once
``QUEUE_HIGH`` bytes of parsed frames wait for the reader, the socket is no longer read (asyncio's
``pause_reading``); it is read again when the reader has taken them down to ``QUEUE_LOW``.

What picows leaves to its user, done here as aiohttp does it:

- fragmented messages (a text or binary frame without FIN, then continuation frames) are joined
  before they reach the reader; together at most ``MAX_FRAME`` bytes, else a protocol error
  (close code 1009), as aiohttp's ``max_msg_size``;
- the venue's close frame is answered (its code echoed) and the connection dropped, then
  reported (``Event.CLOSE`` with its code and text);
- our close waits ``CLOSE_TIMEOUT`` for the venue's answer, then aborts the TCP connection (a
  dead peer would never let a graceful one finish).

A frame that breaks the protocol (picows' parser: a bad opcode, a masked frame, an oversized
frame; or a fragment out of order here) ends the link as ``protocol_error``; the end of the TCP
connection without a close frame as ``network_error``, with the error ``wait_disconnected``
raises as its cause where picows gives one (it does not hand over every reset's socket error, so
such a link may log only its reason; the aiohttp transport logs e.g. ``ConnectionResetError``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from typing import Any, Sequence

import picows
from picows import WSCloseCode, WSMsgType

from exporter.feeds.transport import (
    CLOSE_OK,
    CLOSE_TIMEOUT,
    MAX_FRAME,
    ConnectFailed,
    Event,
    HandshakeRefused,
    fionread,
)

_TEXT, _BINARY, _CONTINUATION = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION
_PING, _PONG, _CLOSE = WSMsgType.PING, WSMsgType.PONG, WSMsgType.CLOSE
_TERMINAL = (Event.CLOSE, Event.ERROR, Event.ENDED)
# Bytes of parsed frames waiting for the reader at which the socket stops being read, and at or
# below which it is read again (module docstring). aiohttp pauses at 128 KiB of queued frames;
# picows' batches are worth more per wake-up, and 1 MiB is a few milliseconds of frames.
QUEUE_HIGH = 2**20
QUEUE_LOW = QUEUE_HIGH // 2
# picows logs every connection and disconnection at INFO; the link and the runner already say what
# matters (with the feed and the reason), so only its warnings and errors are let through.
_LIBRARY_LOG = logging.getLogger(__name__ + ".picows")
_LIBRARY_LOG.setLevel(logging.WARNING)


class ProtocolError(Exception):
    """The venue broke the WebSocket protocol in a way picows leaves to us (fragments)."""


def _close_code(code: int) -> WSCloseCode:
    try:
        return WSCloseCode(code)
    except ValueError:   # a code picows has no name for (an application's 4xxx): a normal closure
        return WSCloseCode.OK


class _Listener(picows.WSListener):  # type: ignore[misc]
    """Collects frames for the reader (module docstring). Never raises: picows would close the
    socket with 1011 on an exception from a callback."""

    def __init__(self) -> None:
        self.batch: list[bytes] = []          # data payloads since the last event
        self.queued = 0                       # bytes of payloads in ``batch`` and ``ready``
        self.paused = False                   # the socket is not being read (flow control)
        self.ready: deque[tuple[list[bytes], Event]] = deque()   # batches closed by an event
        self.waiter: asyncio.Future[None] | None = None   # the reader, waiting for anything
        self.parts: list[bytes] | None = None  # a fragmented message, so far
        self.parts_size = 0
        self.finished = False                  # a terminal event is queued: ignore the rest
        self.answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        if (kind is _TEXT or kind is _BINARY) and frame.fin and self.parts is None:
            payload = frame.get_payload_as_bytes()   # the hot path: one whole message
            self.batch.append(payload)
            self.queued += len(payload)
            if self.queued > QUEUE_HIGH and not self.paused:
                self.pause(transport)
        elif kind is _CLOSE and transport.is_close_frame_sent:   # the answer to our close: done
            if not self.answered.done():
                self.answered.set_result(None)
            transport.disconnect()
            self._event(Event(Event.ENDED))
        elif self.finished:
            return
        elif kind is _TEXT or kind is _BINARY or kind is _CONTINUATION:
            self._fragment(transport, frame, kind is _CONTINUATION)
        elif kind is _PING:
            self._event(Event(Event.PING, frame.get_payload_as_bytes()))
        elif kind is _PONG:
            self._event(Event(Event.PONG))
        elif kind is _CLOSE:
            code = int(frame.get_close_code().value)
            transport.send_close(_close_code(code))   # the venue's close, answered
            transport.disconnect()
            self._event(Event(Event.CLOSE, code=code, text=frame.get_close_reason() or ""))
        if self.waiter is not None:
            self.wake()

    def _fragment(self, transport: picows.WSTransport, frame: picows.WSFrame, continuation: bool) -> None:
        if continuation != (self.parts is not None):
            what = "a continuation frame outside a fragmented message" if continuation else \
                "a new message inside a fragmented one"
            self._fail(transport, WSCloseCode.PROTOCOL_ERROR, ProtocolError(f"received {what}"))
            return
        if self.parts is None:
            self.parts, self.parts_size = [], 0
        self.parts_size += frame.payload_size
        if self.parts_size > MAX_FRAME:
            self._fail(transport, WSCloseCode.MESSAGE_TOO_BIG,
                       ProtocolError(f"message of more than {MAX_FRAME} bytes (fragmented)"))
            return
        self.parts.append(frame.get_payload_as_bytes())
        if frame.fin:
            message = b"".join(self.parts)
            self.batch.append(message)
            self.queued += len(message)
            self.parts = None
            if self.queued > QUEUE_HIGH and not self.paused:
                self.pause(transport)

    def _fail(self, transport: picows.WSTransport, code: WSCloseCode, exc: Exception) -> None:
        transport.send_close(code)
        transport.disconnect()
        self._event(Event(Event.ERROR, exc, protocol=True))

    def _event(self, event: Event) -> None:
        if self.finished:
            return
        self.ready.append((self.batch, event))
        self.batch = []
        if event.kind in _TERMINAL:
            self.finished = True
        self.wake()

    def pause(self, transport: picows.WSTransport) -> None:
        """Stop reading the socket until the reader catches up (``taken``)."""
        try:
            transport.underlying_transport.pause_reading()
        except (AttributeError, RuntimeError):   # closing already: nothing more will come anyway
            return
        self.paused = True

    def taken(self, batch: Sequence[bytes], transport: picows.WSTransport) -> None:
        """The reader took ``batch``: read the socket again once little is left waiting."""
        self.queued -= sum(map(len, batch))
        if self.paused and self.queued <= QUEUE_LOW:
            self.paused = False
            try:
                transport.underlying_transport.resume_reading()
            except (AttributeError, RuntimeError):   # closed meanwhile
                pass

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        if not self.answered.done():   # our close() waits no longer: there is nothing to answer it
            self.answered.set_result(None)
        self._event(Event(Event.ENDED))


async def connect(url: str, timeout: float, tls: ssl.SSLContext | None) -> "PicowsTransport":
    """Open ``url`` within ``timeout`` seconds; ``tls`` verifies a wss:// venue."""
    try:
        transport, listener = await asyncio.wait_for(picows.ws_connect(
            _Listener, url,
            ssl_context=tls,
            enable_auto_pong=False,     # pings and pongs come to us: they are heartbeats
            enable_auto_ping=False,     # the link's keeper does liveness, on its own deadline
            websocket_handshake_timeout=timeout,   # picows drops a socket whose upgrade hangs
            max_frame_size=MAX_FRAME,
            max_redirects=10,           # as aiohttp's ws_connect follows them
            logger_name=_LIBRARY_LOG,
            use_aiofastnet=False,       # asyncio's own transports (measured: no faster here), TLS included
        ), timeout)
    except asyncio.TimeoutError as exc:
        raise ConnectFailed(f"connect timed out after {timeout}s") from exc
    except picows.WSHandshakeError as exc:
        response = getattr(exc, "response", None)
        if response is not None:
            refused = HandshakeRefused(response.status, str(exc))
            raise ConnectFailed(str(refused)) from refused
        raise ConnectFailed(str(exc)) from exc
    except (OSError, ValueError, EOFError) as exc:   # refused, DNS, TLS (ssl.SSLError is an OSError)
        raise ConnectFailed(str(exc) or type(exc).__name__) from exc
    return PicowsTransport(transport, listener)


class PicowsTransport:
    """``transport.Transport`` on an open picows ``WSTransport`` and its ``_Listener``."""

    def __init__(self, transport: picows.WSTransport, listener: _Listener) -> None:
        self.transport = transport
        self.listener = listener

    @property
    def closed(self) -> bool:
        transport = self.transport
        return transport.is_disconnected or transport.is_close_frame_sent

    async def read(self) -> tuple[Sequence[bytes], Event | None]:
        listener = self.listener
        while True:
            if listener.ready:
                batch, event = listener.ready.popleft()
                listener.taken(batch, self.transport)
                if event.kind is Event.ENDED:
                    event = await self._ended(event)
                return batch, event
            batch = listener.batch
            if batch:
                listener.batch = []
                listener.taken(batch, self.transport)
                return batch, None
            waiter = listener.waiter = asyncio.get_running_loop().create_future()
            await waiter

    async def _ended(self, event: Event) -> Event:
        """The connection is gone: if picows ended it over a protocol error, say so."""
        if not self.transport.is_disconnected:   # we are closing it (close()): our reason stands
            return event
        try:
            await asyncio.wait_for(self.transport.wait_disconnected(), CLOSE_TIMEOUT)
        except picows.WSProtocolError as exc:
            return Event(Event.ERROR, exc, protocol=True)
        except asyncio.TimeoutError:   # picows still tearing down: the end is the news
            return event
        except Exception as exc:   # how it ended (a reset): a network error, with its cause logged
            return Event(Event.ERROR, exc)
        return event

    async def send(self, text: str) -> None:
        if self.closed:
            raise ConnectionError("the socket is closed")
        self.transport.send(_TEXT, text.encode())

    async def ping(self, payload: bytes) -> None:
        if not self.closed:
            self.transport.send_ping(payload)

    async def pong(self, payload: bytes) -> None:
        if not self.closed:
            self.transport.send_pong(payload)

    async def close(self, code: int = CLOSE_OK) -> BaseException | None:
        transport, listener = self.transport, self.listener
        if transport.is_disconnected:
            return None
        error: BaseException | None = None
        if not transport.is_close_frame_sent:
            transport.send_close(_close_code(code))
        listener._event(Event(Event.ENDED))   # the reader stops here, as aiohttp's does on close()
        try:
            await asyncio.wait_for(asyncio.shield(listener.answered), CLOSE_TIMEOUT)
        except asyncio.TimeoutError as exc:
            error = exc
        # Answered: the close frames are through, a graceful end. Unanswered: the peer is gone or
        # black-holed, and a graceful end would wait for its TCP acknowledgements: abort.
        transport.disconnect(graceful=error is None)
        try:
            await transport.wait_disconnected()
        except Exception as exc:   # the close itself failed (a reset meanwhile): the link's close error
            error = error or exc
        return error

    def backlog(self) -> int:
        """What the kernel holds for this socket (``FIONREAD``) plus the frames picows has parsed
        and the reader not yet taken. A message's fragments and a partly received frame in
        picows' own read buffer are not counted (at most one message)."""
        if self.transport.is_disconnected:
            return 0
        return fionread(self.transport.underlying_transport.get_extra_info("socket")) + self.listener.queued
