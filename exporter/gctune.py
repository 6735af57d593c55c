"""The garbage collector's settings for a running exporter: ``feedwatch run`` applies them once started.

CPython's cyclic collector runs a young-generation pass every ``threshold0`` (700) net
allocations of container objects, and a full pass, scanning every object still alive, when
the objects promoted since the last full pass exceed a quarter of the old generation. A feed
frame allocates a few such containers and frees them at once (aiohttp's message tuple and its
queue entry; the decoded structs are ``gc=False`` and not tracked), so the default fires a
young pass every few hundred frames for nothing to collect: ~8 % of a single-event Binance
frame's CPU in the issue 14 profile. What the exporter keeps is built at start-up and lives as
long as the process (the configuration, a ``SymbolState`` per watched symbol, the collectors,
the web app), and nothing on the hot path makes reference cycles.

So, once started (``apply``):

- ``gc.freeze()``: everything alive after start-up moves to the permanent generation, which no
  pass scans again (with 100,000 symbols that is ~1M objects a full pass no longer visits);
- ``gc.set_threshold(*THRESHOLDS)``: a young pass every 50,000 net container allocations
  instead of 700, the older generations at their default ratios. Garbage cycles still get
  collected (exceptions with tracebacks, aiohttp's per-request objects): a young generation of
  50,000 small objects is a few MB at most, collected in well under a millisecond.

Measured on single-event Binance frames through the real ``FeedRunner``, tuned and default
alternated in one process: 0.888x CPU per frame (bench/README.md, "Transport"; the benchmark
keeps a default-GC contender beside the tuned one). ``tuned`` applies the same settings for a block and puts the previous
ones back (benchmarks and tests, which share their process with other code).
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator

# (threshold0, threshold1, threshold2): young pass every 50,000 net container allocations; the
# middle and old generations at CPython's default ratios.
THRESHOLDS = (50_000, 10, 10)


def apply() -> dict[str, object]:
    """Tune the collector for a started exporter; what was set, as log fields."""
    gc.collect()   # start-up garbage is not worth freezing
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    return {"gc_frozen": gc.get_freeze_count(), "gc_thresholds": list(gc.get_threshold())}


@contextmanager
def tuned() -> Iterator[None]:
    """``apply`` for the block; the thresholds and the frozen set as they were afterwards."""
    thresholds = gc.get_threshold()
    frozen = gc.get_freeze_count()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if not frozen:
            gc.unfreeze()
