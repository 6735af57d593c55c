"""Injected time.

Everything that asks "what time is it?" goes through a clock object, so the health model,
the trading tracker and the runner's timers are tested by moving a fake clock instead of sleeping.
Times are Unix epoch seconds (float): the same unit the exported ``*_timestamp_seconds`` use.
"""

from __future__ import annotations

import time


class SystemClock:
    """The real wall clock."""

    __slots__ = ()

    def time(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to; for tests and benchmarks."""

    __slots__ = ("now",)

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = float(start)

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    def set(self, when: float) -> None:
        self.now = float(when)
