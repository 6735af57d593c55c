"""Render cost in instructions, counted by cachegrind: what a busy shared machine cannot skew.

    .venv/bin/python -m bench.rendergrind [symbols]          # ~2 minutes at 10,000 symbols

Each case runs this module under ``valgrind --tool=cachegrind --cache-sim=no`` twice: once
with the set-up alone (a ``priced_book``, a kept collector rendered twice, the updates of each
round applied) and once with ``ROUNDS`` served renders too (``bench.render.served``: the
collector's steps and the plain body); the difference divided by ``ROUNDS`` is one render.
Cases: ``unchanged`` (nothing updated since the last scrape), ``1 % updated`` (at random),
``all updated`` (every symbol: price, venue and receive timestamps; each round's receive times
differ from the last round's, as every real update's do).

    .venv/bin/python -m bench.rendergrind 10000 --functions 25

also prints, per case, the C functions the instructions of one render went to (self cost, the
same difference divided by ``ROUNDS``): where formatting, gathering and comparing go.
"""

from __future__ import annotations

import random
import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROUNDS = 5
CASES = ("unchanged", "1 % updated", "all updated")


def client(case: str, n: int, render: bool) -> None:
    """One run under valgrind (set-up, then ``ROUNDS`` rounds of updates and maybe renders)."""
    from bench.common import priced_book
    from bench.render import NOW, served
    from exporter.collector import BookCollector

    book = priced_book(n, NOW)
    feed = book.feeds["stocks"]
    names = list(feed.symbols)
    rng = random.Random(14)
    collector = BookCollector(book)
    served(collector)
    served(collector)
    for k in range(1, ROUNDS + 1):
        if case == "1 % updated":
            for symbol in rng.sample(names, max(1, n // 100)):
                feed.record(symbol, 101.0 + k, int(NOW * 1000) + k, NOW, quote=True)
        elif case == "all updated":   # each at its own price, venue and receive time (bench.render)
            for i, symbol in enumerate(names):
                received = NOW - 1.0 + i / n - k % 2 * 0.0005   # moved since the last round, as in a real update
                feed.record(symbol, 100.0 + i * 0.01 + k * 0.0001, int(received * 1000) - 3 - k % 2, received,
                            quote=True)
        if render:
            served(collector)


def instructions(case: str, n: int, render: bool) -> tuple[int, collections.Counter[str]]:
    """The run's instructions, and its instructions per C function (self cost)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        err = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no",
                              f"--cachegrind-out-file={out}", sys.executable, "-m", "bench.rendergrind",
                              "--client", case, str(n), "1" if render else "0"],
                             capture_output=True, text=True, check=True).stderr
        functions: collections.Counter[str] = collections.Counter()
        name = None
        for line in out.read_text().splitlines():
            if line.startswith("fn="):
                name = line[3:]
            elif name is not None and line[:1].isdigit():
                fields = line.split()
                if len(fields) > 1:
                    functions[name] += int(fields[1])
    return int(re.search(r"I\s+refs:\s+([\d,]+)", err).group(1).replace(",", "")), functions


def main(n: int, functions: int = 0) -> None:
    print(f"Render instructions per served render ({n:,} symbols; cachegrind, {ROUNDS} renders minus none):")
    for case in CASES:
        (with_renders, fns), (without, base) = instructions(case, n, True), instructions(case, n, False)
        per = (with_renders - without) / ROUNDS
        print(f"  {case:<12} {per / 1e6:8.1f} M instructions  ({per / n:,.0f} per symbol)", flush=True)
        if functions:
            fns.subtract(base)
            for name, count in sorted(fns.items(), key=lambda item: -abs(item[1]))[:functions]:
                print(f"      {count / ROUNDS / 1e6:8.2f} M  {name}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        client(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1")
    else:
        args = sys.argv[1:]
        top = 0
        if "--functions" in args:
            at = args.index("--functions")
            top = int(args[at + 1])
            del args[at:at + 2]
        main(int(args[0]) if args else 10_000, top)
