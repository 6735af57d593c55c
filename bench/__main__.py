"""Run the benchmarks: ``python -m bench [ingest] [render] [memory] [transport] [scrape-load] [capacity]`` (all by default).

A progress line on stderr shows the round in flight; the tables go to stdout. Run it on an
otherwise idle machine: the figures are best-of-N, but two cores are easily disturbed.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench import capacity, common, ingest, memory, render, scrape_load, transport

BENCHMARKS = {
    "ingest": lambda: ingest.report(ingest.measure()),
    "render": lambda: render.report(render.measure()),
    "memory": lambda: memory.report(memory.measure()),
    "transport": lambda: transport.report(transport.measure()),
    "scrape-load": lambda: scrape_load.report(scrape_load.measure()),
    # CPU time and bytes per message, symbol and scrape, and the replicas example loads need
    # (docs/scaling.md, "Capacity"); `python -m bench.capacity --symbols N --rate R` plans for yours.
    "capacity": lambda: capacity.report(capacity.measure()),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="feedwatch benchmarks")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"which benchmarks to run: {', '.join(BENCHMARKS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    print(f"machine: {common.machine()}")
    print(f"command: python -m bench {' '.join(args.names)}".rstrip())
    for name in names:
        started = time.perf_counter()
        print()
        print(BENCHMARKS[name]())
        print(f"  ({name} took {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
