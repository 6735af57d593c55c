"""exporter/gctune.py: the collector settings ``feedwatch run`` applies once started (the CLI test
checks they are applied there), and ``tuned`` putting the previous ones back."""

from __future__ import annotations

import gc

from exporter import gctune


def test_tuned_sets_the_thresholds_freezes_and_restores() -> None:
    before = gc.get_threshold()
    assert before != gctune.THRESHOLDS
    frozen = gc.get_freeze_count()  # 0 unless something in this process froze before
    kept = [[] for _ in range(10)]  # noqa: F841 (tracked, alive: frozen by tuned())
    with gctune.tuned():
        assert gc.get_threshold() == gctune.THRESHOLDS
        assert gc.get_freeze_count() > frozen
    assert gc.get_threshold() == before
    if frozen == 0:
        assert gc.get_freeze_count() == 0


def test_garbage_cycles_are_still_collected_automatically_when_tuned() -> None:
    class Node:
        pass

    with gctune.tuned():
        before = gc.get_stats()
        for _ in range(30_000):  # cycles only the collector can free: 4 tracked objects each
            a, b = Node(), Node()
            a.other, b.other = b, a
        after = gc.get_stats()
    # Young passes ran by themselves (120,000 allocations > 50,000) and freed cycles.
    assert after[0]["collections"] > before[0]["collections"]
    assert sum(a["collected"] - b["collected"] for a, b in zip(after, before)) >= 40_000
