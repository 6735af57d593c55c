"""Trading performance: how each account is doing, and how close it is to its risk limits.

Read top to bottom: the numbers now (equity, today's and total realized P&L, Sharpe ratio, win
rate, losing streak), the equity curve and daily P&L, each drawdown next to the limit the alerts
use (``feedwatch_trading_limit_*``, from the exporter's config, so a tighter account shows its
own line), then the trade statistics over time. Money is in each account's own currency.
Formulas: docs/trading-events.md.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import units
from grafana_foundation_sdk.models import dashboard as models

from grafana import panels as p

UID = "feedwatch-trading-performance"
TITLE = "feedwatch / Trading performance"
HEALTH_UID = "feedwatch-trading-health"  # grafana/dashboards_src/trading_health.py

ACCOUNT = '{account=~"$account"}'


def account_variable():  # type: ignore[no-untyped-def] - an SDK variable builder
    # The limit series exist for every configured account from the start (no event needed).
    return p.label_variable("account", "account", "feedwatch_trading_limit_consecutive_losses",
                            title="Account", multi=True, include_all=True)


def limit_lines(panel):  # type: ignore[no-untyped-def] - any SDK graph builder
    """Series whose legend ends in "limit" drawn as red dashed lines: the threshold an alert uses."""
    return panel.override_by_regexp(".* limit", [
        models.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
        models.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"}),
    ])


def _drawdown(title: str, description: str, window: str, limit_window: str):  # type: ignore[no-untyped-def]
    """One drawdown window against its configured limit (dashed)."""
    return limit_lines(p.timeseries_panel(
        title, description,
        [p.query(f'max by (account) (feedwatch_trading_drawdown_ratio{{account=~"$account",window="{window}"}})',
                 "{{account}} drawdown", ref="A"),
         p.query(f'max by (account) (feedwatch_trading_limit_drawdown_ratio{{account=~"$account",window="{limit_window}"}})',
                 "{{account}} limit", ref="B")],
        unit=units.PercentUnit, width=8))


def build() -> models.Dashboard:
    dash = (p.base_dashboard(TITLE, UID, "Equity, P&L, drawdowns against their limits, Sharpe ratio, win rate "
                             "and losing streak per trading account.")
            .with_variable(account_variable())
            .link(p.dashboard_link("Trading system health", HEALTH_UID,
                                   tooltip="Kill switch, circuit breaker, positions, exchange API, feeds"))
            .link(p.all_dashboards_link()))

    dash = dash.with_row(p.row("Now"))
    dash = dash.with_panel(
        p.stat_panel("Equity", "Account equity from the bot's last snapshot, in the account's currency.",
                     [p.query(f"max by (account) (feedwatch_trading_equity{ACCOUNT})", "{{account}}", instant=True)],
                     unit=units.Short, width=4)
        .decimals(2).thresholds(p.plain_thresholds("blue")))
    dash = dash.with_panel(
        p.stat_panel("Realized P&L today", "Realized P&L net of fees of the current trading day (the day "
                     "boundary and time zone are configurable), in the account's currency.",
                     [p.query(f"max by (account) (feedwatch_trading_realized_pnl_daily{ACCOUNT})", "{{account}}",
                              instant=True)],
                     unit=units.Short, width=4)
        .decimals(2).thresholds(p.warn_above(0, base="red", warn="green")))
    dash = dash.with_panel(
        p.stat_panel("Realized P&L total", "Realized P&L net of fees since feedwatch began tracking the account.",
                     [p.query(f"max by (account) (feedwatch_trading_realized_pnl{ACCOUNT})", "{{account}}",
                              instant=True)],
                     unit=units.Short, width=4)
        .decimals(2).thresholds(p.warn_above(0, base="red", warn="green")))
    dash = dash.with_panel(
        p.stat_panel("Sharpe ratio", "Annualised Sharpe ratio of daily returns over the rolling window. "
                     "No data until enough completed days (never a fake 0).",
                     [p.query(f"max by (account) (feedwatch_trading_sharpe_ratio{ACCOUNT})", "{{account}}",
                              instant=True)],
                     unit=units.NoUnit, width=4)
        .decimals(2).thresholds(p.threshold_steps([(None, "red"), (0, "orange"), (1, "green")])))
    dash = dash.with_panel(
        p.stat_panel("Win rate", "Winning trades (net of fees) over all closed trades.",
                     [p.query(f"max by (account) (feedwatch_trading_win_rate_ratio{ACCOUNT})", "{{account}}",
                              instant=True)],
                     unit=units.PercentUnit, width=4)
        .decimals(1).thresholds(p.plain_thresholds("blue")))
    dash = dash.with_panel(
        p.stat_panel("Losing streak", "Losing trades in a row, as a share of the account's limit "
                     "(TradingConsecutiveLosses fires at 100 %).",
                     [p.query(f"max by (account) (feedwatch_trading_consecutive_losses{ACCOUNT}"
                              f" / on (job, instance, account) feedwatch_trading_limit_consecutive_losses{ACCOUNT})",
                              "{{account}}", instant=True)],
                     unit=units.PercentUnit, width=4)
        .decimals(0).thresholds(p.threshold_steps([(None, "green"), (0.5, "orange"), (1, "red")])))

    dash = dash.with_row(p.row("Equity and P&L"))
    dash = dash.with_panel(
        p.timeseries_panel("Equity curve", "Account equity at each scrape.",
                           [p.query(f"max by (account) (feedwatch_trading_equity{ACCOUNT})", "{{account}}")],
                           unit=units.Short, width=16, height=9)
        .decimals(2))
    dash = dash.with_panel(
        p.timeseries_panel("Daily realized P&L", "Realized P&L of the current trading day; it restarts at 0 "
                           "at each day boundary.",
                           [p.query(f"max by (account) (feedwatch_trading_realized_pnl_daily{ACCOUNT})", "{{account}}")],
                           unit=units.Short, width=8, height=9)
        .decimals(2))

    dash = dash.with_row(p.row("Drawdown against the limits"))
    dash = dash.with_panel(_drawdown("Daily drawdown", "Equity below the trading day's peak (its opening "
                                     "equity included); dashed: the limit TradingDrawdownDaily compares with.",
                                     "daily", "daily"))
    dash = dash.with_panel(_drawdown("Weekly drawdown", "Equity below the trading week's peak; dashed: the "
                                     "weekly limit.", "weekly", "weekly"))
    dash = dash.with_panel(_drawdown("Drawdown from peak", "Equity below its all-time peak; dashed: the total "
                                     "limit (TradingDrawdownTotal).", "current", "total"))
    dash = dash.with_panel(
        p.timeseries_panel("Maximum drawdown", "The largest drawdown from the running peak ever seen.",
                           [p.query(f"max by (account) (feedwatch_trading_max_drawdown_ratio{ACCOUNT})", "{{account}}")],
                           unit=units.PercentUnit, width=24, height=6))

    dash = dash.with_row(p.row("Trades"))
    dash = dash.with_panel(
        p.timeseries_panel("Sharpe ratio", "Annualised Sharpe ratio of the completed days' returns.",
                           [p.query(f"max by (account) (feedwatch_trading_sharpe_ratio{ACCOUNT})", "{{account}}")],
                           unit=units.NoUnit, width=8)
        .decimals(2))
    dash = dash.with_panel(
        p.timeseries_panel("Win rate", "Winning trades over all closed trades.",
                           [p.query(f"max by (account) (feedwatch_trading_win_rate_ratio{ACCOUNT})", "{{account}}")],
                           unit=units.PercentUnit, width=8))
    dash = dash.with_panel(limit_lines(
        p.timeseries_panel("Losing streak", "Losing trades in a row; dashed: the account's limit.",
                           [p.query(f"max by (account) (feedwatch_trading_consecutive_losses{ACCOUNT})",
                                    "{{account}} streak", ref="A"),
                            p.query(f"max by (account) (feedwatch_trading_limit_consecutive_losses{ACCOUNT})",
                                    "{{account}} limit", ref="B")],
                           unit=units.Short, width=8)))
    dash = dash.with_panel(
        p.timeseries_panel("Closed trades by result", "Trades closed per interval: win, loss or flat (net of fees).",
                           [p.query(f"max by (account, result) (increase(feedwatch_trading_trades_total{ACCOUNT}"
                                    f"[$__rate_interval]))", "{{account}} {{result}}")],
                           unit=units.Short, width=24, bars=True, stacked=True)
        .override_by_regexp(".* win", p.fixed_colour("green"))
        .override_by_regexp(".* loss", p.fixed_colour("red"))
        .override_by_regexp(".* flat", p.fixed_colour("#8e8e8e")))
    return dash.build()
