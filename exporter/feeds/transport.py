"""A WebSocket client socket as ``link.Link`` uses it: the small interface its transports implement.

``Link`` keeps everything a venue connection means (accounting, heartbeats, signals, pacing,
reasons); a *transport* only moves frames. Two implement this interface, chosen per feed by
``transport:`` (``config.FeedConfig``):

- ``transport_aiohttp.AiohttpTransport`` (default): aiohttp's client, on the runner's session;
- ``transport_picows.PicowsTransport``: picows (Cython; frames handed to a callback, no ``await``
  per frame): about 3x cheaper per frame than aiohttp's ``receive()`` (bench/README.md,
  "Transport").

The read side hands over *batches*: ``read()`` returns the data frames (text or binary payloads,
as ``bytes``; fragmented messages reassembled) that arrived together and wait for the reader,
and at most one *event* that followed them (a ping, a pong, the venue's close frame, a failure,
the end of the connection). Every frame of a batch arrived before ``read()`` returned, so one
clock reading is the time of all of them (``Link._read``). After an ``ERROR``, ``CLOSE`` or
``ENDED`` event the transport is finished: ``read()`` is not called again.

Opening (``connect`` of each module) raises ``ConnectFailed`` with the library's exception as its
``__cause__`` (a refused handshake as ``HandshakeRefused``, so ``runner.classify`` reads its
status the same way for both).
"""

from __future__ import annotations

import fcntl
import ssl
import struct
import termios
from typing import Any, Protocol, Sequence

# Seconds to wait for the venue's half of a close handshake before dropping the TCP connection.
CLOSE_TIMEOUT = 2.0
# The largest message (all its fragments together) either transport accepts: a bigger one is a
# protocol error (close code 1009), as aiohttp's ``max_msg_size`` makes it.
MAX_FRAME = 16 * 2**20
# What we close with when it is our decision (a deadline, a stall, a shutdown): a normal closure.
CLOSE_OK = 1000

class ConnectFailed(Exception):
    """The socket never opened (refused, DNS, TLS, handshake status, timeout)."""


class HandshakeRefused(Exception):
    """The venue answered the WebSocket upgrade with this HTTP status (picows; aiohttp raises its
    own ``WSServerHandshakeError``, which ``runner.classify`` reads the same way)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}, message={message!r}")
        self.status = status


class Event:
    """What ended a batch: ``kind`` is one of the constants below.

    ``PING``: ``data`` is the payload to echo; ``PONG``; ``CLOSE``: the venue's close frame,
    ``code`` and ``text``; ``ERROR``: ``data`` is the exception, ``protocol`` whether the venue
    broke the WebSocket protocol (a bad frame, a message over ``MAX_FRAME``) rather than the
    network failing; ``ENDED``: the TCP connection ended without a close frame, or we closed it.
    """

    __slots__ = ("kind", "data", "code", "text", "protocol")

    PING, PONG, CLOSE, ERROR, ENDED = "ping", "pong", "close", "error", "ended"

    def __init__(self, kind: str, data: object = None, code: int = 0, text: str = "",
                 protocol: bool = False) -> None:
        self.kind = kind
        self.data = data
        self.code = code
        self.text = text
        self.protocol = protocol

    def __repr__(self) -> str:
        return f"Event({self.kind!r}, code={self.code}, text={self.text!r})"


class Transport(Protocol):
    """One open WebSocket (see the module docstring)."""

    @property
    def closed(self) -> bool:
        """The socket is closing or closed: nothing more may be sent."""

    async def read(self) -> tuple[Sequence[bytes], Event | None]:
        """The next batch of data frames and the event after them (either may be empty)."""

    async def send(self, text: str) -> None:
        """Send a text frame; raises ``ConnectionError`` when the socket cannot take it."""

    async def ping(self, payload: bytes) -> None:
        """Send a WebSocket ping; a socket that is going away is left to the reader to notice."""

    async def pong(self, payload: bytes) -> None:
        """Answer a ping, echoing its payload; errors as for ``ping``."""

    async def close(self, code: int = CLOSE_OK) -> BaseException | None:
        """Close with a handshake (bounded by ``CLOSE_TIMEOUT``), then drop the TCP connection.
        Returns what went wrong (``asyncio.TimeoutError``: the peer never answered), else None."""

    def backlog(self) -> int:
        """Bytes that arrived for this socket and wait for the reader (see each transport)."""


def tls_context() -> ssl.SSLContext:
    """How both transports verify a wss:// venue: the system's trust store, with OpenSSL's
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` read when it is made (once per feed runner, on its first
    wss:// connection: loading the store is blocking file I/O), ALPN ``http/1.1`` as aiohttp's
    own default context has it."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(("http/1.1",))
    return context


def fionread(sock: Any) -> int:
    """What the kernel holds unread for ``sock`` (0 if it cannot say: closed meanwhile, not a socket)."""
    if sock is None:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except (OSError, ValueError):
        return 0
