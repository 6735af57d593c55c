"""Symbol detail: one (feed, symbol) — how fresh it is, what it costs, how often it moves, and
when it changed health state; whether its price is frozen, the interval its adaptive thresholds
learned, and whether the exporter keeps up with its feed.

Reached from the overview's "Worst symbols" table (which passes ``feed`` and ``symbol``), or by
picking them in the variables.

With replicas (docs/scaling.md) a symbol is reported by each replica of its shard: its state and
staleness are the rules' merged view while it is unhealthy (its best replica with evidence,
``prometheus/rules/feeds.yml``), else its freshest replica's; counts are one replica's (each sees
every update).
"""

from __future__ import annotations

from grafana_foundation_sdk.models import units
from grafana_foundation_sdk.models import dashboard as models

from grafana import panels as p

UID = "feedwatch-symbol"
TITLE = "feedwatch / Symbol detail"
OVERVIEW_UID = "feedwatch-feeds"  # grafana/dashboards_src/feeds_overview.py (which imports this module)

SYMBOL = '{feed="$feed", symbol="$symbol"}'
FEED = '{feed="$feed"}'
STATE = (f"max(shard_feed_symbol:feedwatch_symbol_state:unhealthy{SYMBOL})"
         f" or min(feedwatch_symbol_state{SYMBOL})")
STALENESS = (f"max(shard_feed_symbol:feedwatch_symbol_staleness_seconds:unhealthy{SYMBOL})"
             f" or min(feedwatch_symbol_staleness_seconds{SYMBOL})")
# Frozen as FeedSymbolFrozen sees it (its record, which merges the replicas and holds across a
# restart, is the stuck price: any value means frozen), else the replicas' most favourable view.
FROZEN = (f"max(feed_symbol:feedwatch_symbol_price:frozen_held{SYMBOL}) * 0 + 1"
          f" or min(feedwatch_symbol_frozen{SYMBOL})")


def build() -> models.Dashboard:
    dash = (p.base_dashboard(TITLE, UID, "Freshness, price, update rate and health history of one symbol.")
            .with_variable(p.label_variable("feed", "feed", "feedwatch_symbol_state", title="Feed"))
            .with_variable(p.label_variable("symbol", "symbol", f"feedwatch_symbol_state{FEED}", title="Symbol"))
            .link(p.dashboard_link("Feeds overview", OVERVIEW_UID, tooltip="Every feed and its worst symbols"))
            .link(p.all_dashboards_link()))

    dash = dash.with_row(p.row("$feed / $symbol now"))
    dash = dash.with_panel(
        p.stat_panel("State", "Health state now: healthy, degraded (act with caution), stale (skip "
                     "price-dependent actions), critical (subscription likely dead) or closed (market shut).",
                     [p.query(STATE, "state", instant=True)],
                     unit=units.NoUnit, width=5)
        .mappings(p.state_mappings()).thresholds(p.plain_thresholds("text")))
    dash = dash.with_panel(
        p.stat_panel("Staleness", "Seconds since the last accepted update (or since the subscription or "
                     "the market opened, whichever is newest).",
                     [p.query(STALENESS, "staleness", instant=True)],
                     unit=units.Seconds, width=5)
        .thresholds(p.staleness_thresholds()))
    dash = dash.with_panel(
        p.stat_panel("Last price", "The last accepted price (trade price, or the bid/ask mid for quotes).",
                     [p.query(f"max(feedwatch_symbol_price{SYMBOL})", "price", instant=True)],
                     unit=units.Short, width=5)
        .decimals(4).thresholds(p.plain_thresholds("blue")))
    dash = dash.with_panel(
        p.stat_panel("Exchange-to-receive delay", "How late the last update arrived: receive time minus "
                     "the exchange's own timestamp.",
                     [p.query(f"max(feedwatch_symbol_last_update_timestamp_seconds{SYMBOL}"
                              f" - feedwatch_symbol_last_event_timestamp_seconds{SYMBOL})", "delay", instant=True)],
                     unit=units.Seconds, width=5)
        .thresholds(p.warn_above(1.0, warn="orange")))
    dash = dash.with_panel(
        p.stat_panel("Updates in range", "Accepted updates over the dashboard's time range.",
                     [p.query(f"max(increase(feedwatch_symbol_updates_total{SYMBOL}[$__range]))", "updates",
                              instant=True)],
                     unit=units.Short, width=4)
        .decimals(0).thresholds(p.plain_thresholds("blue")))

    dash = dash.with_panel(
        p.stat_panel("Frozen", "Whether updates keep arriving at one unchanged price (the exporter's "
                     "thresholds.frozen: 300 repeats over 10 minutes by default). A frozen price is not fresh. "
                     "With replicas, as the alert judges it: frozen when no replica that sees the symbol update "
                     "says the price moves.",
                     [p.query(FROZEN, "frozen", instant=True)],
                     unit=units.NoUnit, width=12)
        .mappings(p.flag_mappings("frozen", "moving", on_colour="red", off_colour="green"))
        .thresholds(p.plain_thresholds("text")))
    dash = dash.with_panel(
        p.stat_panel("Normal interval (learned)", "The interval between updates the symbol's adaptive "
                     "thresholds learned (thresholds.adaptive; about 1 s for anything faster). Empty "
                     "for a symbol without adaptive thresholds, or while it is still learning. With "
                     "replicas, the longest any of them learned.",
                     [p.query(f"max(feedwatch_symbol_expected_interval_seconds{SYMBOL})", "interval",
                              instant=True)],
                     unit=units.Seconds, width=12)
        .thresholds(p.plain_thresholds("blue")))

    dash = dash.with_row(p.row("History"))
    dash = dash.with_panel(
        p.state_timeline_panel("Health state", "The symbol's health state over time.",
                               [p.query(STATE, "$symbol")])
        .mappings(p.state_mappings()).thresholds(p.plain_thresholds("text")))
    dash = dash.with_panel(
        p.timeseries_panel("Staleness", "Seconds since the last update; the bands are the default "
                           "degraded, stale and critical thresholds. With adaptive thresholds, the "
                           "symbol's learned normal interval is drawn too (its state turns stale at "
                           "k times it, 20 by default).",
                           [p.query(STALENESS, "$symbol"),
                            p.query(f"max(feedwatch_symbol_expected_interval_seconds{SYMBOL})",
                                    "normal interval (learned)", ref="B")],
                           unit=units.Seconds)
        .thresholds(p.staleness_thresholds()).thresholds_style(p.threshold_bands()))
    dash = dash.with_panel(
        p.timeseries_panel("Price", "The last accepted price at each scrape.",
                           [p.query(f"max(feedwatch_symbol_price{SYMBOL})", "$symbol")],
                           unit=units.Short)
        .decimals(4).thresholds(p.plain_thresholds("blue")))
    dash = dash.with_panel(
        p.timeseries_panel("Update rate", "Accepted updates per second for this symbol.",
                           [p.query(f"max(rate(feedwatch_symbol_updates_total{SYMBOL}[$__rate_interval]))", "$symbol")],
                           unit=units.EventsPerSecond))
    dash = dash.with_panel(
        p.timeseries_panel("Exchange-to-receive delay", "Receive time minus exchange timestamp of the last "
                           "update at each scrape.",
                           [p.query(f"max(feedwatch_symbol_last_update_timestamp_seconds{SYMBOL}"
                                    f" - feedwatch_symbol_last_event_timestamp_seconds{SYMBOL})", "$symbol")],
                           unit=units.Seconds))

    dash = dash.with_row(p.row("Feed $feed"))
    dash = dash.with_panel(
        p.state_timeline_panel("Feed connections", "Each connection of the symbol's feed: up or down.",
                               [p.query(f"max by (connection) (feedwatch_feed_up{FEED})", "{{connection}}")],
                               width=12)
        .mappings(p.flag_mappings("up", "down")).thresholds(p.plain_thresholds("text")))
    dash = dash.with_panel(
        p.timeseries_panel("Feed disconnects by reason", "Why the feed's sockets closed.",
                           [p.query(f"sum by (reason) (increase(feedwatch_feed_disconnects_total{FEED}[$__rate_interval]))",
                                    "{{reason}}")],
                           unit=units.Short, bars=True, stacked=True, height=6))
    dash = dash.with_panel(
        p.timeseries_panel("Processing lag", "How far behind the venue the exporter processes the feed "
                           "(latency above the venue's own delay, while data waits in its sockets). "
                           "FeedwatchFallingBehind fires above 1 s for 2 minutes. With replicas or shards, "
                           "the replica furthest behind.",
                           [p.query(f"max(feedwatch_feed_processing_lag_seconds{FEED})", "$feed")],
                           unit=units.Seconds, width=24, height=6)
        .thresholds(p.warn_above(1.0, warn="orange")))
    return dash.build()
