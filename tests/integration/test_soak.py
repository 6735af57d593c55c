"""The soak harness (``make soak``, tests/soak.py) in a short run, and its verdicts.

The hour-long run is a separate make target; here it runs for seconds so the harness itself
stays honest: real simulator and exporter processes, every sent event accounted for.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.soak import Summary, counters, judge

pytestmark = pytest.mark.integration


def test_a_short_soak_accounts_for_every_update():
    result = subprocess.run([sys.executable, "-m", "tests.soak", "--duration", "12", "--symbols", "300",
                             "--warmup", "4", "--progress", "4"], capture_output=True, text=True, timeout=240)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0, (summary["problems"], result.stderr[-2000:])
    assert summary["sent"] > 300 * 10 and summary["lost"] == 0 and summary["disconnects"] == 0
    assert summary["accepted"] + summary["rejected"] == summary["sent"]
    assert summary["scrapes"] >= 10 and summary["scrape_failures"] == 0


def test_counters_sum_the_accounting_series():
    text = ('feedwatch_symbol_updates_total{feed="a",symbol="X"} 5\n'
            'feedwatch_symbol_updates_total{feed="a",symbol="Y"} 7\n'
            'feedwatch_feed_rejected_updates_total{feed="a",reason="nan_price"} 2\n'
            'feedwatch_feed_disconnects_total{feed="a",reason="network_error"} 1\n'
            'feedwatch_feed_disconnects_total{feed="a",reason="shutdown"} 3\n')
    assert counters(text) == {"accepted": 12.0, "rejected": 2.0, "disconnects": 1.0}


@pytest.mark.parametrize("change, problem", [
    ({"sent": 101}, "1 update(s) lost"),
    ({"disconnects": 1}, "1 disconnect(s)"),
    ({"rss_end_mib": 60.0}, "memory grew 10.0 MiB"),
])
def test_the_verdict_fails_on_loss_disconnects_and_growth(change, problem):
    fine = dict(sent=100, accepted=90, rejected=10, lost=0, disconnects=0, rss_after_warmup_mib=50.0,
                rss_end_mib=52.0)
    judge(ok := Summary(**fine), 0.05)
    assert ok.problems == []
    fine.update(change)
    fine["lost"] = fine["sent"] - fine["accepted"] - fine["rejected"]
    judge(bad := Summary(**fine), 0.05)
    assert any(problem in p for p in bad.problems), bad.problems
