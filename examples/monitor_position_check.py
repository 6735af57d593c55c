"""A bot that embeds feedwatch (``exporter.Monitor``) and skips a position check on a stale price.

Run it (about 3 seconds)::

    python examples/monitor_position_check.py

The bot holds BTCUSDT and ETHUSDT and checks each position's stop every second. Its ETHUSDT
price feed goes quiet after the first round: from then on that price is no longer healthy
(degraded after 1 s, stale after 2 s) and the bot skips the ETHUSDT check instead of acting on an
old price, while BTCUSDT is checked as usual. Meanwhile
``/metrics`` is served from the bot's own process: the skipped symbol is what
``TradingStalePricePosition`` alerts on (an open position on a stale price).

``run(clock, wait)`` is the whole scenario with the clock injected, so the test suite plays it on
a fake clock (tests/unit/test_trading_monitor.py) and this script plays it in real time.
"""

from __future__ import annotations

import time
import urllib.request
from typing import Callable

from exporter import Monitor

# Compressed thresholds so the example finishes in seconds (real bots use minutes).
THRESHOLDS = {"degraded": "1s", "stale": "2s", "critical": "1m"}
POSITIONS = {"BTCUSDT": 0.5, "ETHUSDT": -4.0}      # long BTC, short ETH
STOPS = {"BTCUSDT": 41_000.0, "ETHUSDT": 2_450.0}  # close the long below, the short above


def check_position(monitor: Monitor, symbol: str, quantity: float, stop: float) -> str:
    """One risk check; returns what the bot decided, in words."""
    view = monitor.check("binance", symbol)
    if not view.fresh or view.price is None:
        # The price is too old to act on: neither close nor keep on its word. Skip, and let the
        # alerting (TradingStalePricePosition) tell a person.
        return f"{symbol}: SKIPPED, price is {view.state} ({view.staleness_seconds:.1f}s old)"
    hit = view.price <= stop if quantity > 0 else view.price >= stop
    return f"{symbol}: price {view.price:,.2f}, stop {stop:,.0f}: {'CLOSE' if hit else 'hold'}"


def run(clock=None, wait: Callable[[float], None] = time.sleep, serve: bool = True) -> list[str]:
    """Play the scenario; returns the bot's decisions, round by round."""
    monitor = Monitor(
        feeds={"binance": list(POSITIONS)},
        thresholds=THRESHOLDS,
        trading={"accounts": [{"name": "main", "symbols": {s: "binance" for s in POSITIONS}}]},
        clock=clock,
    )
    decisions: list[str] = []
    try:
        port = monitor.serve(0) if serve else None
        monitor.record_positions("main", POSITIONS, limit=5)
        prices = {"BTCUSDT": 43_000.0, "ETHUSDT": 2_300.0}
        for round_no in range(4):
            if round_no:
                wait(1.0)
            prices["BTCUSDT"] -= 400.0
            monitor.update_price("binance", "BTCUSDT", prices["BTCUSDT"])
            if round_no == 0:  # ETHUSDT's feed goes quiet after the first round
                monitor.update_price("binance", "ETHUSDT", prices["ETHUSDT"])
            for symbol, quantity in POSITIONS.items():
                decisions.append(f"round {round_no}: " + check_position(monitor, symbol, quantity, STOPS[symbol]))
        if port is not None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
            decisions += [line for line in text.splitlines()
                          if line.startswith(("feedwatch_trading_position{", "feedwatch_symbol_state{"))]
    finally:
        monitor.close()
    return decisions


if __name__ == "__main__":
    for line in run():
        print(line)
