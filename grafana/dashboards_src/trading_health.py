"""Trading system health: is the bot allowed to trade, what does it hold, can it reach its exchange,
and are the prices it trades on fresh.

Read top to bottom: the safety switches (kill switch, circuit breaker with the reason the bot
gave), positions against the limit and each open position's price state (what
``TradingStalePricePosition`` watches), the exchange API's errors against the account's limit and
its latency, then the health of the feeds (the bot's own event stream included) and of the event
intake.

The trading series come from shard 0 (docs/scaling.md); with several replicas of it, each tracks
the same events, so counts take one replica's (``max``), never their sum; a position's price
state is the rules' merged view of the symbol (its best replica with evidence).
"""

from __future__ import annotations

from grafana_foundation_sdk.models import units
from grafana_foundation_sdk.models import dashboard as models

from grafana import panels as p
from grafana.dashboards_src import trading_performance

UID = "feedwatch-trading-health"
TITLE = "feedwatch / Trading system health"
FEEDS_UID = "feedwatch-feeds"  # grafana/dashboards_src/feeds_overview.py

ACCOUNT = '{account=~"$account"}'
# Positions of any job, as TradingStalePricePosition reads them: a bot embedding exporter.Monitor
# exports them under its own job (exporter/alerting/mixin.py, ANY_JOB_PANELS); the price state is
# the feedwatch job's (the generator adds its selector there).
POSITIONS = 'feedwatch_trading_position{job=~".+",account=~"$account"}'
# Each open position with the health state of its price on the feed the config maps it to.
POSITION_PRICE_STATE = (f"({POSITIONS} != 0) * 0"
                        f" + on (feed, symbol) group_left ()"
                        f" (max by (feed, symbol) (shard_feed_symbol:feedwatch_symbol_state:unhealthy)"
                        f" or min by (feed, symbol) (feedwatch_symbol_state))")


def build() -> models.Dashboard:
    dash = (p.base_dashboard(TITLE, UID, "Kill switch, circuit breaker, positions against their limit, "
                             "exchange API errors and latency, and the feeds the bot depends on.")
            .with_variable(trading_performance.account_variable())
            .link(p.dashboard_link("Trading performance", trading_performance.UID,
                                   tooltip="Equity, P&L, drawdowns, Sharpe ratio, win rate"))
            .link(p.dashboard_link("Feeds overview", FEEDS_UID, tooltip="Every feed and its worst symbols"))
            .link(p.all_dashboards_link()))

    dash = dash.with_row(p.row("Safety switches"))
    dash = dash.with_panel(
        p.stat_panel("Kill switch", "ON: all trading stopped (by a person or a hard safety rule).",
                     [p.query(f"max by (account) (feedwatch_trading_kill_switch_active{ACCOUNT})", "{{account}}",
                              instant=True)],
                     unit=units.NoUnit, width=6)
        .mappings(p.flag_mappings("ON", "OFF", on_colour="red", off_colour="green"))
        .thresholds(p.plain_thresholds("green")))
    dash = dash.with_panel(
        p.stat_panel("Circuit breaker", "OPEN: the bot halted trading by itself.",
                     [p.query(f"max by (account) (feedwatch_trading_circuit_breaker_open{ACCOUNT})", "{{account}}",
                              instant=True)],
                     unit=units.NoUnit, width=6)
        .mappings(p.flag_mappings("OPEN", "CLOSED", on_colour="orange", off_colour="green"))
        .thresholds(p.plain_thresholds("green")))
    reasons = p.table_panel("Reasons", "The reason the bot gave with the last change of each switch "
                            "(\"none\" before any).",
                            [p.query(f"max by (account, reason) (feedwatch_trading_circuit_breaker_info{ACCOUNT})",
                                     instant=True, as_table=True, ref="A"),
                             p.query(f"max by (account, reason) (feedwatch_trading_kill_switch_info{ACCOUNT})",
                                     instant=True, as_table=True, ref="B")],
                            unit=units.NoUnit, width=12, height=4)
    dash = dash.with_panel(p.merged_table(reasons, rename={"Value #A": "Circuit breaker", "Value #B": "Kill switch"}))
    dash = dash.with_panel(
        p.state_timeline_panel("Switches over time", "When the kill switch was on and the circuit breaker open.",
                               [p.query(f"max by (account) (feedwatch_trading_kill_switch_active{ACCOUNT})",
                                        "{{account}} kill switch", ref="A"),
                                p.query(f"max by (account) (feedwatch_trading_circuit_breaker_open{ACCOUNT})",
                                        "{{account}} circuit breaker", ref="B")])
        .mappings(p.flag_mappings("on / open", "off / closed", on_colour="red", off_colour="green"))
        .thresholds(p.plain_thresholds("text")))

    dash = dash.with_row(p.row("Positions"))
    dash = dash.with_panel(
        p.bar_gauge_panel("Position utilization", "Open positions over the bot's position limit.",
                          [p.query(f"max by (account) (feedwatch_trading_positions_utilization_ratio{ACCOUNT})",
                                   "{{account}}", instant=True)],
                          unit=units.PercentUnit, width=8)
        .min(0).max(1).thresholds(p.threshold_steps([(None, "green"), (0.8, "orange"), (1, "red")])))
    dash = dash.with_panel(trading_performance.limit_lines(
        p.timeseries_panel("Open positions and limit", "Symbols with an open position; dashed: the limit the "
                           "bot reports.",
                           [p.query(f"max by (account) (feedwatch_trading_positions_open{ACCOUNT})",
                                    "{{account}} open", ref="A"),
                            p.query(f"max by (account) (feedwatch_trading_positions_limit{ACCOUNT})",
                                    "{{account}} limit", ref="B")],
                           unit=units.Short, width=8)))
    positions = p.table_panel(
        "Open positions and their price", "Each open position (signed quantity) and the health "
        "state of its price on the mapped feed: stale or worse fires TradingStalePricePosition.",
        [p.query(f"max by (account, symbol, feed) ({POSITIONS} != 0)",
                 instant=True, as_table=True, ref="A"),
         p.query(f"max by (account, symbol, feed) ({POSITION_PRICE_STATE})",
                 instant=True, as_table=True, ref="B")],
        unit=units.Short, width=8, height=8)
    dash = dash.with_panel(
        p.merged_table(positions, rename={"Value #A": "Position", "Value #B": "Price state"},
                       order={"account": 0, "symbol": 1, "feed": 2, "Value #A": 3, "Value #B": 4})
        .override_by_name("Price state", [
            models.DynamicConfigValue(id_val="unit", value=units.NoUnit),
            models.DynamicConfigValue(id_val="mappings", value=p.state_mappings()),
            models.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
        ]))

    dash = dash.with_row(p.row("Exchange API"))
    dash = dash.with_panel(trading_performance.limit_lines(
        p.timeseries_panel("API errors per minute", "Failed exchange API calls in the last minute; dashed: "
                           "the account's limit (TradingApiErrors fires above it).",
                           [p.query(f"max by (account) (increase(feedwatch_trading_api_errors_total{ACCOUNT}[1m]))",
                                    "{{account}} errors", ref="A"),
                            p.query(f"max by (account) (feedwatch_trading_limit_api_errors_per_minute{ACCOUNT})",
                                    "{{account}} limit", ref="B")],
                           unit=units.Short, width=8)))
    dash = dash.with_panel(
        p.timeseries_panel("API error ratio", "Share of the bot's exchange API calls that failed, over 5 minutes.",
                           [p.query(f"max by (account) (account:feedwatch_trading_api_errors:rate5m{ACCOUNT}"
                                    f" / account:feedwatch_trading_api_request_duration_seconds_count:rate5m{ACCOUNT})", "{{account}}")],
                           unit=units.PercentUnit, width=8))
    dash = dash.with_panel(
        p.timeseries_panel("API latency", "Median and 99th percentile of the bot's exchange API calls over "
                           "5 minutes, as the bot measured them.",
                           [p.query(f"histogram_quantile(0.5, sum by (account, le) (rate("
                                    f"feedwatch_trading_api_request_duration_seconds_bucket{ACCOUNT}[5m])))",
                                    "{{account}} p50", ref="A"),
                            p.query(f"max by (account) (account:feedwatch_trading_api_request_duration_seconds:p99_rate5m"
                                    f"{ACCOUNT})", "{{account}} p99", ref="B")],
                           unit=units.Seconds, width=8))

    dash = dash.with_row(p.row("Feeds and event intake"))
    dash = dash.with_panel(
        p.stat_panel("Feeds up", "Every feed's connection, the bot's own event stream (kind: trading) included.",
                     [p.query("min by (feed) (max by (feed, shard, connection) (feedwatch_feed_up))", "{{feed}}",
                              instant=True)],
                     unit=units.NoUnit, width=8)
        .mappings(p.flag_mappings("UP", "DOWN")).thresholds(p.plain_thresholds("red")))
    dash = dash.with_panel(
        p.state_name_colours(
            p.stat_panel("Symbols per state", "Watched symbols per health state, over every feed.",
                         [p.query("sum by (state) (feed_state:feedwatch_feed_symbols:sum)", "{{state}}",
                                  instant=True)],
                         unit=units.Short, width=8)
            .thresholds(p.plain_thresholds("blue"))))
    dash = dash.with_panel(
        p.stat_panel("Time since the last event", "Seconds since the newest event the bot reported (its own "
                     "timestamp). A silent bot shows here first.",
                     [p.query(f"time() - max by (account) (feedwatch_trading_last_event_timestamp_seconds{ACCOUNT} > 0)",
                              "{{account}}", instant=True)],
                     unit=units.Seconds, width=8)
        .thresholds(p.staleness_thresholds()))
    dash = dash.with_panel(
        p.timeseries_panel("Events per second", "Bot events applied per second, by account and type.",
                           [p.query(f"max by (account, type) (rate(feedwatch_trading_events_total{ACCOUNT}"
                                    f"[$__rate_interval]))", "{{account}} {{type}}")],
                           unit=units.EventsPerSecond))
    dash = dash.with_panel(
        p.timeseries_panel("Events refused", "Events or push requests refused per interval, by reason "
                           "(duplicates are replays counted once, not errors).",
                           [p.query("max by (reason) (increase(feedwatch_trading_events_rejected_total"
                                    "[$__rate_interval]))", "{{reason}}")],
                           unit=units.Short, bars=True, stacked=True))
    return dash.build()
