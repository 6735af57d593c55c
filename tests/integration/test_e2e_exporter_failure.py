"""Chaos, end to end: the exporter is SIGKILLed, then Prometheus loses its target, while symbol and
trading alerts fire; the notifications must never say "resolved" for what did not recover.

One stack for the module (tests/integration/stack.py, everything real, time compressed 30x): a
Polygon-dialect price feed ``crypto`` (BTCUSDT, ETHUSDT), the trading simulator as the bot's
event stream, account ``demo`` holding BTCUSDT, a state file, and Prometheus scraping the exporter
through a proxy the test can cut. The bot's kill switch is on, its equity 25 % under its peak, and
BTCUSDT's price stalled, so FeedSymbolStale, TradingKillSwitchActive, TradingDrawdown* and
TradingStalePricePosition fire. Then, in file order:

1. SIGKILL the exporter. FeedwatchExporterDown is paged to both teams; every alert stays firing
   and nothing is notified "resolved" while it is dead, though the bot switches its kill switch
   off meanwhile. Restarted (same port, config and state file), the exporter learns of the kill
   switch (the bot replays its recent events): that alert, and the page, resolve; the stalled
   symbol, the drawdown and the position on the stale price stay firing, without being notified
   again, even while the fresh process still counts BTCUSDT's age from its new subscription.
2. Cut the scrape proxy (the exporter runs on, unreachable): the same, and what changed while
   nobody could see it (the kill switch, on again then off) resolves once it is reachable.

"Nothing was notified" is checked after a sentinel alert has gone through each group
(``Stack.flush_group``), never after a fixed wait. On main before the fix, the first kill
notified "resolved" for every one of these alerts within seconds.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any, Callable, Iterator

import pytest

from tests.integration.stack import Stack, trading_stack
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

EXPORTER = {"job": "feedwatch"}  # plus the instance, found at run time

# What must keep firing through every failure: (alertname, distinguishing labels).
HELD = [
    ("FeedSymbolStale", {"severity": "critical", "feed": "crypto", "symbol": "BTCUSDT"}),
    ("TradingDrawdownDaily", {"severity": "critical", "account": "demo"}),
    ("TradingStalePricePosition", {"severity": "critical", "account": "demo", "symbol": "BTCUSDT"}),
]
KILL_SWITCH = ("TradingKillSwitchActive", {"severity": "critical", "account": "demo"})


def _scenario(stack: Stack, name: str) -> None:
    request = urllib.request.Request(f"{stack.simulators['bot'].control_url}/scenarios/{name}", data=b"",
                                     method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.load(response)["scenario"]["accounts"] == ["demo"]


def _matches(alert: dict[str, Any], name: str, labels: dict[str, str]) -> bool:
    return (alert["labels"]["alertname"] == name and "sentinel" not in alert["labels"]
            and all(alert["labels"].get(k) == v for k, v in labels.items()))


def _notified(stack: Stack, name: str, labels: dict[str, str], status: str, since: int = 0) -> bool:
    return any(_matches(a, name, labels) and a["status"] == status for a in stack.alerts(since))


def _group_of(name: str, labels: dict[str, str]) -> dict[str, str]:
    """Labels that put a sentinel into the Alertmanager group of this alert (and its route)."""
    team = "trading" if name.startswith("Trading") else "data"
    keep = {k: v for k, v in labels.items() if k in ("severity", "feed", "account")}
    return {"alertname": name, "team": team, **keep, "symbol": "sentinel", "market": "always"}


def _flush_all(stack: Stack) -> None:
    for name, labels in [*HELD, KILL_SWITCH]:
        stack.flush_group(_group_of(name, labels))


def _resolved_since(stack: Stack, mark: int) -> list[str]:
    return sorted({f"{a['labels']['alertname']} {a['labels'].get('symbol') or a['labels'].get('account', '')}".strip()
                   for a in stack.alerts(mark) if a["status"] == "resolved" and "sentinel" not in a["labels"]})


def _renotified(stack: Stack, since: int) -> list[str]:
    """HELD alerts notified as firing since ``since`` by a notification that no sentinel caused
    (a sentinel's notification lists its group's firing alerts too)."""
    found = []
    for note in stack.received[since:]:
        if any("sentinel" in a["labels"] for a in note["alerts"]):
            continue
        found += [name for name, labels in HELD for a in note["alerts"]
                  if _matches(a, name, labels) and a["status"] == "firing"]
    return found


def _firing_in_alertmanager(stack: Stack, name: str, labels: dict[str, str]) -> bool:
    return any(_matches(a, name, labels) for a in stack.alertmanager_alerts())


def _exporter_down_paged(stack: Stack, since: int) -> bool:
    receivers = {a["receiver"] for a in stack.alerts(since)
                 if a["labels"]["alertname"] == "FeedwatchExporterDown" and a["status"] == "firing"}
    return receivers == {"data-critical", "trading-critical"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("e2e-exporter-failure")
    with trading_stack(workdir, state_file=workdir / "trading.sqlite", scrape_proxy=True) as running:
        _scenario(running, "kill_switch")
        _scenario(running, "drawdown")
        running.fault("crypto", "stall", "BTCUSDT")
        for name, labels in [*HELD, KILL_SWITCH]:
            running.wait_for_alert(lambda a, n=name, l=labels: _matches(a, n, l) and a["status"] == "firing",
                                   timeout=60, what=f"{name} {labels} firing")
        yield running


def _blind_then_back(stack: Stack, blind: Callable[[], None], restore: Callable[[], None], what: str, *,
                     while_blind: Callable[[], None] | None = None, once_back: Callable[[], None] | None = None) -> None:
    """The sequence both failures run. ``blind`` makes the exporter unobservable: FeedwatchExporterDown
    is paged to both teams, and nothing is notified "resolved" while the bot switches its kill
    switch off (``while_blind`` runs after that). ``restore`` makes it observable again: the page
    and the kill switch resolve, and only they (``once_back`` runs before that is checked); the
    HELD alerts stay firing and are never notified again."""
    mark = len(stack.received)
    blinded_at = time.time()
    blind()
    wait_for(lambda: _notified(stack, "FeedwatchExporterDown", {}, "firing", mark), timeout=30, interval=0.1,
             what="FeedwatchExporterDown notified")
    page = next(a for a in stack.alerts(mark) if a["labels"]["alertname"] == "FeedwatchExporterDown")
    print(f"\nFeedwatchExporterDown notified {page['_received_at'] - blinded_at:.1f}s after {what} "
          f"(compressed 30x)")

    # While nobody can see it, the bot switches its kill switch off.
    _scenario(stack, "kill_switch_off")
    if while_blind is not None:
        while_blind()
    _flush_all(stack)
    assert _resolved_since(stack, mark) == [], stack.describe_received()
    for name, labels in [*HELD, KILL_SWITCH]:
        assert _firing_in_alertmanager(stack, name, labels), f"{name} {labels} no longer active"
    # The page is critical, and went to both teams (the trading desk's alerts are blind too).
    assert page["labels"]["severity"] == "critical" and page["labels"]["reason"] == "scrape_failing"
    wait_for(lambda: _exporter_down_paged(stack, mark), timeout=10, interval=0.1,
             what="FeedwatchExporterDown notified to data-critical and trading-critical")

    back = len(stack.received)
    restore()
    wait_for(lambda: _notified(stack, "FeedwatchExporterDown", {}, "resolved", back), timeout=30,
             what="FeedwatchExporterDown resolved")
    stack.wait_for_alert(lambda a: _matches(a, *KILL_SWITCH) and a["status"] == "resolved", since=back,
                         timeout=30, what="the kill switch, really off, resolved once visible")
    if once_back is not None:
        once_back()
    # Only after every group has flushed is the absence of a resolution proof.
    _flush_all(stack)
    assert _resolved_since(stack, mark) == ["FeedwatchExporterDown", f"{KILL_SWITCH[0]} demo"], \
        stack.describe_received()
    # Nor notified again as if new (as on main, where they "fired again" after a restart): their
    # groups never changed.
    for name, labels in HELD:
        assert _firing_in_alertmanager(stack, name, labels), f"{name} {labels} no longer active"
    assert _renotified(stack, mark) == [], stack.describe_received()


def test_a_killed_exporter_resolves_nothing_and_only_what_recovered_resolves_after_restart(stack: Stack) -> None:
    # Restarted on the same port, config and state file, the exporter learns of the kill switch
    # (the bot replays its recent events). It counts BTCUSDT's age from its new subscription:
    # "healthy" for its first seconds, until it sees the stall for itself.
    _blind_then_back(
        stack, stack.kill_exporter, stack.start_exporter, "the SIGKILL",
        once_back=lambda: wait_for(lambda: stack.query('feedwatch_symbol_state{feed="crypto",symbol="BTCUSDT"} >= 2'),
                                   timeout=30, what="the restarted exporter reporting BTCUSDT stale by itself"))


def test_a_lost_target_resolves_nothing_until_it_is_reachable_again(stack: Stack) -> None:
    _scenario(stack, "kill_switch")
    on = len(stack.received)
    stack.wait_for_alert(lambda a: _matches(a, *KILL_SWITCH) and a["status"] == "firing", since=on,
                         timeout=30, what="the kill switch on again, notified")

    def exporter_knows() -> bool:   # the exporter runs on, unreachable: it knows, nobody else does
        with urllib.request.urlopen(f"{stack.exporter_url}/metrics", timeout=5) as response:
            return 'feedwatch_trading_kill_switch_active{account="demo"} 0' in response.read().decode()

    _blind_then_back(stack, stack.cut_scrapes, stack.restore_scrapes, "the scrapes were cut",
                     while_blind=lambda: wait_for(exporter_knows, timeout=30,
                                                  what="the exporter itself seeing the kill switch off"))
