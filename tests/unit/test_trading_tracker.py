"""The trading tracker against an independent computation, across a restart, and its edge rules.

The expected values are computed here with plain formulas (``statistics.stdev`` for the sample
standard deviation, ``max`` over the snapshots for peaks) from a sequence whose trading days are
known by construction, and compared with what ``/metrics`` text says, to 1e-9.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import statistics

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import load_data
from exporter.trading.tracker import Tracker
from exporter.trading.collector import TradingCollector
from exporter.trading.store import SqliteStore

# Monday 2024-03-04 12:00 UTC; day d of the sequence is this plus d days (Mon..Wed of next week).
MONDAY_NOON = dt.datetime(2024, 3, 4, 12, 0, tzinfo=dt.timezone.utc).timestamp()
DAY = 86400.0
DAYS = 10
RISK_FREE = 0.04
TOL = 1e-9


def trading_config(**overrides):
    section = {"accounts": [{"name": "main"}], "sharpe": {"risk_free_rate": RISK_FREE}, **overrides}
    return load_data({"trading": section}).trading


def metrics(tracker: Tracker, now: float) -> dict[tuple, float]:
    """The collector's text parsed back: {(sample name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(TradingCollector(tracker).render(now)):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(m: dict, name: str, **labels) -> float | None:
    return m.get((name, tuple(sorted({"account": "main", **labels}.items()))))


def build_sequence(seed: int = 7) -> list[tuple[int, dict]]:
    """(day, event) pairs in time order: 3-6 equity snapshots and 0-5 trades per day."""
    rng = random.Random(seed)
    events: list[tuple[int, dict]] = []
    equity = 10_000.0
    n = 0
    for day in range(DAYS):
        moments = sorted(rng.uniform(0, 11 * 3600) for _ in range(rng.randint(3, 6) + rng.randint(0, 5)))
        for offset in moments:
            n += 1
            ts = MONDAY_NOON + day * DAY - 6 * 3600 + offset  # 06:00..17:00 UTC of that day
            if rng.random() < 0.55:
                equity *= 1 + rng.gauss(0, 0.02)
                events.append((day, {"type": "equity", "account": "main", "id": f"e{n}", "ts": ts,
                                     "equity": round(equity, 2)}))
            else:
                pnl = round(rng.gauss(5, 40), 2)
                fees = rng.choice((0.0, 0.5, 1.25))
                if rng.random() < 0.1:
                    pnl, fees = 2.0, 2.0  # a flat trade now and then
                events.append((day, {"type": "trade", "account": "main", "id": f"t{n}", "ts": ts,
                                     "symbol": "BTCUSDT", "side": rng.choice(("long", "short")),
                                     "quantity": 0.1, "entry_price": 100.0, "exit_price": 101.0,
                                     "pnl": pnl, "fees": fees}))
    return events


def expected(sequence: list[tuple[int, dict]], today: int) -> dict[str, float | None]:
    """The same numbers, computed independently of the tracker."""
    trades = [e for _, e in sequence if e["type"] == "trade"]
    nets = [t["pnl"] - t["fees"] for t in trades]
    streak = 0
    for net in nets:
        streak = streak + 1 if net < 0 else 0 if net > 0 else streak
    snaps = [(day, e["equity"]) for day, e in sequence if e["type"] == "equity"]
    values = [v for _, v in snaps]
    last = values[-1]
    running, max_dd = -math.inf, 0.0
    for v in values:
        running = max(running, v)
        max_dd = max(max_dd, (running - v) / running)
    peak = max(values)

    def window_peak(first_day: int) -> float:
        before = [v for d, v in snaps if d < first_day]
        inside = [v for d, v in snaps if first_day <= d <= today]
        return max(([before[-1]] if before else []) + inside) if inside else last

    day_peak = window_peak(today)
    week_first = today - dt.date.fromtimestamp(MONDAY_NOON + today * DAY).weekday()
    week_peak = window_peak(week_first)
    closes = {}
    for d, v in snaps:
        if d < today:
            closes[d] = v
    ordered = [closes[d] for d in sorted(closes)]
    returns = [b / a - 1 for a, b in zip(ordered, ordered[1:])]
    sharpe = None
    if len(returns) >= 2:
        sharpe = (statistics.mean(returns) - RISK_FREE / 365) / statistics.stdev(returns) * math.sqrt(365)
    return {
        "pnl_total": sum(nets),
        "pnl_daily": sum(t["pnl"] - t["fees"] for d, t in sequence if t["type"] == "trade" and d == today),
        "win_rate": sum(1 for n in nets if n > 0) / len(nets),
        "wins": sum(1 for n in nets if n > 0),
        "losses": sum(1 for n in nets if n < 0),
        "flats": sum(1 for n in nets if n == 0),
        "streak": streak,
        "equity": last,
        "dd_current": (peak - last) / peak,
        "dd_daily": (day_peak - last) / day_peak,
        "dd_weekly": (week_peak - last) / week_peak,
        "max_dd": max_dd,
        "sharpe": sharpe,
    }


def check(m: dict, exp: dict) -> None:
    def near(name: str, want: float | None, **labels) -> None:
        got = value(m, name, **labels)
        if want is None:
            assert got is None, f"{name} should be absent, got {got}"
        else:
            assert got is not None, f"{name} is missing"
            assert abs(got - want) <= TOL, f"{name}{labels}: got {got!r}, expected {want!r}"

    near("feedwatch_trading_realized_pnl", exp["pnl_total"])
    near("feedwatch_trading_realized_pnl_daily", exp["pnl_daily"])
    near("feedwatch_trading_win_rate_ratio", exp["win_rate"])
    near("feedwatch_trading_trades_total", exp["wins"], result="win")
    near("feedwatch_trading_trades_total", exp["losses"], result="loss")
    near("feedwatch_trading_trades_total", exp["flats"], result="flat")
    near("feedwatch_trading_consecutive_losses", exp["streak"])
    near("feedwatch_trading_equity", exp["equity"])
    near("feedwatch_trading_drawdown_ratio", exp["dd_current"], window="current")
    near("feedwatch_trading_drawdown_ratio", exp["dd_daily"], window="daily")
    near("feedwatch_trading_drawdown_ratio", exp["dd_weekly"], window="weekly")
    near("feedwatch_trading_max_drawdown_ratio", exp["max_dd"])
    near("feedwatch_trading_sharpe_ratio", exp["sharpe"])


def feed(tracker: Tracker, sequence: list[tuple[int, dict]]) -> None:
    """Each event as its own frame, received a second after it happened."""
    for _, event in sequence:
        result = tracker.ingest_json(_json(event), event["ts"] + 1.0)
        assert result.accepted == 1, result


def _json(event: dict) -> bytes:
    import json

    return json.dumps(event).encode()


def test_known_sequence_matches_independent_computation():
    sequence = build_sequence()
    tracker = Tracker(trading_config(), MONDAY_NOON)
    feed(tracker, sequence)
    now = MONDAY_NOON + (DAYS - 1) * DAY + 6 * 3600  # 18:00 on the last day
    exp = expected(sequence, DAYS - 1)
    assert exp["sharpe"] is not None and exp["streak"] >= 0 and exp["flats"] > 0  # the sequence exercises them
    check(metrics(tracker, now), exp)


def test_restart_mid_sequence_changes_nothing(tmp_path):
    sequence = build_sequence(seed=11)
    path = str(tmp_path / "trading.sqlite")
    config = trading_config(state_file=path)
    half = len(sequence) // 2
    first = Tracker(config, MONDAY_NOON, SqliteStore(path))
    feed(first, sequence[:half])
    first.close()
    second = Tracker(config, sequence[half][1]["ts"], SqliteStore(path))
    # The bot replays what it sent before the restart: all of it is recognised.
    replay = second.ingest_json(b"[" + b",".join(_json(e) for _, e in sequence[:half]) + b"]",
                                sequence[half][1]["ts"])
    assert replay.accepted == 0 and replay.rejected == {"duplicate": half}
    feed(second, sequence[half:])
    uninterrupted = Tracker(config, MONDAY_NOON)  # memory store: never restarted
    feed(uninterrupted, sequence)
    now = MONDAY_NOON + (DAYS - 1) * DAY + 6 * 3600
    exp = expected(sequence, DAYS - 1)
    restarted = metrics(second, now)
    check(restarted, exp)
    for key in ("feedwatch_trading_realized_pnl", "feedwatch_trading_consecutive_losses",
                "feedwatch_trading_max_drawdown_ratio", "feedwatch_trading_sharpe_ratio"):
        assert value(restarted, key) == value(metrics(uninterrupted, now), key)
    second.close()


def test_restart_keeps_peak_day_pnl_and_streak(tmp_path):
    """The three values whose loss would silently clear a risk alert."""
    path = str(tmp_path / "state.sqlite")
    config = trading_config(state_file=path)
    t0 = MONDAY_NOON
    tracker = Tracker(config, t0, SqliteStore(path))
    tracker.ingest_json(_json({"type": "equity", "account": "main", "id": 1, "ts": t0, "equity": 1000}), t0)
    tracker.ingest_json(_json({"type": "equity", "account": "main", "id": 2, "ts": t0 + 1, "equity": 930}), t0 + 1)
    for i in range(4):
        tracker.ingest_json(_json({"type": "trade", "account": "main", "id": f"l{i}", "ts": t0 + 2 + i,
                                   "symbol": "X", "side": "short", "quantity": 1, "entry_price": 1,
                                   "exit_price": 1.1, "pnl": -10, "fees": 1}), t0 + 2 + i)
    before = metrics(tracker, t0 + 60)
    tracker.close()
    after = metrics(Tracker(config, t0 + 60, SqliteStore(path)), t0 + 60)
    assert value(after, "feedwatch_trading_drawdown_ratio", window="daily") == pytest.approx(0.07, abs=TOL)
    assert value(after, "feedwatch_trading_realized_pnl_daily") == -44.0
    assert value(after, "feedwatch_trading_consecutive_losses") == 4
    # Everything but the ingest counters (which may restart at 0, as counters do) is unchanged.
    def persisted(m: dict) -> dict:
        return {k: v for k, v in m.items() if not k[0].startswith("feedwatch_trading_events")}

    assert persisted(after) == persisted(before)


def test_day_boundary_and_time_zone():
    """A 17:00 New York boundary: 18:00 belongs to the next trading day, across a DST change."""
    config = trading_config(timezone="America/New_York", day_start="17:00")
    ny = dt.timezone(dt.timedelta(hours=-5))  # EST, before the 2024-03-10 change
    friday_1600 = dt.datetime(2024, 3, 8, 16, 0, tzinfo=ny).timestamp()
    friday_1800 = dt.datetime(2024, 3, 8, 18, 0, tzinfo=ny).timestamp()
    tracker = Tracker(config, friday_1600)

    def trade(i: str, ts: float, pnl: float) -> None:
        tracker.ingest_json(_json({"type": "trade", "account": "main", "id": i, "ts": ts, "symbol": "AAPL",
                                   "side": "long", "quantity": 1, "entry_price": 1, "exit_price": 2,
                                   "pnl": pnl}), ts)

    trade("a", friday_1600, 10.0)
    assert value(metrics(tracker, friday_1600 + 60), "feedwatch_trading_realized_pnl_daily") == 10.0
    trade("b", friday_1800, 3.0)  # after 17:00: a new trading day
    m = metrics(tracker, friday_1800 + 60)
    assert value(m, "feedwatch_trading_realized_pnl_daily") == 3.0
    assert value(m, "feedwatch_trading_realized_pnl") == 13.0
    # Monday 16:59 EDT (after the DST change) is still the trading day that began Sunday 17:00.
    edt = dt.timezone(dt.timedelta(hours=-4))
    sunday_1700 = dt.datetime(2024, 3, 10, 17, 0, tzinfo=edt).timestamp()
    trade("c", sunday_1700 + 1, -2.0)
    monday_1659 = dt.datetime(2024, 3, 11, 16, 59, tzinfo=edt).timestamp()
    assert value(metrics(tracker, monday_1659), "feedwatch_trading_realized_pnl_daily") == -2.0
    assert value(metrics(tracker, monday_1659 + 120), "feedwatch_trading_realized_pnl_daily") == 0.0


def test_day_and_week_roll_over_at_read_time():
    tracker = Tracker(trading_config(), MONDAY_NOON)
    for i, eq in enumerate((1000.0, 1100.0, 990.0)):
        tracker.ingest_json(_json({"type": "equity", "account": "main", "id": i, "ts": MONDAY_NOON + i,
                                   "equity": eq}), MONDAY_NOON + i)
    m = metrics(tracker, MONDAY_NOON + 10)
    assert value(m, "feedwatch_trading_drawdown_ratio", window="daily") == pytest.approx(0.1, abs=TOL)
    tuesday = metrics(tracker, MONDAY_NOON + DAY)
    assert value(tuesday, "feedwatch_trading_drawdown_ratio", window="daily") == 0.0  # a new day, no snapshot yet
    assert value(tuesday, "feedwatch_trading_drawdown_ratio", window="weekly") == pytest.approx(0.1, abs=TOL)
    next_monday = metrics(tracker, MONDAY_NOON + 7 * DAY)
    assert value(next_monday, "feedwatch_trading_drawdown_ratio", window="weekly") == 0.0
    assert value(next_monday, "feedwatch_trading_drawdown_ratio", window="current") == pytest.approx(0.1, abs=TOL)
    # The first snapshot of a day counts from the previous close: down 5 % at Tuesday's open.
    tracker.ingest_json(_json({"type": "equity", "account": "main", "id": "tue", "ts": MONDAY_NOON + DAY,
                               "equity": 940.5}), MONDAY_NOON + DAY)
    m = metrics(tracker, MONDAY_NOON + DAY + 1)
    assert value(m, "feedwatch_trading_drawdown_ratio", window="daily") == pytest.approx(0.05, abs=TOL)


def test_sharpe_absent_until_defined_never_zero():
    tracker = Tracker(trading_config(), MONDAY_NOON)
    for day, eq in enumerate((1000.0, 1010.0, 1020.0)):
        ts = MONDAY_NOON + day * DAY
        tracker.ingest_json(_json({"type": "equity", "account": "main", "id": day, "ts": ts, "equity": eq}), ts)
    # Two completed days: one return only.
    assert value(metrics(tracker, MONDAY_NOON + 2 * DAY), "feedwatch_trading_sharpe_ratio") is None
    # Constant equity: every return is 0, the standard deviation is 0: absent, not 0 or infinity.
    flat = Tracker(trading_config(), MONDAY_NOON)
    for day, eq in enumerate((1000.0, 1000.0, 1000.0, 1000.0)):
        ts = MONDAY_NOON + day * DAY
        flat.ingest_json(_json({"type": "equity", "account": "main", "id": day, "ts": ts, "equity": eq}), ts)
    assert value(metrics(flat, MONDAY_NOON + 4 * DAY), "feedwatch_trading_sharpe_ratio") is None
    returns = [1010 / 1000 - 1, 1020 / 1010 - 1]
    want = (statistics.mean(returns) - RISK_FREE / 365) / statistics.stdev(returns) * math.sqrt(365)
    got = value(metrics(tracker, MONDAY_NOON + 3 * DAY), "feedwatch_trading_sharpe_ratio")
    assert got == pytest.approx(want, abs=TOL)


def test_sharpe_rolling_window_and_periods_per_year():
    tracker = Tracker(trading_config(sharpe={"window": 3, "periods_per_year": 252}), MONDAY_NOON)
    closes = [100.0, 101.0, 99.0, 102.0, 104.0, 103.0]
    for day, eq in enumerate(closes):
        ts = MONDAY_NOON + day * DAY
        tracker.ingest_json(_json({"type": "equity", "account": "main", "id": day, "ts": ts, "equity": eq}), ts)
    returns = [b / a - 1 for a, b in zip(closes, closes[1:])][-3:]
    want = statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(252)
    got = value(metrics(tracker, MONDAY_NOON + len(closes) * DAY), "feedwatch_trading_sharpe_ratio")
    assert got == pytest.approx(want, abs=TOL)


def test_flat_trade_neither_breaks_nor_extends_the_streak():
    tracker = Tracker(trading_config(), MONDAY_NOON)
    for i, (pnl, fees) in enumerate(((-5, 0), (-1, 0), (1, 1), (-3, 0), (4, 0), (-2, 0))):
        tracker.ingest_json(_json({"type": "trade", "account": "main", "id": i, "ts": MONDAY_NOON + i,
                                   "symbol": "X", "side": "long", "quantity": 1, "entry_price": 1,
                                   "exit_price": 1, "pnl": pnl, "fees": fees}), MONDAY_NOON + i)
        if i == 3:
            assert tracker.accounts["main"].losing_streak == 3  # loss, loss, flat, loss
    assert tracker.accounts["main"].losing_streak == 1
    assert tracker.accounts["main"].trades == {"win": 1, "loss": 4, "flat": 1}


def test_bad_events_are_counted_and_skipped_with_a_reason():
    tracker = Tracker(trading_config(), MONDAY_NOON)
    now = MONDAY_NOON
    good = {"type": "equity", "account": "main", "id": "ok", "ts": now, "equity": 100}
    batch = [
        good,
        {"type": "equity", "account": "main", "id": "ok", "ts": now, "equity": 50},         # duplicate
        {"type": "teleport", "account": "main", "id": "x", "ts": now},                       # unknown type
        {"type": "equity", "account": "ghost", "id": "g", "ts": now, "equity": 1},           # unknown account
        {"type": "equity", "account": "main", "id": "nan", "ts": now, "equity": "lots"},     # malformed
        {"type": "trade", "account": "main", "id": "q", "ts": now, "symbol": "X", "side": "long",
         "quantity": -1, "entry_price": 1, "exit_price": 1, "pnl": 0},                        # malformed: quantity
        {"account": "main", "id": "notype", "ts": now},                                       # malformed: no type
        {"type": "equity", "account": "main", "id": "old", "ts": now - 8 * DAY, "equity": 1},  # expired
        {"type": "equity", "account": "main", "id": "earlier", "ts": now - 60, "equity": 1},   # out of order
        {"type": "equity", "account": "main", "id": "ahead", "ts": now + 3600, "equity": 1},   # future
        {"type": "safety", "account": "main", "id": "s", "ts": now},                          # malformed: no switch
        {"type": "equity", "account": "main", "id": "iso", "ts": "2024-03-04T12:00:30Z", "equity": 110},
    ]
    result = tracker.ingest_json(_json(batch), now + 60)
    assert result.accepted == 2
    assert result.rejected == {"duplicate": 1, "unknown_type": 1, "unknown_account": 1, "malformed": 4,
                               "expired": 1, "out_of_order": 1, "future": 1}
    assert any("teleport" in p for p in result.problems)
    assert tracker.accounts["main"].equity == 110.0
    not_json = tracker.ingest_json(b"{nope", now)
    assert not_json.rejected == {"malformed": 1}
    m = metrics(tracker, now + 60)
    assert m[("feedwatch_trading_events_rejected_total", (("reason", "malformed"),))] == 5
    assert m[("feedwatch_trading_events_total", (("account", "main"), ("type", "equity")))] == 2


def test_positions_safety_and_api_metrics():
    config = load_data({
        "feeds": [{"name": "binance", "kind": "polygon", "url": "ws://x", "symbols": ["BTCUSDT"]}],
        "trading": {"accounts": [{"name": "main", "symbols": {"BTCUSDT": "binance"},
                                  "limits": {"drawdown_daily": 0.03, "consecutive_losses": 4}}]},
    }).trading
    tracker = Tracker(config, MONDAY_NOON)
    now = MONDAY_NOON
    tracker.ingest_json(_json([
        {"type": "positions", "account": "main", "id": 1, "ts": now, "positions": {"BTCUSDT": 0.5, "DOGE": 0,
                                                                                 "ETHUSDT": -2}, "limit": 4},
        {"type": "safety", "account": "main", "id": 2, "ts": now, "circuit_breaker": "open", "reason": 'spread "wide"'},
        {"type": "api_call", "account": "main", "id": 3, "ts": now, "endpoint": "GET /x", "ok": False, "latency": 0.3},
        {"type": "api_call", "account": "main", "id": 4, "ts": now, "endpoint": "GET /x", "ok": True, "latency": 0.02},
    ]), now)
    text = TradingCollector(tracker).render(now)
    assert 'feedwatch_trading_position{account="main",symbol="BTCUSDT",feed="binance"} 0.5\n' in text
    assert 'feedwatch_trading_position{account="main",symbol="ETHUSDT",feed=""} -2.0\n' in text
    assert "DOGE" not in text
    assert 'feedwatch_trading_positions_open{account="main"} 2\n' in text
    assert 'feedwatch_trading_positions_utilization_ratio{account="main"} 0.5\n' in text
    assert 'feedwatch_trading_circuit_breaker_open{account="main"} 1\n' in text
    assert 'feedwatch_trading_circuit_breaker_info{account="main",reason="spread \\"wide\\""} 1\n' in text
    assert 'feedwatch_trading_kill_switch_info{account="main",reason="none"} 1\n' in text
    assert 'feedwatch_trading_api_errors_total{account="main"} 1\n' in text
    assert 'feedwatch_trading_api_request_duration_seconds_bucket{account="main",le="0.025"} 1\n' in text
    assert 'feedwatch_trading_api_request_duration_seconds_bucket{account="main",le="0.5"} 2\n' in text
    assert 'feedwatch_trading_limit_drawdown_ratio{account="main",window="daily"} 0.03\n' in text
    assert 'feedwatch_trading_limit_drawdown_ratio{account="main",window="weekly"} 0.1\n' in text
    assert 'feedwatch_trading_limit_consecutive_losses{account="main"} 4\n' in text
    # Undefined values are absent, not 0.
    for absent in ("feedwatch_trading_equity{", "feedwatch_trading_sharpe_ratio{", "feedwatch_trading_win_rate_ratio{",
                   "feedwatch_trading_drawdown_ratio{"):
        assert absent not in text


def test_a_failing_state_file_applies_nothing_and_a_retry_counts_once():
    """Disk full: memory must not run ahead of the file (it counted replays twice on main)."""
    from exporter.trading.store import MemoryStore, StoreError

    class FillingDisk(MemoryStore):
        full = True

        def commit(self) -> None:
            if self.full:
                raise StoreError("trading state file /x: COMMIT failed: database or disk is full")
            super().commit()

    store = FillingDisk()
    tracker = Tracker(trading_config(), MONDAY_NOON, store)
    t0 = MONDAY_NOON
    batch = _json([{"type": "equity", "account": "main", "id": 1, "ts": t0, "equity": 1000.0},
                   {"type": "equity", "account": "main", "id": 2, "ts": t0, "equity": 800.0},
                   {"type": "trade", "account": "main", "id": 3, "ts": t0, "symbol": "X", "side": "long",
                    "quantity": 1, "entry_price": 2, "exit_price": 1, "pnl": -1},
                   {"type": "safety", "account": "main", "id": 4, "ts": t0, "kill_switch": True}])
    before = metrics(tracker, t0)
    for _ in range(2):
        result = tracker.ingest_json(batch, t0)
        assert result.accepted == 0 and "disk is full" in result.store_error
    account = tracker.accounts["main"]
    assert (account.equity, account.peak, account.trades["loss"], account.losing_streak, account.kill_switch) == \
        (None, None, 0, 0, False)
    assert metrics(tracker, t0) == {**before, ("feedwatch_trading_state_store_errors_total", ()): 2}
    store.full = False
    assert tracker.ingest_json(batch, t0).accepted == 4
    assert tracker.ingest_json(batch, t0).rejected == {"duplicate": 4}
    assert (account.trades["loss"], account.losing_streak, account.kill_switch) == (1, 1, True)
    assert account.max_drawdown == pytest.approx(0.2)
    assert Tracker(trading_config(), t0, store).accounts["main"].to_state() == account.to_state()


def test_an_all_or_nothing_batch_names_each_invalid_event_and_applies_none():
    tracker = Tracker(trading_config(), MONDAY_NOON)
    now = MONDAY_NOON
    batch = [{"type": "equity", "account": "main", "id": "a", "ts": now, "equity": 100},
             {"type": "equity", "account": "ghost", "id": "b", "ts": now, "equity": 1},
             {"type": "equity", "account": "main", "id": "c", "ts": now + 3600, "equity": 1}]
    result = tracker.ingest_json(_json(batch), now, atomic=True)
    assert result.refused and result.accepted == 0
    assert [(i, reason) for i, reason, _ in result.errors] == [(1, "unknown_account"), (2, "future")]
    assert tracker.accounts["main"].equity is None
    # The same frame on a stream (nobody to answer): the valid event is applied.
    assert tracker.ingest_json(_json(batch), now).accepted == 1


def test_a_store_that_cannot_prune_at_start_is_counted_not_fatal():
    from exporter.trading.store import MemoryStore, StoreError

    class FullDisk(MemoryStore):
        def prune(self, before: float) -> None:
            raise StoreError("trading state file /x: DELETE failed: database or disk is full")

    tracker = Tracker(trading_config(), MONDAY_NOON, FullDisk())
    assert tracker.store_errors == 1
    assert tracker.ingest_json(_json({"type": "equity", "account": "main", "id": 1, "ts": MONDAY_NOON,
                                      "equity": 5.0}), MONDAY_NOON).accepted == 1
