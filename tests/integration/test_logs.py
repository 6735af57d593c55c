"""``feedwatch run --log.format logfmt|json`` against a hostile venue: a frame holding a line break
with a forged record after it, ANSI colour codes, NUL and bytes that are not UTF-8 comes out as
one escaped line whose fields (feed, connection, kind) a log pipeline can select on. Every line
the process writes is parsed (tests/logfmt.py, ``json.loads``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import pytest
from aiohttp import web

from tests.logfmt import parse_line
from tests.waiting import free_port

pytestmark = pytest.mark.integration

FRAME = b'{"broken": \n' + b'ts=2000-01-01T00:00:00Z level=error msg="forged line" \x1b[31mRED\x1b[0m\x00 \xff\xfe end'
# What the log must say the frame was: the excerpt as decoded (undecodable bytes as U+FFFD).
SHOWN = '{"broken": \nts=2000-01-01T00:00:00Z level=error msg="forged line" \x1b[31mRED\x1b[0m\x00 \ufffd\ufffd end'


@pytest.fixture
async def hostile_venue():
    """A WebSocket server that greets every connection with ``FRAME`` (binary) and stays open."""
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        await ws.send_bytes(FRAME)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"ws://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/ws"
    await runner.cleanup()


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
async def test_a_hostile_frame_is_one_escaped_line_with_its_context_as_fields(tmp_path, hostile_venue, fmt) -> None:
    config = tmp_path / "feedwatch.yml"
    config.write_text(f"feeds:\n  - name: hostile\n    kind: generic\n    url: {hostile_venue}\n"
                      f"    symbols: [BTC-USD]\n    fields: {{symbol: s, price: p}}\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter.cli", "run", "-c", str(config), "--web.listen-address",
        f"127.0.0.1:{free_port()}", "--log.format", fmt, "--log.level", "info",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env={**os.environ})
    lines: list[bytes] = []
    try:
        async def until_the_decode_error() -> None:
            assert proc.stderr is not None
            while True:
                line = await proc.stderr.readline()
                if not line:
                    raise AssertionError("the exporter exited:\n" + b"".join(lines).decode(errors="replace"))
                lines.append(line)
                if b"decode" in line:
                    return

        await asyncio.wait_for(until_the_decode_error(), 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(proc.communicate(), 20)
    lines.extend(rest.splitlines(keepends=True))
    assert proc.returncode == 0

    parse = parse_line if fmt == "logfmt" else json.loads
    records = []
    for raw in lines:
        text = raw.decode("utf-8")                              # every line is valid UTF-8
        assert text.endswith("\n") and text.count("\n") == 1
        assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in text[:-1]), text
        records.append(parse(text[:-1]))                         # and well formed
    decode = [r for r in records if r.get("kind") == "decode"]
    assert len(decode) == 1, records
    record = decode[0]
    assert (record["level"], record["logger"]) == ("warn", "exporter.feeds.runner")
    assert (record["feed"], record["connection"]) == ("hostile", "0")
    assert SHOWN in record["msg"]                               # the frame, intact once unescaped
    assert not any(r.get("msg") == "forged line" for r in records)   # nothing forged a record
    assert any(r["msg"] == "stopped" for r in records)
