"""The tick tape's cost per message on the ingest path, counted by cachegrind (load-independent).

    .venv/bin/python -m bench.tapegrind                 # a few minutes: four runs under valgrind
    .venv/bin/python -m bench.tapegrind --tree DIR      # also count DIR's code (e.g. a `git archive` of
                                                        # the commit before), plain, for a before/after
    .venv/bin/python -m bench.tapegrind --venue binance # the same for single-event Binance frames
    .venv/bin/python -m bench.tapegrind --memory        # bytes a row keeps alive on the tape (seconds)

The ingest benchmark's Polygon frames (``bench/ingest.py``: 100 messages a frame, 10k symbols,
70 % quotes) go through ``PolygonAdapter.handle`` into a ``FeedBook``, without and with a
``TickTape`` (large enough never to drop, as in steady state with a healthy sink), under
``valgrind --tool=cachegrind`` at two frame counts; the difference divided by the messages in
between is the steady-state cost per message: instructions, level 1 data and last-level misses,
and an estimate of cycles (Ir + 10 x D1 misses + 100 x LL misses), as ``bench/cachegrind.py``
does for the frame recorder. The wall-clock ingest benchmark (``python -m bench ingest``) reports
the same comparison as rates and CPU time, which a busy machine disturbs. Needs valgrind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

COUNTS = (150, 400)   # frames of 100 messages; the first 50 (warm-up) are in both runs
# --venue binance: single-event frames (the transport benchmark's, half trade, half bookTicker,
# 500 symbols) through ``BinanceAdapter.handle`` -> ``FeedBook.apply_one``; the first 10,000
# (every symbol's first prints confirmed) are in both runs.
BINANCE_COUNTS = (10_000, 30_000)
_SUMMARY = {"Ir": r"I\s+refs:\s+([\d,]+)", "D1": r"D1\s+misses:\s+([\d,]+)", "LL": r"LL misses:\s+([\d,]+)"}


def binance_frames(count: int) -> list[bytes]:
    from bench import transport

    trades, tickers = transport._templates(transport._symbols())
    frames, ids = [], [1_000_000] * len(trades)
    for i in range(count):
        k = i % len(trades)
        if i & 1:
            frames.append(tickers[k][tickers[k].index(b"{"):])   # without the WebSocket header
        else:
            frames.append(trades[k][0] + str(ids[k]).encode() + trades[k][1])
            ids[k] += 1
    return frames


def binance_client(mode: str, frames: int, path: str) -> None:
    from bench import transport
    from exporter import book
    from exporter.feeds.binance import BinanceAdapter

    with open(path, "rb") as fh:
        data = fh.read().split(b"\n")[:frames]
    config, feed = transport._book("ws://127.0.0.1:1")
    if mode == "tape":
        feed.attach_tape(book.TickTape(frames + 1))
    handle = BinanceAdapter(config, feed, "0").handle
    now = transport.T0_MS / 1000 + 0.2
    for frame in data:
        handle(frame, now)


def client(mode: str, frames: int, path: str) -> None:
    from bench import ingest
    from exporter import book

    if mode.startswith("binance-"):
        return binance_client(mode[len("binance-"):], frames, path)
    with open(path, "rb") as fh:   # made outside valgrind: generating frames would dwarf ingesting them
        data = fh.read().split(b"\n")[:frames]
    tape = book.TickTape(frames * 100 + 1) if mode == "tape" else None
    run, feed = ingest.feedwatch_loop(data, 10_000, tape) if tape is not None else ingest.feedwatch_loop(data, 10_000)
    run()


def count(mode: str, frames: int, tree: str | None) -> dict[str, int]:
    from bench import ingest

    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = tree
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "frames"
        made = binance_frames(frames) if mode.startswith("binance-") else ingest.make_frames(n_frames=frames)
        data.write_bytes(b"\n".join(made))
        out = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=yes",
                              f"--cachegrind-out-file={Path(tmp) / 'out'}", sys.executable, __file__,
                              "--client", mode, str(frames), str(data)],
                             capture_output=True, text=True, check=True, env=env, cwd=tree or None).stderr
    return {key: int(re.search(pattern, out).group(1).replace(",", "")) for key, pattern in _SUMMARY.items()}


def per_message(mode: str, tree: str | None = None) -> dict[str, float]:
    counts = BINANCE_COUNTS if mode.startswith("binance-") else COUNTS
    low, high = (count(mode, n, tree) for n in counts)
    span = (counts[1] - counts[0]) * (1 if mode.startswith("binance-") else 100)
    result = {key: (high[key] - low[key]) / span for key in low}
    result["cycles"] = result["Ir"] + 10 * result["D1"] + 100 * result["LL"]
    return result


def tape_bytes_per_row(n_frames: int = 300) -> float:
    """Memory a row keeps alive while it waits on the tape (tracemalloc, no valgrind): the same
    frames applied with and without a tape, the difference divided by the rows on it."""
    import gc
    import tracemalloc

    from bench import ingest
    from exporter import book

    frames = ingest.make_frames(n_frames=n_frames)
    used = {}
    for mode in ("plain", "tape"):
        tape = book.TickTape(n_frames * 100 + 1) if mode == "tape" else None
        run, feed = ingest.feedwatch_loop(frames[:50], 10_000, tape)   # every symbol priced once
        if tape is not None:
            tape.take()
            tape.release(0)
        gc.collect()
        tracemalloc.start()
        start = tracemalloc.get_traced_memory()[0]
        handle = ingest.PolygonAdapter(feed.config, feed, "0").handle
        for frame in frames[50:]:
            handle(frame, ingest.T0_MS / 1000 + 0.2)
        gc.collect()
        used[mode] = (tracemalloc.get_traced_memory()[0] - start, tape.rows if tape is not None else 0)
        tracemalloc.stop()
    return (used["tape"][0] - used["plain"][0]) / used["tape"][1]


def main(argv: list[str]) -> None:
    if "--memory" in argv:
        print(f"memory a row keeps alive on the tape: {tape_bytes_per_row():,.0f} bytes")
        return
    tree = argv[argv.index("--tree") + 1] if "--tree" in argv else None
    venue = "binance-" if "--venue" in argv and argv[argv.index("--venue") + 1:][:1] == ["binance"] else ""
    runs = {"without tape": per_message(venue + "plain"), "with tape": per_message(venue + "tape")}
    if tree:
        runs[f"before ({tree})"] = per_message(venue + "plain", tree)
    base = runs["without tape"]
    if venue:
        print(f"per message, single-event Binance frames (differences of {BINANCE_COUNTS[0]:,} and "
              f"{BINANCE_COUNTS[1]:,} frames):")
    else:
        print(f"per message, ingest frames (differences of {COUNTS[0]} and {COUNTS[1]} frames of 100):")
    for name, figures in runs.items():
        cells = "  ".join(f"{key} {figures[key]:8,.1f} ({figures[key] / base[key] - 1:+.1%})" if base[key]
                          else f"{key} {figures[key]:8,.1f}" for key in ("Ir", "D1", "LL", "cycles"))
        print(f"  {name:<28} {cells}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        sys.path.insert(0, os.getcwd())
        client(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main(sys.argv[1:])
