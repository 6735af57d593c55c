"""The link's read loop reads the clock once per batch of frames the transport has already parsed,
and accumulates its accounting in locals (exporter/feeds/link.py, ``Link._read``): nothing may be
lost or counted twice, over either transport (aiohttp, picows). A real socket on 127.0.0.1 writes
single-event Binance frames in chunks of 1,000 (the transport benchmark's blaster, in this
process), two undecodable ones among them; a real FeedRunner reads them."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench import transport
from bench.wsserver import accept, text_header
from exporter.feeds import link
from exporter.feeds.runner import FeedRunner
from tests.integration.feedharness import TRANSPORTS
from tests.waiting import async_wait_for

COUNT = 6_000
BAD = b'{"stream":"s0001usdt@trade","data":{"e":"trade"'   # cut short: a decode error
BAD_FRAME = text_header(len(BAD)) + BAD


class CountingClock:
    """The wall clock, remembering every reading."""

    def __init__(self) -> None:
        self.readings: list[float] = []

    def time(self) -> float:
        now = time.time()
        self.readings.append(now)
        return now


def _payload_bytes(count: int) -> int:
    """The payload bytes of the frames the blaster sends (WebSocket headers parsed off)."""
    total = 0
    for chunk in transport._frames(count, transport._symbols()):
        at = 0
        while at < len(chunk):
            length = chunk[at + 1] & 0x7F
            at += 2
            if length == 126:
                length = int.from_bytes(chunk[at:at + 2], "big")
                at += 2
            total += length
            at += length
    return total


async def _serve_burst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The venue: COUNT frames as fast as the socket takes them, two bad ones among them."""
    await accept(reader, writer)
    for i, chunk in enumerate(transport._frames(COUNT, transport._symbols())):
        # An undecodable frame amid the burst (the slow path mid-batch) and one at its end.
        writer.write(chunk + BAD_FRAME if i in (2, COUNT // 1_000 - 1) else chunk)
        await writer.drain()
    try:  # then quiet, open (no close: nothing may arrive after the burst), reading the client
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.mark.parametrize("transport_name", TRANSPORTS)
async def test_a_burst_is_counted_exactly_with_one_clock_reading_per_batch(transport_name: str) -> None:
    server = await asyncio.start_server(_serve_burst, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    config, feed = transport._book(url, transport=transport_name)
    clock = CountingClock()
    runner = FeedRunner(config, feed, clock)
    await runner.start()
    try:
        # Checked from another task, which runs only while the reader waits: what it sees must be exact.
        await async_wait_for(lambda: transport._received(feed) >= COUNT and feed.errors["decode"] >= 2, timeout=30,
                             what=f"{COUNT} frames and two bad ones")
        assert transport._received(feed) == COUNT
        assert sum(state.updates for state in feed.symbols.values()) == COUNT
        assert feed.bytes == _payload_bytes(COUNT) + 2 * len(BAD)
        assert feed.connects == 1 and feed.errors == {**dict.fromkeys(feed.errors, 0), "decode": 2}
        # The one amid the burst was followed by good frames (a run of errors ended), the last was not.
        assert feed.consecutive_errors == 1
        # The batch's reading is the time of its frames: the book's times are clock readings,
        # the last message and the heartbeat are the last batch's.
        last = max(state.last_update for state in feed.symbols.values())
        assert feed.last_message == last and last in clock.readings
        assert feed.connection("0").last_heartbeat == last
        assert {state.last_update for state in feed.symbols.values()} <= set(clock.readings)
        # Batched: far fewer readings than frames (the blaster writes 1,000 frames at a time).
        assert len(clock.readings) < COUNT / 10, len(clock.readings)
    finally:
        await runner.stop()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("transport_name", TRANSPORTS)
async def test_a_burst_gives_the_event_loop_a_turn_every_step(transport_name: str, monkeypatch) -> None:
    """A socket read of frames is worked through in parts of ``step`` frames, as many as the last
    part did in ``STEP_SECONDS``, the event loop getting a turn in between. With ``STEP_SECONDS``
    at 0 a part is one frame after the first (64, before any pace is known), so a task that runs
    once per turn sees the book's byte count move by at most 64 frames, then by a frame or two (a
    part may be followed by the next batch's first part after a bad frame ended one). Without the
    cut the reader holds the loop for everything the transport has parsed: 256 KiB reads and
    more. (The pace itself is wall-clock time; no test asserts one.)"""
    monkeypatch.setattr(link, "STEP_SECONDS", 0.0)
    server = await asyncio.start_server(_serve_burst, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    config, feed = transport._book(url, transport=transport_name)
    runner = FeedRunner(config, feed, CountingClock())
    seen: list[int] = []
    held: list[tuple[int, int]] = []   # (bytes counted, bytes of a cut batch still held) at a turn

    async def every_turn() -> None:
        while True:
            seen.append(feed.bytes)
            shard = runner.shards.get("0")
            reader = shard.link if shard is not None else None
            if reader is not None and reader._held:
                held.append((feed.bytes, reader._held))
            await asyncio.sleep(0)

    ticker = asyncio.create_task(every_turn())
    await runner.start()
    try:
        await async_wait_for(lambda: transport._received(feed) >= COUNT, timeout=60, what=f"{COUNT} frames")
        frame = feed.bytes / (COUNT + 2)   # the average frame's bytes
        steps = [b - a for a, b in zip(seen, seen[1:]) if b > a]
        assert max(steps) <= 64 * frame + 2 * len(BAD) + 1024, (max(steps), steps[:8])
        assert len(steps) > COUNT / 3, len(steps)   # frame by frame after the first parts
        assert sorted(steps)[len(steps) // 2] <= 3 * frame, sorted(steps)[len(steps) // 2]
        # While a cut batch waits, its rest is backlog (receive_backlog): what is counted plus
        # what is held stays the batch's end from turn to turn, the held part shrinking.
        assert len(held) > COUNT / 3, len(held)
        ends = [counted + rest for counted, rest in held]
        runs = sum(1 for a, b in zip(ends, ends[1:]) if a == b)
        assert runs > len(held) / 2, (runs, len(held))
        assert all(b[1] < a[1] for a, b, x, y in zip(held, held[1:], ends, ends[1:]) if x == y)
    finally:
        ticker.cancel()
        await runner.stop()
        server.close()
        await server.wait_closed()
