"""End to end, the detectors that catch what staleness alone misses: a simulator fault on one
side, the notification on the other, through the real exporter, Prometheus and Alertmanager.

One stack for the module (tests/integration/stack.py: committed rules and routes with for:,
group_wait and group_interval compressed 30x, scrape and evaluation every second), five
simulated venues, and an exporter config whose detector settings are compressed too (a price is
frozen after 20 repeats over 3 s instead of 300 over 10 minutes). The tests run in file order;
each leaves the stack as it found it, and the flood, which loads the exporter, runs last:

1. ``freeze:AAPL`` -> FeedSymbolFrozen for stocks/AAPL, the bot API says not fresh because
   frozen; resolved once the price moves again.
2. MSFT learns its rhythm (adaptive thresholds; its static ones are minutes): ``stall:MSFT`` ->
   the critical FeedSymbolStale within seconds, saying how often MSFT normally updates.
3. BTCUSDT on Binance, Bybit and a second Binance-dialect venue (``instruments:``):
   ``skew:BTCUSDT:1.05`` on Bybit -> FeedPriceDeviation for bybit only; resolved after resume.
4. ``flood`` on a fifth venue -> the exporter cannot keep up: its processing lag for that feed
   rises in Prometheus, and FeedwatchFallingBehind is notified.

The delays are printed (pytest -s), never asserted.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any, Iterator

import pytest

from tests.integration.stack import E2E_API_KEY, Stack, running_stack
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

CONFIG = """
thresholds: {degraded: 5s, stale: 8s, critical: 1h}
feeds:
  - name: stocks
    kind: polygon
    url: ${SIM_STOCKS_URL}
    api_key: e2e-key
    channels: [T, Q]
    symbols: [AAPL, MSFT]
    ping_interval: 1s
    heartbeat_timeout: 5s
    reconnect: {initial_delay: 200ms, max_delay: 1s, reset_after: 5s}
    # Frozen after 20 repeated trades over 3 s (the defaults are 300 over 10 minutes).
    thresholds: {frozen: {updates: 20, duration: 3s}}
    symbol_thresholds:
      # Static thresholds of minutes, as a quiet symbol would get; adaptive ones learned from its
      # ~1 s rhythm (the sweep's resolution): stale at 4 x 1 s, never under 2 s.
      MSFT: {degraded: 2m, stale: 4m, adaptive: {enabled: true, warmup: 5, k: 4, k_degraded: 2, floor: 2s}}
  - name: binance
    kind: binance
    url: ${SIM_BINANCE_URL}
    streams: [trade]
    symbols: [BTCUSDT]
    reconnect: {initial_delay: 200ms, max_delay: 1s, reset_after: 5s}
  - name: bybit
    kind: bybit
    url: ${SIM_BYBIT_URL}/v5/public/spot
    channels: [publicTrade]
    symbols: [BTCUSDT]
    ping_interval: 1s
    reconnect: {initial_delay: 200ms, max_delay: 1s, reset_after: 5s}
  - name: binanceus
    kind: binance
    url: ${SIM_BINANCEUS_URL}
    streams: [trade]
    symbols: [BTCUSDT]
    reconnect: {initial_delay: 200ms, max_delay: 1s, reset_after: 5s}
  - name: firehose
    kind: polygon
    url: ${SIM_FIREHOSE_URL}
    api_key: e2e-key
    channels: [Q]
    symbols: [FIRE, HOSE]
    ping_interval: 1s
    heartbeat_timeout: 10s
    thresholds: {frozen: {updates: 0}}
instruments:
  BTCUSDT: {binance: BTCUSDT, bybit: BTCUSDT, binanceus: BTCUSDT}
"""

SIMULATORS = {
    "stocks": ["--venue", "polygon", "--symbols", "AAPL,MSFT", "--rate", "10", "--api-key", E2E_API_KEY,
               "--seed", "7"],
    "binance": ["--venue", "binance", "--symbols", "BTCUSDT", "--rate", "10", "--seed", "1"],
    "bybit": ["--venue", "bybit", "--symbols", "BTCUSDT", "--rate", "10", "--seed", "2"],
    "binanceus": ["--venue", "binance", "--symbols", "BTCUSDT", "--rate", "10", "--seed", "3"],
    "firehose": ["--venue", "polygon", "--symbols", "FIRE,HOSE", "--rate", "5", "--api-key", E2E_API_KEY,
                 "--seed", "9"],
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("e2e-detectors"), exporter_config=CONFIG,
                       simulators=SIMULATORS) as running:
        wait_for(lambda: len(running.query("feedwatch_symbol_state == 0")) == 7,
                 timeout=40, what="every symbol of every feed healthy in Prometheus")
        yield running


def _labels(alert: dict[str, Any]) -> dict[str, str]:
    return alert["labels"]


def _firing(name: str, **labels: str):
    return lambda a: (_labels(a)["alertname"] == name and a["status"] == "firing"
                      and all(_labels(a).get(k) == v for k, v in labels.items()))


def _resolved(name: str, **labels: str):
    return lambda a: (_labels(a)["alertname"] == name and a["status"] == "resolved"
                      and all(_labels(a).get(k) == v for k, v in labels.items()))


def _symbol(stack: Stack, feed: str, symbol: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{stack.exporter_url}/api/v1/symbols/{feed}/{symbol}", timeout=5) as resp:
        return json.load(resp)


def test_a_frozen_price_is_notified_and_not_fresh(stack: Stack) -> None:
    mark = len(stack.received)
    frozen_at = time.time()
    stack.fault("stocks", "freeze", "AAPL")
    alert = stack.wait_for_alert(_firing("FeedSymbolFrozen", feed="stocks", symbol="AAPL"), timeout=40,
                                 since=mark, what="FeedSymbolFrozen for stocks/AAPL")
    labels = _labels(alert)
    assert (labels["severity"], labels["team"], labels["market"]) == ("critical", "data", "always")
    assert alert["receiver"] == "data-critical"
    assert "AAPL on stocks keeps updating at one unchanged price" in alert["annotations"]["description"]
    assert alert["annotations"]["runbook_url"].endswith("/docs/runbook.md#feedsymbolfrozen")
    print(f"\nFeedSymbolFrozen notified {alert['_received_at'] - frozen_at:.1f}s after AAPL froze "
          f"(the exporter needs 3s of repeats)")
    # The bot API: still updating (healthy), but not fresh, and it says why.
    view = _symbol(stack, "stocks", "AAPL")
    assert (view["state"], view["fresh"], view["frozen"], view["reason"]) == ("healthy", False, True, "frozen")
    assert _symbol(stack, "stocks", "MSFT")["fresh"] is True
    # Only AAPL froze.
    assert {_labels(a).get("symbol") for a in stack.alerts(mark) if _labels(a)["alertname"] == "FeedSymbolFrozen"} \
        == {"AAPL"}

    stack.fault("stocks", "resume", "AAPL")
    stack.wait_for_alert(_resolved("FeedSymbolFrozen", feed="stocks", symbol="AAPL"), timeout=40, since=mark,
                         what="the resolution of FeedSymbolFrozen for AAPL")
    assert _symbol(stack, "stocks", "AAPL")["fresh"] is True
    stack.wait_quiet("FeedSymbol")


def test_adaptive_thresholds_notice_a_busy_symbol_going_quiet_within_seconds(stack: Stack) -> None:
    """MSFT's configured thresholds are 2 and 4 minutes; learned from its rhythm they are seconds."""
    wait_for(lambda: stack.query('feedwatch_symbol_expected_interval_seconds{feed="stocks",symbol="MSFT"} < 2'),
             timeout=30, what="MSFT's learned interval in Prometheus")
    assert not stack.query('feedwatch_symbol_expected_interval_seconds{symbol="AAPL"}')   # not adaptive
    view = _symbol(stack, "stocks", "MSFT")
    assert view["adaptive"] is True and view["thresholds"]["stale"] < 10
    mark = len(stack.received)
    stalled_at = time.time()
    stack.fault("stocks", "stall", "MSFT")
    alert = stack.wait_for_alert(_firing("FeedSymbolStale", feed="stocks", symbol="MSFT", severity="critical"),
                                 timeout=40, since=mark, what="the critical FeedSymbolStale for MSFT")
    assert "It normally updates every" in alert["annotations"]["description"], alert["annotations"]
    print(f"\nFeedSymbolStale (critical) for MSFT notified {alert['_received_at'] - stalled_at:.1f}s after it "
          f"went quiet (its static stale threshold is 4 minutes)")
    stack.fault("stocks", "resume", "MSFT")
    stack.wait_for_alert(_resolved("FeedSymbolStale", feed="stocks", symbol="MSFT", severity="critical"),
                         timeout=40, since=mark, what="the resolution of FeedSymbolStale for MSFT")
    stack.wait_quiet("FeedSymbol")


def test_a_venue_whose_price_goes_astray_is_notified(stack: Stack) -> None:
    wait_for(lambda: len(stack.query("abs(feedwatch_instrument_price_deviation_ratio) < 0.005")) == 3,
             timeout=30, what="BTCUSDT priced alike on the three venues")
    mark = len(stack.received)
    skewed_at = time.time()
    stack.fault("bybit", "skew", "BTCUSDT", 1.05)
    alert = stack.wait_for_alert(_firing("FeedPriceDeviation", instrument="BTCUSDT"), timeout=40, since=mark,
                                 what="FeedPriceDeviation for BTCUSDT")
    labels = _labels(alert)
    assert (labels["feed"], labels["severity"]) == ("bybit", "warning") and alert["receiver"] == "data-warning"
    shown = re.search(r"BTCUSDT on bybit is \+([\d.]+)% away", alert["annotations"]["description"])
    assert shown and 4.5 < float(shown.group(1)) < 5.5, alert["annotations"]   # 5 % from the others
    print(f"\nFeedPriceDeviation notified {alert['_received_at'] - skewed_at:.1f}s after Bybit's price went 5 % off")
    stack.fault("bybit", "resume", "BTCUSDT")
    stack.wait_for_alert(_resolved("FeedPriceDeviation", instrument="BTCUSDT", feed="bybit"), timeout=40,
                         since=mark, what="the resolution of FeedPriceDeviation")
    # The two venues that stayed in line were never named.
    assert {_labels(a)["feed"] for a in stack.alerts(mark) if _labels(a)["alertname"] == "FeedPriceDeviation"} \
        == {"bybit"}


def test_an_exporter_that_cannot_keep_up_reports_its_lag(stack: Stack) -> None:
    """The firehose venue floods the exporter with batches stamped when they were due, faster than
    it can apply them: the lag it measures grows, and FeedwatchFallingBehind is notified."""
    assert stack.query('feedwatch_feed_processing_lag_seconds{feed="firehose"} < 0.5')
    mark = len(stack.received)
    flooded_at = time.time()
    stack.fault("firehose", "flood")
    try:
        behind = wait_for(lambda: stack.query('feedwatch_feed_processing_lag_seconds{feed="firehose"} > 1'),
                          timeout=40, what="the firehose's processing lag above 1s in Prometheus")
        print(f"\nprocessing lag {float(behind[0]['value'][1]):.1f}s, "
              f"{time.time() - flooded_at:.1f}s after the flood began")
        assert stack.query('feedwatch_feed_receive_backlog_bytes{feed="firehose"} > 0')
        alert = stack.wait_for_alert(_firing("FeedwatchFallingBehind", feed="firehose"), timeout=60, since=mark,
                                     what="FeedwatchFallingBehind for the firehose")
        assert alert["receiver"] == "data-warning"
        assert "processes firehose" in alert["annotations"]["description"]
        print(f"FeedwatchFallingBehind notified {alert['_received_at'] - flooded_at:.1f}s after the flood began")
    finally:
        stack.fault("firehose", "resume")
    stack.wait_for_alert(_resolved("FeedwatchFallingBehind", feed="firehose"), timeout=60, since=mark,
                         what="the exporter caught up again")
