"""End to end: a simulated venue, the exporter, Prometheus, Alertmanager and a webhook, all real.

One stack for the module (tests/integration/stack.py: committed rules and routes with for:,
group_wait and group_interval compressed 30x, exporter thresholds degraded 5s / stale 8s). The tests run in
file order and each leaves the stack healthy again:

1. Watchdog arrives: the pipeline delivers at all.
2. Stalling AAPL delivers FeedSymbolStale for feed "stocks", symbol "AAPL" (and no other symbol),
   then its resolution once AAPL trades again.
3. Cutting the feed off (logins refused, connection dropped) delivers FeedDown for "stocks",
   while its symbols' stale alerts, firing in Prometheus, are inhibited in Alertmanager and never
   notified.
4. A second feed, "crypto" (a Binance simulator, REST fallback on, ``max_symbols: 1``): stalling
   BTCUSDT makes the REST fallback price it (``source="rest"`` in Prometheus and in the bot API)
   and delivers FeedRestFallbackActive for "crypto", resolved once the socket delivers again.
5. Asking the watchlist API for symbols the feed refuses (one past its cap, a wildcard) delivers
   FeedSymbolsRefused per reason. Last: it stays firing for the rule's 15-minute window.

The measured delays (condition to notification) are printed (pytest -s) and recorded in
docs/alerting.md; they are never asserted.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest

from tests.integration.stack import E2E_EXPORTER_CONFIG, E2E_SIMULATORS, Stack, running_stack
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

DEGRADED_AFTER = 5.0  # E2E_EXPORTER_CONFIG's degraded threshold
WATCHLIST_TOKEN = "e2e-watchlist-token"

# The shared stocks feed, plus a crypto feed for the REST fallback and the symbol guards (its own
# simulator, so faulting it leaves stocks alone). The fallback polls the simulator's REST snapshot.
CONFIG = E2E_EXPORTER_CONFIG + f"""
  - name: crypto
    kind: binance
    url: ${{SIM_CRYPTO_URL}}
    streams: [trade]
    symbols: [BTCUSDT]
    max_symbols: 1
    reconnect: {{initial_delay: 200ms, max_delay: 1s, reset_after: 5s}}
    rest: {{enabled: true, url: "${{SIM_CRYPTO_CONTROL_URL}}", interval: 1s}}
watchlist:
  api: {{token: {WATCHLIST_TOKEN}}}
"""
SIMULATORS = {**E2E_SIMULATORS, "crypto": ["--venue", "binance", "--symbols", "BTCUSDT", "--rate", "10",
                                           "--seed", "5"]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("e2e-alerts"), exporter_config=CONFIG,
                       simulators=SIMULATORS) as running:
        # Every symbol healthy in Prometheus before any test breaks something.
        wait_for(lambda: len(running.query('feedwatch_symbol_state{feed="stocks"} == 0')) == 3,
                 timeout=30, what="three healthy symbols in Prometheus")
        yield running


def _labels(alert: dict[str, Any]) -> dict[str, str]:
    return alert["labels"]


def test_watchdog_arrives(stack: Stack) -> None:
    alert = stack.wait_for_alert(lambda a: _labels(a)["alertname"] == "Watchdog" and a["status"] == "firing",
                                 timeout=30, what="the Watchdog notification")
    assert alert["receiver"] == "watchdog"
    assert _labels(alert)["severity"] == "none"


def test_stalled_symbol_notifies_then_resolves(stack: Stack) -> None:
    mark = len(stack.received)
    stalled_at = time.time()
    stack.fault("stocks", "stall", "AAPL")

    def stale(a: dict[str, Any]) -> bool:
        return _labels(a)["alertname"] == "FeedSymbolStale" and a["status"] == "firing"

    alert = stack.wait_for_alert(stale, timeout=40, since=mark, what="FeedSymbolStale for AAPL")
    labels = _labels(alert)
    assert (labels["feed"], labels["symbol"], labels["team"]) == ("stocks", "AAPL", "data")
    # From the exporter's feedwatch_feed_info (no market: in the config): never muted, at any hour.
    assert labels["market"] == "always"
    assert labels["severity"] in ("warning", "critical")
    assert alert["receiver"] == f"data-{labels['severity']}"
    assert "AAPL on stocks has not updated for" in alert["annotations"]["description"]
    assert alert["annotations"]["runbook_url"].endswith("/docs/runbook.md#feedsymbolstale")
    print(f"\nFeedSymbolStale ({labels['severity']}) notified "
          f"{alert['_received_at'] - stalled_at - DEGRADED_AFTER:.1f}s after AAPL turned degraded "
          f"({alert['_received_at'] - stalled_at:.1f}s after the stall)")

    # The critical variant follows once AAPL is stale (8s); only AAPL is ever named.
    critical = stack.wait_for_alert(lambda a: stale(a) and _labels(a)["severity"] == "critical",
                                    timeout=30, since=mark, what="the critical FeedSymbolStale")
    assert critical["receiver"] == "data-critical"
    assert {_labels(a).get("symbol") for a in stack.alerts(mark)
            if _labels(a)["alertname"].startswith("FeedSymbol")} == {"AAPL"}

    resumed_at = time.time()
    stack.fault("stocks", "resume")
    resolved = stack.wait_for_alert(
        lambda a: _labels(a)["alertname"] == "FeedSymbolStale" and a["status"] == "resolved"
        and _labels(a)["symbol"] == "AAPL" and _labels(a)["severity"] == "critical",
        timeout=30, since=mark, what="the resolution of FeedSymbolStale for AAPL")
    assert _labels(resolved)["feed"] == "stocks"
    print(f"FeedSymbolStale resolution notified {resolved['_received_at'] - resumed_at:.1f}s after AAPL resumed")
    # Leave the stack quiet: the warning variant's resolution is notified in its own group flush,
    # possibly after the critical one's (it once landed inside the next test's window).
    stack.wait_quiet("FeedSymbol")


def test_feed_down_notifies_feed_down_and_inhibits_symbol_alerts(stack: Stack) -> None:
    wait_for(lambda: len(stack.query('feedwatch_symbol_state{feed="stocks"} == 0')) == 3,
             timeout=30, what="three healthy symbols again")
    # Nothing from an earlier episode still on its way, so whatever arrives from here on is ours.
    stack.wait_quiet("FeedSymbol")
    mark = len(stack.received)
    cut_at = time.time()
    stack.fault("stocks", "reject_auth")   # reconnects fail from now on
    stack.fault("stocks", "drop")          # and the open connection goes

    down = stack.wait_for_alert(lambda a: _labels(a)["alertname"] == "FeedDown" and a["status"] == "firing",
                                timeout=40, since=mark, what="FeedDown for stocks")
    assert _labels(down)["feed"] == "stocks"
    assert down["receiver"] == "data-critical"
    print(f"\nFeedDown notified {down['_received_at'] - cut_at:.1f}s after the feed was cut off")

    # The symbols go stale and their alerts fire in Prometheus, but Alertmanager holds them as
    # inhibited by FeedDown...
    def symbol_alerts_inhibited() -> bool:
        stale = [a for a in stack.alertmanager_alerts()
                 if a["labels"]["alertname"] == "FeedSymbolStale" and a["labels"].get("feed") == "stocks"
                 and a["labels"].get("severity") == "critical"]
        return len(stale) == 3 and all(a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"]
                                       for a in stale)

    wait_for(symbol_alerts_inhibited, timeout=40, interval=0.2,
             what="three critical FeedSymbolStale alerts for stocks, inhibited by FeedDown")
    firing = {a["labels"]["symbol"] for a in stack.prometheus_alerts()
              if a["labels"]["alertname"] == "FeedSymbolStale" and a["state"] == "firing"}
    assert firing == {"AAPL", "MSFT", "NVDA"}

    # ...until the feed is back and everything resolves; by then every group has flushed many
    # times (1s group_wait/interval), and no symbol notification for stocks went out.
    stack.fault("stocks", "resume")
    stack.wait_for_alert(lambda a: _labels(a)["alertname"] == "FeedDown" and a["status"] == "resolved",
                         timeout=40, since=mark, what="FeedDown resolved")
    wait_for(lambda: not [a for a in stack.alertmanager_alerts()
                          if a["labels"]["alertname"].startswith("FeedSymbol")],
             timeout=30, what="the symbol alerts to resolve in Alertmanager")
    # Alertmanager notifies a resolution only if it notified the firing, so alerts that stayed
    # inhibited throughout leave no trace at all, not even once resolved.
    leaked = [a for a in stack.alerts(mark)
              if _labels(a)["alertname"] in ("FeedSymbolStale", "FeedSymbolDead")
              and _labels(a).get("feed") == "stocks"]
    assert leaked == [], stack.describe_received()


def _exporter_json(stack: Stack, path: str, method: str = "GET") -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {WATCHLIST_TOKEN}"} if method != "GET" else {}
    req = urllib.request.Request(stack.exporter_url + path, method=method, headers=headers,
                                 data=b"" if method != "GET" else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.load(exc)


def test_rest_fallback_notifies_then_resolves_when_the_socket_delivers(stack: Stack) -> None:
    wait_for(lambda: stack.query('feedwatch_symbol_state{feed="crypto"} == 0'), timeout=30,
             what="BTCUSDT on crypto healthy in Prometheus")
    stack.wait_quiet("FeedSymbol")
    mark = len(stack.received)
    stalled_at = time.time()
    stack.fault("crypto", "stall", "BTCUSDT")   # the socket stays up; BTCUSDT goes quiet on it

    # Stale (8s) -> the fallback polls the venue's REST snapshot, and the price comes from there.
    wait_for(lambda: stack.query('feedwatch_symbol_source{feed="crypto",symbol="BTCUSDT",source="rest"} == 1'),
             timeout=40, what="BTCUSDT priced by the REST fallback, in Prometheus")
    # What a bot's gate sees meanwhile (docs/configuration.md): fresh by the REST price's own
    # time, with its source; a strict bot asking for the socket's price is told no.
    _, view = _exporter_json(stack, "/api/v1/symbols/crypto/BTCUSDT")
    assert view["source"] == "rest" and view["rest_timestamp"] == view["last_update"]
    _, strict = _exporter_json(stack, "/api/v1/symbols/crypto/BTCUSDT?source=ws")
    assert strict["source"] == "rest" and strict["fresh"] is False

    alert = stack.wait_for_alert(lambda a: _labels(a)["alertname"] == "FeedRestFallbackActive"
                                 and a["status"] == "firing", timeout=90, since=mark,
                                 what="FeedRestFallbackActive for crypto")
    labels = _labels(alert)
    assert (labels["feed"], labels["severity"]) == ("crypto", "warning")
    assert alert["receiver"] == "data-warning"
    assert "1 symbol(s) on crypto" in alert["annotations"]["description"]
    assert alert["annotations"]["runbook_url"].endswith("/docs/runbook.md#feedrestfallbackactive")
    print(f"\nFeedRestFallbackActive notified {alert['_received_at'] - stalled_at:.1f}s after the stall")

    stack.fault("crypto", "resume")             # the socket delivers again: source ws, poller quiet
    stack.wait_for_alert(lambda a: _labels(a)["alertname"] == "FeedRestFallbackActive"
                         and a["status"] == "resolved", timeout=40, since=mark,
                         what="FeedRestFallbackActive resolved")
    assert stack.query('feedwatch_symbol_source{feed="crypto",symbol="BTCUSDT",source="ws"} == 1')
    stack.wait_quiet("FeedRest")
    stack.wait_quiet("FeedSymbol")              # the stale warning BTCUSDT had before REST covered it


def test_refused_symbols_notify_feed_symbols_refused_per_reason(stack: Stack) -> None:
    mark = len(stack.received)
    status, body = _exporter_json(stack, "/api/v1/watchlist/crypto/ETHUSDT", "POST")
    assert status == 409, body                  # past the feed's max_symbols (1)
    status, body = _exporter_json(stack, "/api/v1/watchlist/crypto/*", "POST")
    assert status == 400, body                  # a wildcard is not a symbol

    def refused(reason: str):
        return lambda a: (_labels(a)["alertname"] == "FeedSymbolsRefused" and a["status"] == "firing"
                          and _labels(a)["reason"] == reason)

    for reason in ("feed_limit", "invalid_name"):
        alert = stack.wait_for_alert(refused(reason), timeout=40, since=mark,
                                     what=f"FeedSymbolsRefused for crypto ({reason})")
        assert (_labels(alert)["feed"], _labels(alert)["severity"]) == ("crypto", "warning")
        assert f"on crypto ({reason})" in alert["annotations"]["description"]
        assert alert["annotations"]["runbook_url"].endswith("/docs/runbook.md#feedsymbolsrefused")
