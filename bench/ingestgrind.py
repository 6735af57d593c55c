"""Ingest cost per message of two source trees, counted by cachegrind: a comparison load cannot skew.

    .venv/bin/python -m bench.ingestgrind BASE [HEAD]     # git revisions; HEAD defaults to the work tree

Wall-clock ingest figures (``python -m bench ingest``) move by far more than a few per cent when
other work shares the two cores, so a change's cost on the hot path is counted instead: each tree
(``git archive`` of the revision, or this checkout) runs the ingest benchmark's own frames
(``bench.ingest.make_frames``: frames of 100 Polygon events over 10,000 symbols, 70 % quotes)
through ``PolygonAdapter.handle`` -> ``FeedBook.apply`` under ``valgrind --tool=cachegrind
--cache-sim=no``, twice: once handling the first 200 frames (the warm-up: every symbol's first
print confirmed), once handling 600. Both runs build the same 600 frames, import the same
modules and start the same interpreter, so the difference is the instructions of 400 frames,
40,000 messages, in steady state; each later frame is newer than the ones before it, so every
message takes the accepted path. Prints instructions per message for each tree and their ratio.
Needs valgrind (Debian package ``valgrind``); about a minute per run.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARM, TOTAL, PER_FRAME = 200, 600, 100

# Run inside valgrind with the tree under test first on sys.path. Only what every tree since
# issue 8's layout has: bench.ingest.make_frames, bench.common, FeedBook(config, now), the adapter.
CHILD = """
import sys
from bench.common import feed_config, symbols
from bench.ingest import T0_MS, make_frames
from exporter.book import FeedBook
from exporter.feeds.polygon import PolygonAdapter
handled = int(sys.argv[1])
frames = make_frames(10_000, {total}, {per_frame})
config = feed_config("stocks", symbols(10_000))
feed = FeedBook(config, T0_MS / 1000)
handle = PolygonAdapter(config, feed, "0").handle
now = T0_MS / 1000 + 10.0
for frame in frames[:handled]:
    handle(frame, now)
""".format(total=TOTAL, per_frame=PER_FRAME)


def _tree(rev: str | None, into: Path) -> Path:
    """The source tree of ``rev`` (a git revision) unpacked under ``into``; this checkout for None."""
    if rev is None:
        return ROOT
    archive = subprocess.run(["git", "archive", rev, "exporter", "bench"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    target = into / rev.replace("/", "_")
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target)
    return target


def _compile(tree: Path) -> None:
    """Byte-compile the tree first: otherwise the first run under valgrind would also count the
    compilation a fresh tree needs and the second run does not, and the difference would lie."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "exporter", "bench"], cwd=tree, check=True)


def instructions(tree: Path, handled: int) -> int:
    """Instructions (Ir) of one run of CHILD on ``tree`` handling ``handled`` frames."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cachegrind.out"
        run = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}",
                              sys.executable, "-c", CHILD, str(handled)],
                             cwd=tree, env={"PYTHONPATH": str(tree), "PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"cachegrind run failed in {tree}:\n{run.stderr[-2000:]}")
        match = re.search(r"I\s+refs:\s+([\d,]+)", run.stderr)
        if not match:
            raise SystemExit(f"no instruction count in valgrind's output:\n{run.stderr[-2000:]}")
        return int(match.group(1).replace(",", ""))


def per_message(tree: Path, label: str) -> float:
    messages = (TOTAL - WARM) * PER_FRAME
    _compile(tree)
    print(f"  {label}: cachegrind, {WARM} frames ...", file=sys.stderr, flush=True)
    base = instructions(tree, WARM)
    print(f"  {label}: cachegrind, {TOTAL} frames ...", file=sys.stderr, flush=True)
    full = instructions(tree, TOTAL)
    return (full - base) / messages


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2 or argv[0].startswith("-"):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    base_rev, head_rev = argv[0], (argv[1] if len(argv) == 2 else None)
    with tempfile.TemporaryDirectory() as tmp:
        base = per_message(_tree(base_rev, Path(tmp)), base_rev)
        head = per_message(_tree(head_rev, Path(tmp)), head_rev or "work tree")
    print(f"instructions per message (cachegrind, {(TOTAL - WARM) * PER_FRAME:,} messages in steady state)")
    print(f"  {base_rev:<12} {base:10,.0f}")
    print(f"  {head_rev or 'work tree':<12} {head:10,.0f}")
    print(f"  ratio        {head / base:10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
