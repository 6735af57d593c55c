"""Shared fixtures: a fake clock per test, the monotonic clock moved ahead (log rate limits), and
helpers to wait on conditions with a deadline.

Tests never sleep for a fixed time: they poll a condition until it holds or a deadline passes,
and the deadline failure says what was being waited for.
"""

from __future__ import annotations

import time
from typing import Callable

import pytest

from exporter.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def skip_ahead(monkeypatch) -> Callable[[float], None]:
    """``skip_ahead(61)``: ``time.monotonic`` (the log throttles' clock, and the event loop's)
    runs 61 s ahead of the real one from now on, as if a minute had passed; undone after the test.
    For rate limits counted in minutes, which a test cannot wait for."""
    real = time.monotonic
    ahead = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: real() + ahead[0])

    def skip(seconds: float) -> None:
        ahead[0] += seconds

    return skip
