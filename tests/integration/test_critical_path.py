"""The critical path end to end at the committed settings (nothing compressed): the kill switch,
the circuit breaker and a position on a stale price are notified, and a dead exporter paged, well
within generous deadlines; the measured delays are printed (pytest -s), never asserted as timings.
Their figures over many rounds (``python -m tests.integration.critical_path``) are in
docs/alerting.md. The same committed timings are checked against their 15 s and 30 s budgets by
arithmetic in tests/unit/test_alert_latency.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.critical_path import CRITICAL_PATH, critical_round, exporter_down, real_stack

pytestmark = pytest.mark.integration


def test_the_critical_path_and_the_exporter_down_page_arrive_at_the_committed_settings(tmp_path: Path) -> None:
    with real_stack(tmp_path) as stack:
        result = critical_round(stack, deadline=60)
        for name in CRITICAL_PATH:
            delay, alert = result[name]
            assert alert["receiver"] == "trading-critical", alert
            assert alert["labels"]["severity"] == "critical" and alert["labels"]["account"] == "demo"
            print(f"\n{name} notified {delay:.1f}s after its condition")
        down = exporter_down(stack, deadline=90)
        print(f"FeedwatchExporterDown notified {down:.1f}s after the SIGKILL")
