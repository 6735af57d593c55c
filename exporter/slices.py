"""Long passes over every symbol, run in slices so the event loop keeps reading frames.

A pass over 100,000 symbols (a scrape's render, the state sweep) takes tens to hundreds of
milliseconds of Python; run at once on the event loop it is a stall of that length, during which
no frame is read and no request answered (issue 14 measured 480 ms). Such a pass is written as a
generator that yields between chunks of symbols and returns its result; ``run_sliced`` drives it
on the loop, giving the loop back after every ``SLICE`` seconds of work, and ``run_all`` drives it
at once (tests, tools, code that is not on a loop).

Where the loop's iterations are timed (``web/loopwatch.py`` registers when its current iteration
began, with ``time_iterations``), a slice ends ``SLICE`` after the *iteration* began, not after
the pass resumed: what ran before it in the same iteration (a read step, the sweep's slice, a
request) counts too, so passes that resume in one iteration share one budget instead of each
taking a full slice (a render slice and a sweep slice together made iterations over 20 ms). A
pass always does one chunk per turn, so it never stops for good. A pass that starts when the
iteration's budget is already spent gives the loop its turn before its first chunk.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Callable, Generator, TypeVar

T = TypeVar("T")

# Longest stretch a sliced pass holds the loop (plus one chunk): well under the 20 ms stall budget.
SLICE = 0.005
# A pass never starves: when the loop is saturated (frames arriving faster than they are read),
# every turn of the loop is a read step per socket besides the pass's slice, and 5 ms slices
# alone could stretch a render past a scrape timeout. So a pass's slice grows with its age: one
# more SLICE per this many seconds (5 ms at first, 10 ms after 5 s, 20 ms after 15 s). It was
# 1 s while a read step was a whole socket read (20-44 ms under load); since a step is at most
# ``link.STEP_SECONDS`` (4 ms of frames), a 100k-symbol render keeps a share of each turn without
# growing, and slices grown to 8-10 ms in a 700 ms scrape were iterations over 20 ms.
SLICE_GROWTH = 5.0

_perf = time.perf_counter
# Per loop: when its current iteration began (``perf_counter``), as its LoopWatch knows it.
_ITERATION_BEGAN: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Callable[[], float]]" = (
    weakref.WeakKeyDictionary())


def time_iterations(loop: asyncio.AbstractEventLoop, began: Callable[[], float] | None) -> None:
    """Tell the passes on ``loop`` when its current iteration began (``perf_counter`` time);
    None forgets it (each slice then counts from its own start)."""
    if began is None:
        _ITERATION_BEGAN.pop(loop, None)
    else:
        _ITERATION_BEGAN[loop] = began


def run_all(steps: Generator[None, None, T]) -> T:
    """Run a pass to its end at once; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


async def run_sliced(steps: Generator[None, None, T], slice_seconds: float | None = None) -> T:
    """Run a pass on the event loop, yielding to it after each ``slice_seconds`` of work (more as
    the pass ages: ``SLICE_GROWTH``)."""
    budget = SLICE if slice_seconds is None else slice_seconds
    began = _ITERATION_BEGAN.get(asyncio.get_running_loop())
    started = _perf()
    deadline = (began() if began is not None else started) + budget
    if began is not None and started >= deadline:
        # What ran before in this iteration took the budget already (a read step, or the same
        # task's last slice of another pass: the render's, then its body's): the loop's turn
        # first, then this pass's first chunk, or the two would stack in one iteration.
        await asyncio.sleep(0)
        deadline = began() + budget
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
        now = _perf()
        if now >= deadline:
            await asyncio.sleep(0)
            now = _perf()
            deadline = (began() if began is not None else now) + budget * (1.0 + (now - started) / SLICE_GROWTH)
