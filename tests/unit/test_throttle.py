"""``Throttle``: each kind of problem logged at most once a minute, the repeats counted and said."""

from __future__ import annotations

import logging

from exporter.throttle import Throttle

log = logging.getLogger("tests.throttle")


def lines(caplog) -> list[tuple[str, str, int | None, str | None]]:
    return [(r.levelname, r.getMessage(), getattr(r, "suppressed", None), getattr(r, "remote", None))
            for r in caplog.records]


def test_each_kind_is_logged_once_a_minute_with_its_fields_and_its_repeats_said(caplog, skip_ahead):
    caplog.set_level(logging.WARNING, logger="tests.throttle")
    throttle = Throttle(log)
    for peer in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        throttle.warn("refused", "refused a connection from %s", peer, remote=peer)
    throttle.warn("timeout", "closed a slow connection")        # another kind: its own minute
    skip_ahead(59)
    throttle.warn("refused", "refused a connection from %s", "10.0.0.4", remote="10.0.0.4")
    skip_ahead(2)
    throttle.warn("refused", "refused a connection from %s", "10.0.0.5", remote="10.0.0.5")
    throttle.warn("refused", "refused a connection from %s", "10.0.0.6", remote="10.0.0.6")
    assert lines(caplog) == [
        ("WARNING", "refused a connection from 10.0.0.1", None, "10.0.0.1"),
        ("WARNING", "closed a slow connection", None, None),
        ("WARNING", "refused a connection from 10.0.0.5 (3 similar not logged in the last 60s)", 3, "10.0.0.5"),
    ]
    # The line is the caller's, not the throttle's (logger name, function, line in logfmt).
    assert {r.funcName for r in caplog.records} == {
        "test_each_kind_is_logged_once_a_minute_with_its_fields_and_its_repeats_said"}


def test_settle_forgets_the_repeats_but_a_relapse_within_the_minute_stays_quiet(caplog, skip_ahead):
    caplog.set_level(logging.WARNING, logger="tests.throttle")
    throttle = Throttle(log, suffix=" ({suppressed} more since the last report)")
    assert throttle.warn("write", "cannot write") and not throttle.warn("write", "cannot write")
    assert throttle.settle("write") == 1 and throttle.settle("write") == 0
    assert not throttle.warn("write", "cannot write")          # relapsed at once: counted only
    skip_ahead(61)
    assert throttle.warn("write", "cannot write")
    assert lines(caplog) == [("WARNING", "cannot write", None, None),
                             ("WARNING", "cannot write (1 more since the last report)", 1, None)]
