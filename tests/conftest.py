"""Shared fixtures: a fake clock per test, the monotonic clock moved ahead (log rate limits), and
helpers to wait on conditions with a deadline.

Tests never sleep for a fixed time: they poll a condition until it holds or a deadline passes,
and the deadline failure says what was being waited for.

Under pytest-xdist (``make test`` runs ``-n 2``) an integration test file runs whole on one
worker, in order: its tests share a module's real stack (Prometheus, Alertmanager, databases),
started once. Unit and fuzz tests are spread one by one, so a long parametrized file (the rule
mutations: a promtool run each) is shared by both workers. (xdist's own ``--dist loadgroup``
would say the same with marks, but it does not group under pytest 9.2: it renames
``item._nodeid``, which pytest no longer reads.)
"""

from __future__ import annotations

import time
from typing import Callable

import pytest

from exporter.clock import FakeClock

INTEGRATION = "tests/integration/"


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, called only under -n
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``-n N`` (xdist's "load" distribution): integration files kept whole, the rest test by test.
    An explicit ``--dist`` other than ``load`` gets xdist's own scheduler."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class IntegrationFilesWhole(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path.startswith(INTEGRATION) else nodeid

    return IntegrationFilesWhole(config, log)  # type: ignore[arg-type]


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
