"""The long fuzz run: ``make fuzz``, or ``python -m tests.fuzz [--cases N] [--seed S] [venue ...]``.

Drives the mutation engine of the hypothesis tests (``tests/fuzz/mutate.py``) with a seeded
``random.Random`` through one long-lived adapter per venue (the generic adapter under its three
fixture configurations in turn; every 50,000 cases the target is rebuilt so state stays
bounded), checking the same properties after every frame (``tests/fuzz/harness.py``), the
rendered ``/metrics`` every 5,000 cases, and ``promtool check metrics`` on the last one.

Hypothesis makes ~100 examples a second here (a fresh book per example, shrinking bookkeeping):
fine for CI's few hundred, a day for a million. This loop makes several thousand a second.

Prints a progress line every few seconds and, at the end, per adapter: cases, escapes (an
exception out of ``handle()``), violations (another property failed), cases per second. The
first frames of each distinct failure are written to ``fuzz-findings/`` for turning into
fixtures. Exits 1 if anything escaped or was violated.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.fuzz import mutate
from tests.fuzz.harness import VENUES, Escape, Target, Violation

REBUILD_EVERY = 50_000
RENDER_EVERY = 5_000
PROGRESS_EVERY = 5.0  # seconds
FINDINGS = Path("fuzz-findings")


def run(venue: str, cases: int, seed: int) -> tuple[int, Counter, Counter, float]:
    rng = random.Random(f"{seed}-{venue}")
    seed_frames = mutate.seeds(venue)
    variants = 3 if venue == "generic" else 1
    targets = [Target(venue, v) for v in range(variants)]
    escapes: Counter = Counter()
    violations: Counter = Counter()
    started = last_report = time.monotonic()
    for i in range(1, cases + 1):
        target = targets[i % variants]
        data = mutate.make_case(rng, seed_frames)
        try:
            target.feed_frame(data)
        except Escape as exc:
            _record(venue, "escape", f"{type(exc.exc).__name__}: {exc.exc}", data, escapes)
        except Violation as exc:
            _record(venue, "violation", str(exc), data, violations)
        if i % RENDER_EVERY == 0 or i == cases:
            for t in targets:
                try:
                    t.check_render()
                except Violation as exc:
                    _record(venue, "violation", f"render: {exc}", b"", violations)
        if i % REBUILD_EVERY == 0 and i < cases:
            targets = [Target(venue, v) for v in range(variants)]
        now = time.monotonic()
        if now - last_report >= PROGRESS_EVERY:
            last_report = now
            print(f"fuzz {venue}: {i:,}/{cases:,} cases, {sum(escapes.values())} escapes, "
                  f"{sum(violations.values())} violations, {i / (now - started):,.0f} cases/s", flush=True)
    for t in targets:
        result = subprocess.run(["promtool", "check", "metrics"], input=t.render().encode(), capture_output=True,
                                timeout=60)
        if result.returncode != 0 or result.stdout or result.stderr:
            _record(venue, "violation", "promtool: " + (result.stdout + result.stderr).decode()[:300], b"", violations)
    return cases, escapes, violations, time.monotonic() - started


def _record(venue: str, what: str, key: str, data: bytes | str, seen: Counter) -> None:
    key = key[:160]
    if key not in seen:
        print(f"fuzz {venue}: {what}: {key}\n    frame: {data[:300]!r}", flush=True)
        FINDINGS.mkdir(exist_ok=True)
        raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")
        (FINDINGS / f"{venue}-{what}-{len(seen) + 1}.bin").write_bytes(raw)
    seen[key] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("venues", nargs="*", default=list(VENUES), help=f"adapters to fuzz (default: {', '.join(VENUES)})")
    parser.add_argument("--cases", type=int, default=1_000_000, help="cases per adapter (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="seed (default: the time; printed)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.venues) - set(VENUES))
    if unknown:
        parser.error(f"unknown adapter(s) {', '.join(unknown)}; choose from {', '.join(VENUES)}")
    print(f"fuzz: {args.cases:,} cases per adapter, seed {args.seed}", flush=True)
    totals = []
    for venue in args.venues:
        totals.append((venue, *run(venue, args.cases, args.seed)))
    print("\nadapter    cases        escapes  violations  cases/s")
    failed = False
    for venue, cases, escapes, violations, seconds in totals:
        print(f"{venue:<10} {cases:>11,}  {sum(escapes.values()):>7}  {sum(violations.values()):>10}  "
              f"{cases / seconds:>7,.0f}")
        for key, count in (escapes + violations).most_common():
            print(f"    {count:>7} x {key}")
        failed = failed or bool(escapes or violations)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
