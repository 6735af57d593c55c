"""Single-event Binance frames through the real ``FeedRunner`` of several source trees, interleaved.

    .venv/bin/python -m bench.transportab REV [REV ...] [--rounds N] [--messages N]

Each REV is a git revision (``git archive``d to a temporary directory) or ``.`` for this work
tree. One blaster (``bench/transport.py``'s, this tree's) runs pinned to the second core; for
every round, each tree in turn (the order rotated each round) runs a fresh client process pinned
to the first core with that tree first on ``sys.path``: ``FeedRunner`` -> ``Link`` ->
``BinanceAdapter`` -> ``FeedBook``, 600,000 frames, with the collector tuned the way that
tree's ``feedwatch run`` tunes it (``exporter/gctune.py`` where it exists). Prints, per tree,
the best frames/s and the least CPU time of the client thread per frame: the effect of a change
on the hot path, measured side by side so that the load of a shared machine moves every tree
alike. Used for the levers of issue 14 (bench/README.md, "Transport").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from bench import transport
from bench.common import table

ROOT = Path(__file__).resolve().parents[1]

CLIENT = """
import asyncio, contextlib, json, sys, time
from exporter.book import Book
from exporter.clock import SystemClock
from exporter.config import load_data
from exporter.feeds.runner import FeedRunner
try:
    from exporter.gctune import tuned
except ImportError:  # a tree from before the GC tuning
    tuned = contextlib.nullcontext
url, count = sys.argv[1], int(sys.argv[2])
symbols = [f"S{i:04d}USDT" for i in range(500)]

async def main():
    config = load_data({"feeds": [{"name": "bench", "kind": "binance", "url": url, "symbols": symbols,
                                   "streams": ["trade", "bookTicker"], "heartbeat_timeout": "1h",
                                   "silence_timeout": "1h"}]})
    feed = Book(config.feeds, time.time()).feed("bench")
    runner = FeedRunner(config.feeds[0], feed, SystemClock())
    with tuned():
        start, cpu = time.perf_counter(), time.thread_time()
        await runner.start()
        while feed.messages["trade"] + feed.messages["quote"] < count:
            await asyncio.sleep(0.0005)
        n = feed.messages["trade"] + feed.messages["quote"]
        result = {"rate": n / (time.perf_counter() - start), "cpu": (time.thread_time() - cpu) / n}
        await runner.stop()
    print(json.dumps(result))

asyncio.run(main())
"""


def _tree(rev: str, tmp: Path) -> Path:
    if rev == ".":
        return ROOT
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    target = tmp / rev.replace("/", "_")
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(target, filter="data")
    return target


def measure(revs: list[str], rounds: int = 3, messages: int = 600_000) -> dict[str, tuple[float, float]]:
    cpus = sorted(os.sched_getaffinity(0))
    pin = len(cpus) >= 2
    parent, child = multiprocessing.Pipe()
    blaster = multiprocessing.get_context("spawn").Process(
        target=transport._blaster, args=(child, messages, cpus[1] if pin else None), daemon=True)
    blaster.start()
    best = {rev: (0.0, float("inf")) for rev in revs}
    try:
        url = f"ws://127.0.0.1:{parent.recv()[transport.TRADE]}"
        with tempfile.TemporaryDirectory() as tmp:
            trees = {rev: _tree(rev, Path(tmp)) for rev in revs}
            for i in range(rounds):
                for rev in revs[i % len(revs):] + revs[:i % len(revs)]:
                    print(f"\r  transportab: {rev} round {i + 1}/{rounds}   ", end="", file=sys.stderr, flush=True)
                    out = subprocess.run(
                        [sys.executable, "-c", CLIENT, url, str(messages)], cwd=trees[rev], capture_output=True,
                        text=True, check=True, env={**os.environ, "PYTHONPATH": str(trees[rev])},
                        preexec_fn=(lambda: os.sched_setaffinity(0, {cpus[0]})) if pin else None).stdout
                    got = json.loads(out.strip().splitlines()[-1])
                    rate, cpu = best[rev]
                    best[rev] = (max(rate, got["rate"]), min(cpu, got["cpu"]))
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)
        return best
    finally:
        blaster.terminate()
        blaster.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.transportab", description=__doc__.split("\n")[0])
    parser.add_argument("revs", nargs="+", metavar="REV", help="git revisions, or . for this work tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=600_000)
    args = parser.parse_args()
    best = measure(args.revs, args.rounds, args.messages)
    first = best[args.revs[0]]
    rows = [(rev, f"{rate:,.0f}", f"{cpu * 1e6:.3f}", f"{rate / first[0]:.2f}", f"{cpu / first[1]:.3f}")
            for rev, (rate, cpu) in best.items()]
    print(f"{args.messages:,} single-event Binance frames per run, best of {args.rounds}, interleaved; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(table(("tree", "frames/s", "CPU us/frame", "rate vs first", "CPU vs first"), rows))


if __name__ == "__main__":
    main()
