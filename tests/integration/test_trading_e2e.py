"""End to end: every trading alert, from the simulated bot through the real Prometheus and
Alertmanager to the webhook receiver; and the push API refusing unsigned requests, counted.

One stack for the module (tests/integration/stack.py: the committed rules with for: compressed
30x, Alertmanager rendered from the committed config with 1s group waits): a Polygon-dialect
price feed ``crypto`` (BTCUSDT, ETHUSDT) and the trading simulator as the bot's event stream
``bot``, whose account ``demo`` maps both symbols to ``crypto``. The bot always holds BTCUSDT.

The scenarios are switched on once, all together, through the simulator's control API
(``POST /scenarios/NAME``), and BTCUSDT's prices are stalled; then each alert is awaited in the
webhook's notifications. Measured delays are printed (pytest -s), never asserted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest

from tests.integration.stack import Stack, trading_stack
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

PUSH_TOKEN = "e2e-push-token"
PUSH_SECRET = "e2e-push-secret"
# alert name -> severity notified (the drawdowns' warnings are inhibited by their criticals).
EXPECTED = {
    "TradingDrawdownDaily": "critical",
    "TradingDrawdownWeekly": "critical",
    "TradingDrawdownTotal": "critical",
    "TradingCircuitBreakerOpen": "critical",
    "TradingKillSwitchActive": "critical",
    "TradingConsecutiveLosses": "critical",
    "TradingApiErrors": "warning",
    "TradingStalePricePosition": "critical",
}


def _post(url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("e2e-trading")
    api = f"{{token: {PUSH_TOKEN}, hmac_secret: {PUSH_SECRET}, max_skew: 30s}}"
    with trading_stack(workdir, state_file=workdir / "trading.sqlite", api=api) as running:
        yield running


@pytest.fixture(scope="module")
def troubled(stack: Stack) -> tuple[Stack, int, float]:
    """Every scenario on, BTCUSDT's price stalled; (stack, notification mark, when)."""
    mark = len(stack.received)
    started = time.time()
    control = stack.simulators["bot"].control_url
    for scenario in ("losing_streak", "drawdown", "api_errors", "circuit_breaker", "kill_switch"):
        status, reply = _post(f"{control}/scenarios/{scenario}")
        assert status == 200, reply
        assert reply["scenario"]["accounts"] == ["demo"]
    stack.fault("crypto", "stall", "BTCUSDT")
    return stack, mark, started


@pytest.mark.parametrize("alertname", sorted(EXPECTED))
def test_trading_alert_is_notified_to_the_trading_receiver(troubled: tuple[Stack, int, float], alertname: str):
    stack, mark, started = troubled
    severity = EXPECTED[alertname]

    def wanted(alert: dict[str, Any]) -> bool:
        labels = alert["labels"]
        return (labels["alertname"] == alertname and alert["status"] == "firing"
                and labels.get("severity") == severity)

    alert = stack.wait_for_alert(wanted, timeout=60, since=mark, what=f"{alertname} ({severity})")
    labels = alert["labels"]
    assert labels["team"] == "trading" and labels["account"] == "demo"
    assert alert["receiver"] == f"trading-{severity}"
    assert alert["annotations"]["runbook_url"].endswith(f"/docs/runbook.md#{alertname.lower()}")
    assert "demo" in alert["annotations"]["description"]
    if alertname == "TradingStalePricePosition":
        assert (labels["symbol"], labels["feed"]) == ("BTCUSDT", "crypto")
    if alertname == "TradingCircuitBreakerOpen":
        assert labels["reason"] == "volatility halt"
    if alertname == "TradingKillSwitchActive":
        assert labels["reason"] == "operator stop"
    print(f"\n{alertname} ({severity}) notified {alert['_received_at'] - started:.1f}s after the scenario")


def test_push_api_refuses_unsigned_and_replayed_requests_and_counts_them(stack: Stack):
    url = f"{stack.exporter_url}/api/v1/events"
    body = json.dumps({"type": "api_call", "account": "demo", "id": "push-1", "ts": time.time(),
                       "endpoint": "GET /ping", "ok": True, "latency": 0.01}).encode()
    status, reply = _post(url, body)
    assert status == 401 and "missing credentials" in reply["error"]
    status, _ = _post(url, body, {"X-Feedwatch-Timestamp": str(int(time.time())),
                                  "X-Feedwatch-Signature": "sha256=" + "0" * 64})
    assert status == 401
    stamp = str(int(time.time()))
    signature = "sha256=" + hmac.new(PUSH_SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    signed = {"X-Feedwatch-Timestamp": stamp, "X-Feedwatch-Signature": signature}
    status, reply = _post(url, body, signed)
    assert (status, reply["accepted"]) == (200, 1)
    status, reply = _post(url, body, signed)   # the same signed request again
    assert status == 401 and "already used" in reply["error"]
    status, reply = _post(url, body, {"Authorization": f"Bearer {PUSH_TOKEN}"})
    assert (status, reply["duplicates"]) == (200, 1)

    def counted() -> bool:
        result = {r["metric"]["reason"]: float(r["value"][1]) for r in stack.query(
            'feedwatch_trading_events_rejected_total{reason=~"unauthorized|replayed"}')}
        return result.get("unauthorized", 0) >= 2 and result.get("replayed", 0) >= 1

    wait_for(counted, timeout=20, what="the refusals counted in Prometheus")
