"""The critical path at its real, committed settings: how long from a condition to its notification.

Nothing is compressed here (``time_scale`` 1, the committed intervals: the feedwatch job scraped
every 5s, the critical-path rule groups evaluated every 5s, 15s for the rest, Alertmanager's
committed routes). Only the exporter's own thresholds are short (stale after 5 s), which does not
change the delay after a threshold is crossed.

A round switches the bot's kill switch on and its circuit breaker open (the condition is the
moment of the request; the exporter applies the bot's event within milliseconds) and stalls
BTCUSDT, which the bot holds (the condition is the moment the exporter turns it stale: its last
update plus the stale threshold), then takes each notification's arrival at the webhook. Then
everything recovers, and the next round waits until every resolution has been notified.

    python -m tests.integration.critical_path [--rounds N]

prints each round and a summary; then it SIGKILLs the exporter and times the FeedwatchExporterDown
page, ``--down-rounds`` times (restarting it in between). Each round starts after a random pause
of up to 5 s, so the rounds do not all fall on the same phase of the 5 s scrape and evaluation
cycles. The figures are recorded in docs/alerting.md.
tests/integration/test_critical_path.py runs one round in the suite.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import contextlib

from tests.integration.stack import Stack, trading_stack
from tests.waiting import wait_for

STALE_AFTER = 5.0

CRITICAL_PATH = ("TradingKillSwitchActive", "TradingCircuitBreakerOpen", "TradingStalePricePosition")


@contextlib.contextmanager
def real_stack(workdir: Path) -> Iterator[Stack]:
    """The stack at the committed timings, the bot and both prices live."""
    with trading_stack(workdir, liveness=False, time_scale=1.0, interval=None, timeout=60) as stack:
        yield stack


def _scenario(stack: Stack, name: str) -> None:
    request = urllib.request.Request(f"{stack.simulators['bot'].control_url}/scenarios/{name}", data=b"",
                                     method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        json.load(response)


def _exporter_value(stack: Stack, series: str) -> float:
    """A sample straight from the exporter's /metrics (the moment Prometheus is not yet told)."""
    with urllib.request.urlopen(f"{stack.exporter_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert match, f"{series} not in the exporter's output"
    return float(match.group(1))


def _first(stack: Stack, since: int, name: str, status: str, deadline: float) -> dict[str, Any]:
    return stack.wait_for_alert(lambda a: a["labels"]["alertname"] == name and a["status"] == status,
                                timeout=deadline, since=since, what=f"{name} {status}")


def critical_round(stack: Stack, deadline: float = 60.0) -> dict[str, tuple[float, dict[str, Any]]]:
    """One round; alertname -> (seconds from the condition to the notification, the alert)."""
    mark = len(stack.received)
    switched = time.time()
    _scenario(stack, "kill_switch")
    _scenario(stack, "circuit_breaker")
    stack.fault("crypto", "stall", "BTCUSDT")
    # The stall is on: the last update the exporter accepted does not move any more.
    series = 'feedwatch_symbol_last_update_timestamp_seconds{feed="crypto",symbol="BTCUSDT"}'
    last = wait_for(lambda: (v := _exporter_value(stack, series)) < time.time() - 1 and v, timeout=10,
                    what="BTCUSDT's last update to stop moving")
    conditions = {"TradingKillSwitchActive": switched, "TradingCircuitBreakerOpen": switched,
                  "TradingStalePricePosition": last + STALE_AFTER}
    result = {}
    for name in CRITICAL_PATH:
        alert = _first(stack, mark, name, "firing", deadline)
        result[name] = (alert["_received_at"] - conditions[name], alert)
    return result


def recover(stack: Stack, deadline: float = 120.0) -> None:
    """Everything back to normal, and every resolution notified."""
    mark = len(stack.received)
    _scenario(stack, "recover")
    stack.fault("crypto", "resume")
    for name in CRITICAL_PATH:
        _first(stack, mark, name, "resolved", deadline)


def exporter_down(stack: Stack, deadline: float = 120.0) -> float:
    """SIGKILL the exporter; seconds until FeedwatchExporterDown is notified."""
    mark = len(stack.received)
    killed = time.time()
    stack.kill_exporter()
    return _first(stack, mark, "FeedwatchExporterDown", "firing", deadline)["_received_at"] - killed


def exporter_back(stack: Stack, deadline: float = 120.0) -> None:
    """Start the exporter again; wait until the page's resolution is notified."""
    mark = len(stack.received)
    stack.start_exporter()
    _first(stack, mark, "FeedwatchExporterDown", "resolved", deadline)


def main() -> None:
    import signal
    import sys
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--down-rounds", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random()
    # SIGTERM unwinds like Ctrl-C, so the stack's processes are stopped and the directory removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    delays: dict[str, list[float]] = {name: [] for name in CRITICAL_PATH}
    with tempfile.TemporaryDirectory(prefix="feedwatch-critical-") as tmp, real_stack(Path(tmp)) as stack:
        for n in range(1, args.rounds + 1):
            time.sleep(rng.uniform(0.0, 5.0))  # a measurement, not a test: spread the phases
            result = critical_round(stack)
            for name, (delay, _) in result.items():
                delays[name].append(delay)
            print(f"round {n}: " + ", ".join(f"{name} {delay:.1f}s" for name, (delay, _) in result.items()),
                  flush=True)
            recover(stack)
        downs = []
        for n in range(1, args.down_rounds + 1):
            time.sleep(rng.uniform(0.0, 5.0))
            downs.append(exporter_down(stack))
            print(f"exporter killed {n}: FeedwatchExporterDown {downs[-1]:.1f}s", flush=True)
            if n < args.down_rounds:
                exporter_back(stack)
    print(f"\nconditions to notification over {args.rounds} rounds (min / median / max):")
    for name, values in delays.items():
        print(f"  {name:<28} {min(values):5.1f} / {statistics.median(values):5.1f} / {max(values):5.1f} s")
    print(f"  {'FeedwatchExporterDown':<28} {min(downs):5.1f} / {statistics.median(downs):5.1f} / "
          f"{max(downs):5.1f} s after the SIGKILL ({len(downs)} kills)")


if __name__ == "__main__":
    main()
