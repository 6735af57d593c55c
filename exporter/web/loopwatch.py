"""How long the event loop goes without looking at its sockets: every stall, measured as it is.

Why not a timer probe (what ``feedwatch_event_loop_lag_seconds`` used to be): a timer that wakes
every 0.5 s sees only the part of a stall that falls after its own deadline, and the next check
overwrites it. A 480 ms render showed as anything from 0 to 480 ms, and usually as nothing by
the time Prometheus scraped (issue 14 measured at most 23 ms through 480 ms stalls).

What this measures instead: the asyncio loop runs in iterations, each one poll for I/O
(``selector.select``) followed by every callback that became ready. The time from one poll's
return to the next poll's start is how long the loop ran Python code without reading a socket:
a frame or request that arrived at the start of that iteration waited that long. ``LoopWatch``
wraps the loop's selector and times exactly that, so a callback that blocks 480 ms makes one
iteration of at least 480 ms, whatever its phase. Cost: two ``perf_counter`` calls and a few
additions per iteration (not per frame: one iteration reads many frames), and a bucket search
only for iterations longer than the first bucket (1 ms).

Rendered as (``selfmetrics.py`` registers the collector)::

    # HELP feedwatch_event_loop_lag_seconds Longest time the event loop ran callbacks without polling its sockets (one loop iteration) in the last 60 s; 0 when none took over 1 ms.
    # TYPE feedwatch_event_loop_lag_seconds gauge
    feedwatch_event_loop_lag_seconds 0.481
    # HELP feedwatch_event_loop_iteration_seconds Time each event loop iteration spent running callbacks between two polls for I/O.
    # TYPE feedwatch_event_loop_iteration_seconds histogram
    feedwatch_event_loop_iteration_seconds_bucket{le="0.001"} 91234
    ... one bucket per ITERATION_BUCKETS, cumulative
    feedwatch_event_loop_iteration_seconds_bucket{le="+Inf"} 91302
    feedwatch_event_loop_iteration_seconds_sum 12.5
    feedwatch_event_loop_iteration_seconds_count 91302

A loop without a selector to wrap (uvloop, a proactor) gets a timer probe instead
(``LoopWatch.probe``): 10 ms sleeps, each wake-up's lateness observed the same way. It misses
up to 10 ms of a stall's start; the docs say so.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from bisect import bisect_left
from typing import Any

from exporter import slices

# Buckets of the iteration histogram, in seconds (le); the first is also the slow-path threshold.
ITERATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The gauge reports the longest iteration within this many seconds (several scrape intervals:
# a stall stays visible to every scraper, whichever scraped last).
WINDOW = 60
PROBE_INTERVAL = 0.01

_perf = time.perf_counter
_FLOOR = ITERATION_BUCKETS[0]
_WATCHES: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWatch]" = weakref.WeakKeyDictionary()


class LoopWatch:
    """Iteration times of one event loop: a histogram and the longest in the last ``WINDOW`` s.

    ``LoopWatch.start(loop)`` returns the loop's watch (one per loop, shared by every app on it;
    each ``start`` is matched by a ``stop``, the last one puts the loop's own selector back).
    """

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        # Per-bucket (not cumulative) counts of iterations over the first bucket; index 0 unused:
        # the first bucket's count is ``count`` minus the others, kept without a search.
        self.slow = [0] * (len(ITERATION_BUCKETS) + 1)
        # The longest iteration of each second of the window: slot i holds second ``ids[i]``.
        self.ids = [-1] * WINDOW
        self.peaks = [0.0] * WINDOW
        self.users = 0
        self._inner: Any = None
        self._proxy: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._probe: asyncio.Task | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def start(cls, loop: asyncio.AbstractEventLoop | None = None) -> "LoopWatch":
        loop = loop or asyncio.get_running_loop()
        watch = _WATCHES.get(loop)
        if watch is None:
            watch = _WATCHES[loop] = cls()
        if watch.users == 0:
            watch._install(loop)
        watch.users += 1
        return watch

    def stop(self) -> None:
        self.users -= 1
        if self.users > 0:
            return
        loop = self._loop
        if self._inner is not None and loop is not None and getattr(loop, "_selector", None) is self._proxy:
            loop._selector = self._inner  # type: ignore[attr-defined]
        if loop is not None:
            slices.time_iterations(loop, None)
        if self._probe is not None:
            self._probe.cancel()
        self._inner = self._proxy = self._probe = self._loop = None

    @property
    def precise(self) -> bool:
        """True when the loop's selector is wrapped (every stall measured whole)."""
        return self._inner is not None

    def _install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        inner = getattr(loop, "_selector", None)
        if inner is None or not hasattr(inner, "select"):
            self._probe = loop.create_task(self.probe(), name="feedwatch-loop-probe")
            return
        self._inner = inner
        self._proxy = proxy = _TimedSelector(inner, self)
        loop._selector = proxy  # type: ignore[attr-defined]
        slices.time_iterations(loop, lambda: proxy._woke)   # sliced passes share the iteration's budget

    async def probe(self, interval: float = PROBE_INTERVAL) -> None:
        """The fallback: how late each ``interval`` sleep wakes is observed as an iteration."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(interval)
            lag = loop.time() - start - interval
            self.observe(lag if lag > 0.0 else 0.0, _perf())

    # --- recording (once per loop iteration) --------------------------------------------------

    def observe(self, busy: float, now: float) -> None:
        self.count += 1
        self.total += busy
        if busy > _FLOOR:
            self._slow(busy, now)

    def _slow(self, busy: float, now: float) -> None:
        self.slow[bisect_left(ITERATION_BUCKETS, busy)] += 1
        second = int(now)
        slot = second % WINDOW
        if self.ids[slot] != second:
            self.ids[slot] = second
            self.peaks[slot] = busy
        elif busy > self.peaks[slot]:
            self.peaks[slot] = busy

    # --- reading (scrape time) ----------------------------------------------------------------

    def longest(self, now: float | None = None) -> float:
        """The longest iteration over 1 ms in the last ``WINDOW`` seconds (0.0 if none)."""
        second = int(_perf() if now is None else now)
        return max((peak for sid, peak in zip(self.ids, self.peaks) if second - sid < WINDOW), default=0.0)

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative (le, count) pairs, ending with +Inf (= ``count``)."""
        slow = list(self.slow)   # before ``count``: an iteration in ``slow`` is always in ``count``
        count = self.count
        cumulative = count - sum(slow)
        out = [(repr(ITERATION_BUCKETS[0]), cumulative)]
        for le, n in zip(ITERATION_BUCKETS[1:], slow[1:]):
            cumulative += n
            out.append((repr(le), cumulative))
        out.append(("+Inf", count))
        return out


class _TimedSelector:
    """The loop's selector, with ``select`` timed; every other method is the inner one's."""

    def __init__(self, inner: Any, watch: LoopWatch) -> None:
        self._inner_select = inner.select
        self._watch = watch
        self._woke = _perf()
        # Bound once: the loop calls these on every reader change, so no __getattr__ hop.
        for name in ("register", "unregister", "modify", "get_key", "get_map", "close", "fileno"):
            if hasattr(inner, name):
                setattr(self, name, getattr(inner, name))
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def select(self, timeout: float | None = None) -> list:
        started = _perf()
        watch = self._watch
        busy = started - self._woke
        watch.count += 1
        watch.total += busy
        if busy > _FLOOR:
            watch._slow(busy, started)
        events = self._inner_select(timeout)
        self._woke = _perf()
        return events
