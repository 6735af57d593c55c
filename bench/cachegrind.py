"""The frame recorder's cost per frame, and the picows transport's against aiohttp's, counted by
cachegrind: a measurement a busy machine cannot skew.

    .venv/bin/python -m bench.cachegrind            # ~20 minutes: four client runs under valgrind
    .venv/bin/python -m bench.cachegrind transport  # the same runs, transport: picows against aiohttp

The transport benchmark times wall-clock throughput, which other processes on a shared 2-core
machine disturb by far more than the few per cent it must resolve. This runs the same client
(``FeedRunner`` reading single-event Binance frames from the transport benchmark's blaster, a
separate process valgrind does not trace) under ``valgrind --tool=cachegrind`` with and without
the recorder ring, at two frame counts, and takes the per-frame difference: instructions, level 1
data cache misses and last-level misses, and an estimate of cycles (Ir + 10 x D1 misses + 100 x
LL misses). The counts do not depend on the load; the ring is saturated (100,000 frames) over
the measured span, so every append also drops the oldest frame, the steady state of a busy feed.
The recorder's once-a-second trim task is left out (under valgrind's ~50x slowdown it would run
50 times too often per frame). Needs valgrind (Debian package ``valgrind``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import transport
from exporter.clock import SystemClock
from exporter.feeds.recorder import Recorder, RecorderConfig
from exporter.feeds.runner import FeedRunner

COUNTS = (120_000, 220_000)   # both past the ring's 100,000: the difference is all steady state
MAX_FRAMES = 100_000


async def _client(url: str, count: int, record: bool, transport_name: str = "aiohttp") -> None:
    config, feed = transport._book(url, transport=transport_name)
    clock = SystemClock()
    runner = FeedRunner(config, feed, clock)
    if record:
        runner.recording = Recorder(RecorderConfig(max_frames=MAX_FRAMES), [config], clock).ring(config.name)
    await runner.start()
    while transport._received(feed) < count:
        await asyncio.sleep(0.5)  # few wake-ups: the instructions counted must not depend on the time taken
    await runner.stop()


def client(mode: str, count: int) -> None:
    """One run (what valgrind executes): the blaster in an untraced child, the client here."""
    parent, child = multiprocessing.Pipe()
    blaster = multiprocessing.get_context("spawn").Process(target=transport._blaster, args=(child, count, None),
                                                           daemon=True)
    blaster.start()
    port = parent.recv()[transport.TRADE]
    asyncio.run(_client(f"ws://127.0.0.1:{port}", count, mode == "record", "picows" if mode == "picows" else "aiohttp"))
    blaster.terminate()


_SUMMARY = {"Ir": r"I\s+refs:\s+([\d,]+)", "D1": r"D1\s+misses:\s+([\d,]+)", "LL": r"LL misses:\s+([\d,]+)"}


def run(mode: str, count: int) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=yes",
                              f"--cachegrind-out-file={Path(tmp) / 'out'}", sys.executable, "-m", "bench.cachegrind",
                              "--client", mode, str(count)], capture_output=True, text=True, check=True).stderr
    return {key: int(re.search(pattern, out).group(1).replace(",", "")) for key, pattern in _SUMMARY.items()}


def main(other: str = "record") -> None:
    """``plain`` (aiohttp, no recorder) against ``other``: ``record`` (the recorder ring on) or
    ``picows`` (``transport: picows``, no recorder)."""
    per_frame = {}
    for mode in ("plain", other):
        low, high = (run(mode, n) for n in COUNTS)
        span = COUNTS[1] - COUNTS[0]
        per_frame[mode] = {key: (high[key] - low[key]) / span for key in low}
        per_frame[mode]["cycles"] = per_frame[mode]["Ir"] + 10 * per_frame[mode]["D1"] + 100 * per_frame[mode]["LL"]
    plain, record = per_frame["plain"], per_frame[other]
    if other == "record":
        print(f"per frame, ring saturated at {MAX_FRAMES:,} frames (differences of {COUNTS[0]:,} and {COUNTS[1]:,} frames):")
    else:
        print(f"per frame, transport: aiohttp and picows (differences of {COUNTS[0]:,} and {COUNTS[1]:,} frames):")
    first, second = ("without", "with recording") if other == "record" else ("aiohttp", "picows")
    for key in ("Ir", "D1", "LL", "cycles"):
        print(f"  {key:<6} {first} {plain[key]:10,.1f}  {second} {record[key]:10,.1f}  "
              f"{record[key] / plain[key] - 1:+.1%}" if plain[key] else f"  {key:<6} {plain[key]} / {record[key]}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        client(sys.argv[2], int(sys.argv[3]))
    else:
        main("picows" if sys.argv[1:2] == ["transport"] else "record")
