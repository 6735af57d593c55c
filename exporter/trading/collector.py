"""The trading tracker as Prometheus text exposition, rendered at scrape time.

``TradingCollector(tracker).render(now)`` is one of the server's ``renderers``: its text is
appended to ``/metrics``. Values that depend on the time (today's P&L, the day's and week's
drawdown, the Sharpe ratio's completed days) are derived here from the injected clock.

P&L and equity are in the **account currency** (whatever the bot reports: USD, USDT, ...), not
a base unit; ratios are ratios (0.05 = 5 %). Series whose value is undefined are absent rather
than a fake 0: equity and drawdowns before the first equity snapshot, the Sharpe ratio before
enough completed days, the win rate before the first trade, the position limit and utilization
before a ``positions`` event gives a limit. Counters start at 0 for every configured account
and every known label value.

Exactly what ``render`` emits for one account ``main`` with an open BTCUSDT position mapped to
feed ``binance`` (every family lists every configured account; ``...`` marks repeated buckets)::

    # HELP feedwatch_trading_equity Account equity from the last snapshot, in the account currency.
    # TYPE feedwatch_trading_equity gauge
    feedwatch_trading_equity{account="main"} 10250.0
    # HELP feedwatch_trading_realized_pnl Realized P&L net of fees since tracking began, in the account currency.
    # TYPE feedwatch_trading_realized_pnl gauge
    feedwatch_trading_realized_pnl{account="main"} 250.0
    # HELP feedwatch_trading_realized_pnl_daily Realized P&L net of fees of the current trading day, in the account currency.
    # TYPE feedwatch_trading_realized_pnl_daily gauge
    feedwatch_trading_realized_pnl_daily{account="main"} -40.0
    # HELP feedwatch_trading_drawdown_ratio Drawdown of equity below its peak: current (running peak), daily (the trading day's), weekly (the week's).
    # TYPE feedwatch_trading_drawdown_ratio gauge
    feedwatch_trading_drawdown_ratio{account="main",window="current"} 0.012
    feedwatch_trading_drawdown_ratio{account="main",window="daily"} 0.004
    feedwatch_trading_drawdown_ratio{account="main",window="weekly"} 0.009
    # HELP feedwatch_trading_max_drawdown_ratio Largest drawdown from the running peak ever seen.
    # TYPE feedwatch_trading_max_drawdown_ratio gauge
    feedwatch_trading_max_drawdown_ratio{account="main"} 0.031
    # HELP feedwatch_trading_sharpe_ratio Annualised Sharpe ratio of daily returns over the rolling window; absent until defined.
    # TYPE feedwatch_trading_sharpe_ratio gauge
    feedwatch_trading_sharpe_ratio{account="main"} 1.73
    # HELP feedwatch_trading_win_rate_ratio Winning trades over all closed trades; absent before the first trade.
    # TYPE feedwatch_trading_win_rate_ratio gauge
    feedwatch_trading_win_rate_ratio{account="main"} 0.55
    # HELP feedwatch_trading_sortino_ratio Annualised Sortino ratio of daily returns over the Sharpe window; absent until defined.
    # TYPE feedwatch_trading_sortino_ratio gauge
    feedwatch_trading_sortino_ratio{account="main"} 2.41
    # HELP feedwatch_trading_calmar_ratio Compound annual growth over the maximum drawdown of the daily returns in the Sharpe window; absent until defined.
    # TYPE feedwatch_trading_calmar_ratio gauge
    feedwatch_trading_calmar_ratio{account="main"} 3.9
    # HELP feedwatch_trading_profit_factor Gross profit of winning trades over the gross loss of losing trades; absent before the first losing trade.
    # TYPE feedwatch_trading_profit_factor gauge
    feedwatch_trading_profit_factor{account="main"} 1.34
    # HELP feedwatch_trading_average_win Mean net P&L of winning trades, in the account currency; absent before the first win.
    # TYPE feedwatch_trading_average_win gauge
    feedwatch_trading_average_win{account="main"} 48.2
    # HELP feedwatch_trading_average_loss Mean net P&L of losing trades (negative), in the account currency; absent before the first loss.
    # TYPE feedwatch_trading_average_loss gauge
    feedwatch_trading_average_loss{account="main"} -43.9
    # HELP feedwatch_trading_expectancy Expected net P&L per winning or losing trade, in the account currency; absent before the first.
    # TYPE feedwatch_trading_expectancy gauge
    feedwatch_trading_expectancy{account="main"} 6.75
    # HELP feedwatch_trading_trades_total Closed trades by result (net of fees: win > 0, loss < 0, flat = 0).
    # TYPE feedwatch_trading_trades_total counter
    feedwatch_trading_trades_total{account="main",result="win"} 11
    feedwatch_trading_trades_total{account="main",result="loss"} 9
    feedwatch_trading_trades_total{account="main",result="flat"} 0
    # HELP feedwatch_trading_consecutive_losses Losing trades in a row (a win resets it; a flat trade leaves it).
    # TYPE feedwatch_trading_consecutive_losses gauge
    feedwatch_trading_consecutive_losses{account="main"} 2
    # HELP feedwatch_trading_kill_switch_active Whether the bot's kill switch is on (1) or off (0).
    # TYPE feedwatch_trading_kill_switch_active gauge
    feedwatch_trading_kill_switch_active{account="main"} 0
    # HELP feedwatch_trading_kill_switch_info The reason given with the last kill switch change (always 1).
    # TYPE feedwatch_trading_kill_switch_info gauge
    feedwatch_trading_kill_switch_info{account="main",reason="none"} 1
    # HELP feedwatch_trading_circuit_breaker_open Whether the bot's circuit breaker is open (1: trading halted) or closed (0).
    # TYPE feedwatch_trading_circuit_breaker_open gauge
    feedwatch_trading_circuit_breaker_open{account="main"} 1
    # HELP feedwatch_trading_circuit_breaker_info The reason given with the last circuit breaker change (always 1).
    # TYPE feedwatch_trading_circuit_breaker_info gauge
    feedwatch_trading_circuit_breaker_info{account="main",reason="volatility halt"} 1
    # HELP feedwatch_trading_positions_open Symbols with a non-zero open position.
    # TYPE feedwatch_trading_positions_open gauge
    feedwatch_trading_positions_open{account="main"} 1
    # HELP feedwatch_trading_positions_limit Most open positions the bot allows itself; absent until reported.
    # TYPE feedwatch_trading_positions_limit gauge
    feedwatch_trading_positions_limit{account="main"} 5
    # HELP feedwatch_trading_positions_utilization_ratio Open positions over the position limit; absent without a limit.
    # TYPE feedwatch_trading_positions_utilization_ratio gauge
    feedwatch_trading_positions_utilization_ratio{account="main"} 0.2
    # HELP feedwatch_trading_position Open position per symbol (signed quantity); feed is the price feed the config maps the symbol to (empty if none).
    # TYPE feedwatch_trading_position gauge
    feedwatch_trading_position{account="main",symbol="BTCUSDT",feed="binance"} 0.5
    # HELP feedwatch_trading_api_errors_total Failed calls the bot made to its exchange API.
    # TYPE feedwatch_trading_api_errors_total counter
    feedwatch_trading_api_errors_total{account="main"} 4
    # HELP feedwatch_trading_api_request_duration_seconds Latency of the bot's exchange API calls, as reported by the bot.
    # TYPE feedwatch_trading_api_request_duration_seconds histogram
    feedwatch_trading_api_request_duration_seconds_bucket{account="main",le="0.005"} 0
    ... one bucket per trading.API_LATENCY_BUCKETS, cumulative
    feedwatch_trading_api_request_duration_seconds_bucket{account="main",le="+Inf"} 120
    feedwatch_trading_api_request_duration_seconds_sum{account="main"} 14.2
    feedwatch_trading_api_request_duration_seconds_count{account="main"} 120
    # HELP feedwatch_trading_last_event_timestamp_seconds Event time of the newest event applied for the account (0 = none yet).
    # TYPE feedwatch_trading_last_event_timestamp_seconds gauge
    feedwatch_trading_last_event_timestamp_seconds{account="main"} 1700000000.5
    # HELP feedwatch_trading_limit_drawdown_ratio Configured drawdown limit per window (daily, weekly, total), as a ratio.
    # TYPE feedwatch_trading_limit_drawdown_ratio gauge
    feedwatch_trading_limit_drawdown_ratio{account="main",window="daily"} 0.05
    feedwatch_trading_limit_drawdown_ratio{account="main",window="weekly"} 0.1
    feedwatch_trading_limit_drawdown_ratio{account="main",window="total"} 0.2
    # HELP feedwatch_trading_limit_consecutive_losses Configured limit of losing trades in a row.
    # TYPE feedwatch_trading_limit_consecutive_losses gauge
    feedwatch_trading_limit_consecutive_losses{account="main"} 10
    # HELP feedwatch_trading_limit_api_errors_per_minute Configured limit of failed API calls per minute.
    # TYPE feedwatch_trading_limit_api_errors_per_minute gauge
    feedwatch_trading_limit_api_errors_per_minute{account="main"} 3.0
    # HELP feedwatch_trading_events_total Events applied, by account and type.
    # TYPE feedwatch_trading_events_total counter
    feedwatch_trading_events_total{account="main",type="trade"} 20
    ... one sample per type in trading.EVENT_TYPES
    # HELP feedwatch_trading_events_rejected_total Events (or push requests: unauthorized, replayed) refused, by reason.
    # TYPE feedwatch_trading_events_rejected_total counter
    feedwatch_trading_events_rejected_total{reason="malformed"} 0
    ... one sample per reason in trading.REJECT_REASONS
    # HELP feedwatch_trading_state_store_errors_total Failed writes of the trading state file (the batch was refused and not applied; a backup that could not be refreshed counts too).
    # TYPE feedwatch_trading_state_store_errors_total counter
    feedwatch_trading_state_store_errors_total 0

A sample whose value cannot be rendered (the tracker bounds what it accepts, so this is the
guard behind it) is left out of the scrape and counted in
``feedwatch_render_errors_total{collector="trading"}`` (``exporter.collector.RenderErrors``).
"""

from __future__ import annotations

from typing import Callable, Iterable

from exporter.book import escape_label
from exporter.collector import RenderErrors, format_value, header, histogram_lines
from exporter.trading import desk
from exporter.trading.tracker import API_LATENCY_BUCKETS, EVENT_TYPES, RESULTS, Account, Tracker

# name -> (type, help): one table for the renderer, docs/metrics.md and the tests.
TRADING_FAMILIES: dict[str, tuple[str, str]] = {
    "feedwatch_trading_equity": (
        "gauge", "Account equity from the last snapshot, in the account currency."),
    "feedwatch_trading_realized_pnl": (
        "gauge", "Realized P&L net of fees since tracking began, in the account currency."),
    "feedwatch_trading_realized_pnl_daily": (
        "gauge", "Realized P&L net of fees of the current trading day, in the account currency."),
    "feedwatch_trading_drawdown_ratio": (
        "gauge", "Drawdown of equity below its peak: current (running peak), daily (the trading day's), "
                 "weekly (the week's)."),
    "feedwatch_trading_max_drawdown_ratio": (
        "gauge", "Largest drawdown from the running peak ever seen."),
    "feedwatch_trading_sharpe_ratio": (
        "gauge", "Annualised Sharpe ratio of daily returns over the rolling window; absent until defined."),
    "feedwatch_trading_win_rate_ratio": (
        "gauge", "Winning trades over all closed trades; absent before the first trade."),
    "feedwatch_trading_sortino_ratio": (
        "gauge", "Annualised Sortino ratio of daily returns over the Sharpe window; absent until defined."),
    "feedwatch_trading_calmar_ratio": (
        "gauge", "Compound annual growth over the maximum drawdown of the daily returns in the Sharpe window; "
                 "absent until defined."),
    "feedwatch_trading_profit_factor": (
        "gauge", "Gross profit of winning trades over the gross loss of losing trades; absent before the first "
                 "losing trade."),
    "feedwatch_trading_average_win": (
        "gauge", "Mean net P&L of winning trades, in the account currency; absent before the first win."),
    "feedwatch_trading_average_loss": (
        "gauge", "Mean net P&L of losing trades (negative), in the account currency; absent before the first loss."),
    "feedwatch_trading_expectancy": (
        "gauge", "Expected net P&L per winning or losing trade, in the account currency; absent before the first."),
    "feedwatch_trading_trades_total": (
        "counter", "Closed trades by result (net of fees: win > 0, loss < 0, flat = 0)."),
    "feedwatch_trading_consecutive_losses": (
        "gauge", "Losing trades in a row (a win resets it; a flat trade leaves it)."),
    "feedwatch_trading_kill_switch_active": (
        "gauge", "Whether the bot's kill switch is on (1) or off (0)."),
    "feedwatch_trading_kill_switch_info": (
        "gauge", "The reason given with the last kill switch change (always 1)."),
    "feedwatch_trading_circuit_breaker_open": (
        "gauge", "Whether the bot's circuit breaker is open (1: trading halted) or closed (0)."),
    "feedwatch_trading_circuit_breaker_info": (
        "gauge", "The reason given with the last circuit breaker change (always 1)."),
    "feedwatch_trading_positions_open": (
        "gauge", "Symbols with a non-zero open position."),
    "feedwatch_trading_positions_limit": (
        "gauge", "Most open positions the bot allows itself; absent until reported."),
    "feedwatch_trading_positions_utilization_ratio": (
        "gauge", "Open positions over the position limit; absent without a limit."),
    "feedwatch_trading_position": (
        "gauge", "Open position per symbol (signed quantity); feed is the price feed the config maps the "
                 "symbol to (empty if none)."),
    "feedwatch_trading_api_errors_total": (
        "counter", "Failed calls the bot made to its exchange API."),
    "feedwatch_trading_api_request_duration_seconds": (
        "histogram", "Latency of the bot's exchange API calls, as reported by the bot."),
    "feedwatch_trading_last_event_timestamp_seconds": (
        "gauge", "Event time of the newest event applied for the account (0 = none yet)."),
    "feedwatch_trading_limit_drawdown_ratio": (
        "gauge", "Configured drawdown limit per window (daily, weekly, total), as a ratio."),
    "feedwatch_trading_limit_consecutive_losses": (
        "gauge", "Configured limit of losing trades in a row."),
    "feedwatch_trading_limit_api_errors_per_minute": (
        "gauge", "Configured limit of failed API calls per minute."),
    "feedwatch_trading_events_total": (
        "counter", "Events applied, by account and type."),
    "feedwatch_trading_events_rejected_total": (
        "counter", "Events (or push requests: unauthorized, replayed) refused, by reason."),
    "feedwatch_trading_state_store_errors_total": (
        "counter", "Failed writes of the trading state file (the batch was refused and not applied; a backup that could not be refreshed counts too)."),
}

_BUCKET_LE = tuple(format_value(b) for b in API_LATENCY_BUCKETS) + ("+Inf",)
# What an info series carries before any reason was given.
NO_REASON = "none"

Lines = Callable[[Account, str], Iterable[str]]


def _gauge(name: str, value: Callable[[Account], float | None]) -> Lines:
    def lines(account: Account, labels: str) -> Iterable[str]:
        v = value(account)
        return () if v is None else (f"{name}{{{labels}}} {format_value(v)}\n",)
    return lines


class TradingCollector:
    """Renders a ``Tracker`` (see the module docstring for the exact lines)."""

    def __init__(self, tracker: Tracker, errors: RenderErrors | None = None) -> None:
        self.tracker = tracker
        # Shared with the book collector of the same /metrics, which renders the family.
        self.errors = errors if errors is not None else RenderErrors()
        self.errors.register("trading")

    def __call__(self, now: float) -> str:
        return self.render(now)

    def render(self, now: float) -> str:
        tracker = self.tracker
        accounts = [(a, f'account="{escape_label(a.name)}"') for a in tracker.accounts.values()]
        per_account: dict[str, Lines] = {
            "feedwatch_trading_equity": _gauge("feedwatch_trading_equity", lambda a: a.equity),
            "feedwatch_trading_realized_pnl": _gauge("feedwatch_trading_realized_pnl", lambda a: a.pnl_total),
            "feedwatch_trading_realized_pnl_daily": _gauge(
                "feedwatch_trading_realized_pnl_daily", lambda a: a.pnl_today(now)),
            "feedwatch_trading_drawdown_ratio": lambda a, labels: self._drawdowns(a, labels, now),
            "feedwatch_trading_max_drawdown_ratio": _gauge(
                "feedwatch_trading_max_drawdown_ratio", lambda a: a.max_drawdown),
            "feedwatch_trading_sharpe_ratio": _gauge("feedwatch_trading_sharpe_ratio", lambda a: a.sharpe(now)),
            "feedwatch_trading_win_rate_ratio": _gauge("feedwatch_trading_win_rate_ratio", lambda a: a.win_rate()),
            "feedwatch_trading_sortino_ratio": _gauge(
                "feedwatch_trading_sortino_ratio", lambda a: desk.sortino(a, now)),
            "feedwatch_trading_calmar_ratio": _gauge("feedwatch_trading_calmar_ratio", lambda a: desk.calmar(a, now)),
            "feedwatch_trading_profit_factor": _gauge("feedwatch_trading_profit_factor", desk.profit_factor),
            "feedwatch_trading_average_win": _gauge("feedwatch_trading_average_win", desk.average_win),
            "feedwatch_trading_average_loss": _gauge("feedwatch_trading_average_loss", desk.average_loss),
            "feedwatch_trading_expectancy": _gauge("feedwatch_trading_expectancy", desk.expectancy),
            "feedwatch_trading_trades_total": lambda a, labels: (
                f'feedwatch_trading_trades_total{{{labels},result="{result}"}} {a.trades[result]}\n'
                for result in RESULTS),
            "feedwatch_trading_consecutive_losses": _gauge(
                "feedwatch_trading_consecutive_losses", lambda a: a.losing_streak),
            "feedwatch_trading_kill_switch_active": _gauge(
                "feedwatch_trading_kill_switch_active", lambda a: 1 if a.kill_switch else 0),
            "feedwatch_trading_kill_switch_info": lambda a, labels: (
                f'feedwatch_trading_kill_switch_info{{{labels},reason="{escape_label(a.kill_reason or NO_REASON)}"}} 1\n',),
            "feedwatch_trading_circuit_breaker_open": _gauge(
                "feedwatch_trading_circuit_breaker_open", lambda a: 1 if a.breaker_open else 0),
            "feedwatch_trading_circuit_breaker_info": lambda a, labels: (
                f'feedwatch_trading_circuit_breaker_info{{{labels},reason="{escape_label(a.breaker_reason or NO_REASON)}"}} 1\n',),
            "feedwatch_trading_positions_open": _gauge(
                "feedwatch_trading_positions_open", lambda a: a.positions_open()),
            "feedwatch_trading_positions_limit": _gauge(
                "feedwatch_trading_positions_limit", lambda a: a.position_limit),
            "feedwatch_trading_positions_utilization_ratio": _gauge(
                "feedwatch_trading_positions_utilization_ratio", lambda a: a.utilization()),
            "feedwatch_trading_position": self._positions,
            "feedwatch_trading_api_errors_total": _gauge(
                "feedwatch_trading_api_errors_total", lambda a: a.api_errors),
            "feedwatch_trading_api_request_duration_seconds": self._latency,
            "feedwatch_trading_last_event_timestamp_seconds": _gauge(
                "feedwatch_trading_last_event_timestamp_seconds", lambda a: float(a.last_event)),
            "feedwatch_trading_limit_drawdown_ratio": lambda a, labels: (
                f'feedwatch_trading_limit_drawdown_ratio{{{labels},window="{window}"}} {format_value(value)}\n'
                for window, value in (("daily", a.rules.limits.drawdown_daily),
                                      ("weekly", a.rules.limits.drawdown_weekly),
                                      ("total", a.rules.limits.drawdown_total))),
            "feedwatch_trading_limit_consecutive_losses": _gauge(
                "feedwatch_trading_limit_consecutive_losses", lambda a: a.rules.limits.consecutive_losses),
            "feedwatch_trading_limit_api_errors_per_minute": _gauge(
                "feedwatch_trading_limit_api_errors_per_minute", lambda a: float(a.rules.limits.api_errors_per_minute)),
            "feedwatch_trading_events_total": lambda a, labels: (
                f'feedwatch_trading_events_total{{{labels},type="{kind}"}} {tracker.events[(a.name, kind)]}\n'
                for kind in EVENT_TYPES),
        }
        out: list[str] = []
        for name, lines in per_account.items():
            kind, help_text = TRADING_FAMILIES[name]
            out.append(header(name, kind, help_text))
            for account, labels in accounts:
                try:
                    out.extend(list(lines(account, labels)))  # whole or not at all
                except Exception as exc:
                    self.errors.skipped("trading", f"{name}{{{labels}}}", exc)
        kind, help_text = TRADING_FAMILIES["feedwatch_trading_events_rejected_total"]
        out.append(header("feedwatch_trading_events_rejected_total", kind, help_text))
        out.extend(f'feedwatch_trading_events_rejected_total{{reason="{reason}"}} {count}\n'
                   for reason, count in tracker.rejected.items())
        kind, help_text = TRADING_FAMILIES["feedwatch_trading_state_store_errors_total"]
        out.append(header("feedwatch_trading_state_store_errors_total", kind, help_text))
        out.append(f"feedwatch_trading_state_store_errors_total {tracker.store_errors}\n")
        return "".join(out)

    @staticmethod
    def _drawdowns(account: Account, labels: str, now: float) -> Iterable[str]:
        for window, value in (("current", account.drawdown()),
                              ("daily", account.drawdown_daily(now)),
                              ("weekly", account.drawdown_weekly(now))):
            if value is not None:
                yield f'feedwatch_trading_drawdown_ratio{{{labels},window="{window}"}} {format_value(value)}\n'

    @staticmethod
    def _positions(account: Account, labels: str) -> Iterable[str]:
        feeds = account.rules.symbols
        for symbol, quantity in sorted(account.positions.items()):
            yield (f'feedwatch_trading_position{{{labels},symbol="{escape_label(symbol)}",'
                   f'feed="{escape_label(feeds.get(symbol, ""))}"}} {format_value(float(quantity))}\n')

    @staticmethod
    def _latency(account: Account, labels: str) -> Iterable[str]:
        return histogram_lines("feedwatch_trading_api_request_duration_seconds", labels, _BUCKET_LE,
                               account.latency_counts, float(account.latency_sum))
