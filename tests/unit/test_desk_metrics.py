"""The desk metrics against quantstats, computed independently on the same series, to 1e-9.

quantstats (pinned in the ``test`` extra; feedwatch never imports it) is the reference: the
tracker is fed a random session through its public ingest path, its ``/metrics`` text is parsed
back, and each desk metric is compared with quantstats' function applied to a series this test
builds on its own from the events it sent:

- the daily returns of the completed days' closing equity (a pandas Series with a daily index)
  for ``sortino`` and ``calmar``;
- the closed trades' net P&L (``pnl - fees``) for ``profit_factor``, ``avg_win``, ``avg_loss``,
  and ``win_rate * avg_win + (1 - win_rate) * avg_loss`` for the expectancy (quantstats has no
  expectancy function; this is the textbook formula on its own parts).

quantstats de-annualises a risk-free rate geometrically, ``(1 + rf) ** (1 / periods) - 1``, while
feedwatch's Sharpe and Sortino subtract ``rf / periods`` (docs/trading-events.md says so); at the
default rate of 0 the two are the same, which the first test checks, and with a rate the second
hands quantstats the excess returns itself.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import warnings

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # quantstats' own import-time deprecation chatter
    import quantstats as qs

from exporter.config import load_data
from exporter.trading.collector import TradingCollector
from exporter.trading.tracker import Tracker

START = dt.datetime(2024, 3, 4, 12, 0, tzinfo=dt.timezone.utc).timestamp()  # a Monday, noon UTC
DAY = 86400.0
TOL = 1e-9


def tracker_for(periods: int, rate: float, window: int = 30) -> Tracker:
    section = {"accounts": [{"name": "main"}], "dedup_window": "365d",  # a whole session in one batch
               "sharpe": {"periods_per_year": periods, "risk_free_rate": rate, "window": window}}
    return Tracker(load_data({"trading": section}).trading, START)


def session(seed: int, days: int) -> tuple[list[dict], list[float], list[float]]:
    """Events over ``days`` days, the closing equity of each day, and every trade's net P&L."""
    rng = random.Random(seed)
    events: list[dict] = []
    closes: list[float] = []
    nets: list[float] = []
    equity = 10_000.0
    for day in range(days):
        for k in range(rng.randint(2, 5)):
            ts = START + day * DAY + k * 600
            equity = round(equity * (1 + rng.gauss(0.0005, 0.015)), 2)
            events.append({"type": "equity", "account": "main", "id": f"e{day}-{k}", "ts": ts, "equity": equity})
            for j in range(rng.randint(0, 3)):
                pnl = round(rng.gauss(4, 30), 2)
                fees = rng.choice((0.0, 0.35, 1.2))
                if rng.random() < 0.08:
                    pnl, fees = 1.5, 1.5  # flat now and then: quantstats' win rate leaves it out
                events.append({"type": "trade", "account": "main", "id": f"t{day}-{k}-{j}", "ts": ts + 1 + j,
                               "symbol": "BTCUSDT", "side": "long", "quantity": 0.1, "entry_price": 100.0,
                               "exit_price": 101.0, "pnl": pnl, "fees": fees})
                nets.append(pnl - fees)
        closes.append(equity)
    return events, closes, nets


def scraped(tracker: Tracker, now: float) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(TradingCollector(tracker).render(now)):
        for sample in family.samples:
            if sample.labels.get("account") == "main" and len(sample.labels) == 1:
                out[sample.name] = sample.value
    return out


def feed(tracker: Tracker, events: list[dict], now: float) -> None:
    result = tracker.ingest_json(json.dumps(events), now)
    assert result.accepted == len(events), result.problems


@pytest.mark.parametrize("seed,days,window,periods", [(1, 12, 30, 365), (2, 40, 30, 252), (3, 9, 5, 365)])
def test_desk_metrics_equal_quantstats(seed: int, days: int, window: int, periods: int) -> None:
    events, closes, nets = session(seed, days)
    now = START + days * DAY + 3600  # the next day: every day of the session is complete
    tracker = tracker_for(periods, 0.0, window)
    feed(tracker, events, now)
    got = scraped(tracker, now)

    index = pd.date_range("2024-03-04", periods=len(closes), freq="D")
    returns = pd.Series(closes, index=index).pct_change().dropna().iloc[-window:]
    trades = pd.Series(nets, dtype=float)

    # prepare_returns=False: P&L in currency is not a return series; quantstats would take an
    # all-positive one for prices and difference it.
    pf, aw, al, wr = (qs.stats.profit_factor(trades, prepare_returns=False),
                      qs.stats.avg_win(trades, prepare_returns=False),
                      qs.stats.avg_loss(trades, prepare_returns=False),
                      qs.stats.win_rate(trades, prepare_returns=False))
    expected = {
        "feedwatch_trading_sortino_ratio": qs.stats.sortino(returns, rf=0.0, periods=periods),
        "feedwatch_trading_calmar_ratio": qs.stats.calmar(returns, periods=periods),
        "feedwatch_trading_profit_factor": pf,
        "feedwatch_trading_average_win": aw,
        "feedwatch_trading_average_loss": al,
        "feedwatch_trading_expectancy": wr * aw + (1 - wr) * al,
        # The Sharpe ratio was already there; at rf = 0 it is quantstats' too.
        "feedwatch_trading_sharpe_ratio": qs.stats.sharpe(returns, rf=0.0, periods=periods),
    }
    for name, reference in expected.items():
        assert math.isfinite(reference), (name, reference)
        assert got[name] == pytest.approx(float(reference), rel=TOL, abs=TOL), name


def test_sortino_with_a_risk_free_rate_uses_the_sharpe_ratios_per_period_rate() -> None:
    events, closes, _ = session(4, 15)
    now = START + 15 * DAY + 3600
    rate, periods = 0.04, 365
    tracker = tracker_for(periods, rate)
    feed(tracker, events, now)
    returns = pd.Series(closes).pct_change().dropna()
    excess = returns - rate / periods
    got = scraped(tracker, now)
    assert got["feedwatch_trading_sortino_ratio"] == pytest.approx(
        float(qs.stats.sortino(excess, rf=0.0, periods=periods)), rel=TOL, abs=TOL)
    assert got["feedwatch_trading_sharpe_ratio"] == pytest.approx(
        float(qs.stats.sharpe(excess, rf=0.0, periods=periods)), rel=TOL, abs=TOL)


def test_undefined_desk_metrics_are_absent_not_zero() -> None:
    tracker = tracker_for(365, 0.0)
    wins_only = [{"type": "trade", "account": "main", "id": f"w{i}", "ts": START + i, "symbol": "X", "side": "long",
                  "quantity": 1, "entry_price": 1, "exit_price": 2, "pnl": 10.0, "fees": 0.0} for i in range(3)]
    # Two completed days with a close: one return, fewer than min_returns (2).
    closes = [{"type": "equity", "account": "main", "id": f"c{d}", "ts": START + d * DAY, "equity": 100.0 + d}
              for d in range(2)]
    now = START + 2 * DAY + 60
    feed(tracker, wins_only + closes, now)
    got = scraped(tracker, now)
    assert got["feedwatch_trading_average_win"] == pytest.approx(10.0)
    assert got["feedwatch_trading_expectancy"] == pytest.approx(10.0)
    # No losing trade: quantstats says inf; absent here, as every undefined trading value is.
    assert qs.stats.profit_factor(pd.Series([10.0, 10.0, 10.0]), prepare_returns=False) == math.inf
    for name in ("feedwatch_trading_profit_factor", "feedwatch_trading_average_loss",
                 "feedwatch_trading_sortino_ratio", "feedwatch_trading_calmar_ratio"):
        assert name not in got, name

    # Returns that only rise: no downside and no drawdown, so Sortino and Calmar stay absent.
    rising = [{"type": "equity", "account": "main", "id": f"r{d}", "ts": START + d * DAY + 10, "equity": 100.0 + 2 * d}
              for d in range(2, 6)]
    now = START + 6 * DAY + 60
    feed(tracker, rising, now)
    got = scraped(tracker, now)
    assert "feedwatch_trading_sharpe_ratio" in got
    assert "feedwatch_trading_sortino_ratio" not in got and "feedwatch_trading_calmar_ratio" not in got


def test_desk_sums_survive_a_restart(tmp_path) -> None:
    from exporter.trading.store import SqliteStore

    events, _, nets = session(5, 6)
    now = START + 6 * DAY + 3600
    section = load_data({"trading": {"accounts": [{"name": "main"}], "dedup_window": "365d"}}).trading
    first = Tracker(section, now, SqliteStore(str(tmp_path / "state.sqlite")))
    feed(first, events, now)
    before = scraped(first, now)
    first.close()
    second = Tracker(section, now, SqliteStore(str(tmp_path / "state.sqlite")))
    after = scraped(second, now)
    for name in ("feedwatch_trading_profit_factor", "feedwatch_trading_average_win",
                 "feedwatch_trading_average_loss", "feedwatch_trading_expectancy"):
        assert after[name] == before[name], name
    second.close()
