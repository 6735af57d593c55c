"""Shared fixtures: a fake clock per test, and helpers to wait on conditions with a deadline.

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
