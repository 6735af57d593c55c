"""The trading collector's text: what its docstring shows, what promtool accepts, what docs/metrics.md lists."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from exporter.trading import collector as trading_collector
from exporter.config import load_data
from exporter.trading.tracker import Tracker
from exporter.trading.collector import TRADING_FAMILIES, TradingCollector

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_709_553_600.0  # 2024-03-04 12:00 UTC
DAY = 86400.0


def busy_tracker() -> Tracker:
    """Every family populated: equity history for a Sharpe ratio, trades, positions, switches, API calls."""
    config = load_data({
        "feeds": [{"name": "binance", "kind": "polygon", "url": "ws://x", "symbols": ["BTCUSDT"]}],
        "trading": {"accounts": [{"name": "main", "symbols": {"BTCUSDT": "binance"}}, {"name": "idle"}]},
    }).trading
    tracker = Tracker(config, NOW)
    events = [{"type": "equity", "account": "main", "id": f"e{d}", "ts": NOW - d * DAY, "equity": 10_000 + 37 * d * d}
              for d in range(4, -1, -1)]
    events += [
        {"type": "trade", "account": "main", "id": "t1", "ts": NOW, "symbol": "BTCUSDT", "side": "long",
         "quantity": 0.5, "entry_price": 100, "exit_price": 104, "pnl": 2.0, "fees": 0.1},
        {"type": "trade", "account": "main", "id": "t2", "ts": NOW, "symbol": "BTCUSDT", "side": "short",
         "quantity": 0.5, "entry_price": 100, "exit_price": 104, "pnl": -2.0, "fees": 0.1},
        {"type": "positions", "account": "main", "id": "p", "ts": NOW, "positions": {"BTCUSDT": 0.5}, "limit": 5},
        {"type": "safety", "account": "main", "id": "s", "ts": NOW, "circuit_breaker": "open",
         "reason": "volatility halt"},
        {"type": "api_call", "account": "main", "id": "a", "ts": NOW, "endpoint": "x", "ok": False, "latency": 0.2},
    ]
    result = tracker.ingest_json(json.dumps(events).encode(), NOW + 1)
    assert result.accepted == len(events), result
    tracker.reject("unauthorized")
    return tracker


def test_output_passes_promtool_check_metrics():
    text = TradingCollector(busy_tracker()).render(NOW + 1)
    run = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_family_is_rendered_with_its_help_and_type():
    text = TradingCollector(busy_tracker()).render(NOW + 1)
    for name, (kind, help_text) in TRADING_FAMILIES.items():
        assert f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n" in text
        sample = re.search(rf"^{name}(_bucket|_sum|_count)?[{{ ]", text, re.M)
        assert sample, f"{name} has no sample"
    assert 'feedwatch_trading_sharpe_ratio{account="main"} ' in text
    assert 'feedwatch_trading_events_rejected_total{reason="unauthorized"} 1\n' in text


def test_docstring_shows_the_real_lines():
    """Each line of the module docstring names a family, labels and type that the renderer emits."""
    text = TradingCollector(busy_tracker()).render(NOW + 1)
    rendered = set(text.splitlines())
    shapes = {re.sub(r" \S+$", "", line) for line in text.splitlines() if not line.startswith("#")}
    doc_lines = [line.strip() for line in trading_collector.__doc__.splitlines() if line.startswith("    ")]
    checked = 0
    for line in doc_lines:
        if line.startswith("..."):
            continue
        if line.startswith("#"):
            assert line in rendered, f"docstring line not rendered: {line}"
        else:
            shape = re.sub(r" \S+$", "", line)
            assert shape in shapes, f"docstring sample has no rendered counterpart: {line}"
        checked += 1
    assert checked > 60


def test_idle_account_has_every_counter_at_zero_and_nothing_undefined():
    text = TradingCollector(busy_tracker()).render(NOW + 1)
    idle = [line for line in text.splitlines() if 'account="idle"' in line]
    assert 'feedwatch_trading_trades_total{account="idle",result="loss"} 0' in idle
    assert 'feedwatch_trading_api_errors_total{account="idle"} 0' in idle
    assert 'feedwatch_trading_kill_switch_active{account="idle"} 0' in idle
    assert 'feedwatch_trading_last_event_timestamp_seconds{account="idle"} 0.0' in idle
    for undefined in ("equity", "drawdown_ratio", "sharpe_ratio", "win_rate_ratio", "positions_limit"):
        assert not any(line.startswith(f"feedwatch_trading_{undefined}{{") for line in idle), undefined


def test_docs_metrics_lists_every_trading_family():
    doc = (ROOT / "docs" / "metrics.md").read_text()
    for name in TRADING_FAMILIES:
        assert f"`{name}`" in doc, f"{name} missing from docs/metrics.md"
