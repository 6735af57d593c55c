"""Shared fixtures: a fake clock per test, and helpers to wait on conditions with a deadline.

Tests never sleep for a fixed time: they poll a condition until it holds or a deadline passes,
and the deadline failure says what was being waited for.
"""

from __future__ import annotations

import pytest

from exporter.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)
