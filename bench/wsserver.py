"""The server side of a WebSocket, as little as the benchmarks' blasters need.

A blaster accepts a client's handshake and then writes unmasked text frames it has built ahead
(as many per socket write as it likes), so the client's side is what gets measured. Shared by
``bench/transport.py`` and ``bench/scrape_load.py`` (and the tests that borrow their blasters).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"   # RFC 6455's handshake constant


def text_header(length: int) -> bytes:
    """The header of an unmasked, final text frame of ``length`` bytes."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return bytes((0x81, 126)) + struct.pack("!H", length)
    return bytes((0x81, 127)) + struct.pack("!Q", length)


def text_frame(payload: bytes) -> bytes:
    return text_header(len(payload)) + payload


async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer a client's WebSocket handshake, whatever the path it asked for."""
    head = await reader.readuntil(b"\r\n\r\n")
    key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key"))
    digest = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + digest + b"\r\n\r\n")
