"""The tick tape's cost per message on the ingest path, counted by cachegrind (load-independent).

    .venv/bin/python -m bench.tapegrind                 # a few minutes: four runs under valgrind
    .venv/bin/python -m bench.tapegrind --tree DIR      # also count DIR's code (e.g. a `git archive` of
                                                        # the commit before), plain, for a before/after

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
_SUMMARY = {"Ir": r"I\s+refs:\s+([\d,]+)", "D1": r"D1\s+misses:\s+([\d,]+)", "LL": r"LL misses:\s+([\d,]+)"}


def client(mode: str, frames: int, path: str) -> None:
    from bench import ingest
    from exporter import book

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
        data.write_bytes(b"\n".join(ingest.make_frames(n_frames=frames)))
        out = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=yes",
                              f"--cachegrind-out-file={Path(tmp) / 'out'}", sys.executable, __file__,
                              "--client", mode, str(frames), str(data)],
                             capture_output=True, text=True, check=True, env=env, cwd=tree or None).stderr
    return {key: int(re.search(pattern, out).group(1).replace(",", "")) for key, pattern in _SUMMARY.items()}


def per_message(mode: str, tree: str | None = None) -> dict[str, float]:
    low, high = (count(mode, n, tree) for n in COUNTS)
    span = (COUNTS[1] - COUNTS[0]) * 100
    result = {key: (high[key] - low[key]) / span for key in low}
    result["cycles"] = result["Ir"] + 10 * result["D1"] + 100 * result["LL"]
    return result


def main(argv: list[str]) -> None:
    tree = argv[argv.index("--tree") + 1] if "--tree" in argv else None
    runs = {"without tape": per_message("plain"), "with tape": per_message("tape")}
    if tree:
        runs[f"before ({tree})"] = per_message("plain", tree)
    base = runs["without tape"]
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
