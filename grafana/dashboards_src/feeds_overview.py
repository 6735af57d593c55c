"""Feeds overview: is every feed connected, which symbols are stale, and why.

Feed-level series come from the recording rules in ``prometheus/rules/feeds.yml`` (cheap to
query over long ranges); per-symbol panels read the exporter's series directly.

Several exporters may feed one dashboard (docs/scaling.md): shards, told apart by their ``shard``
target label, and replicas of a shard. Queries take each shard's best replica (``max by (feed,
shard)`` of a connection state; the freshest view of a symbol, or the rules' evidence-based one
where it is unhealthy) and then the worst shard or the sum over shards, so a replica that is
down or reconnecting shows in the replica alerts, not as a feed that is down.

Read top to bottom: the state right now (feeds up, symbols per health state, the worst symbols
with a link to their detail), then the traffic that explains it (message and update rates,
exchange-to-receive latency), then the connection history (reconnects by reason, errors,
rejected updates, heartbeats), then the exporter's own health.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.models import units
from grafana_foundation_sdk.models import dashboard as models

from grafana import panels as p
from grafana.dashboards_src import symbol_detail

UID = "feedwatch-feeds"
TITLE = "feedwatch / Feeds overview"

FEED = '{feed=~"$feed"}'
# A symbol's staleness and state across its replicas: the rules' merged view where the symbol is
# unhealthy (prometheus/rules/feeds.yml: its best replica with evidence), else its freshest one.
SYMBOL_STALENESS = (f"(max by (feed, symbol) (shard_feed_symbol:feedwatch_symbol_staleness_seconds:unhealthy{FEED})"
                    f" or min by (feed, symbol) (feedwatch_symbol_staleness_seconds{FEED}))")
SYMBOL_STATE = (f"(max by (feed, symbol) (shard_feed_symbol:feedwatch_symbol_state:unhealthy{FEED})"
                f" or min by (feed, symbol) (feedwatch_symbol_state{FEED}))")
# Symbols outside their market session are "closed": not an error, so not among the worst.
OPEN_STALENESS = f"{SYMBOL_STALENESS} unless on (feed, symbol) (feedwatch_symbol_state{FEED} == -1)"
WORST_LIMIT = 20
WORST_STALENESS = f"topk({WORST_LIMIT}, {OPEN_STALENESS})"

SYMBOL_DETAIL_URL = (f"/d/{symbol_detail.UID}?var-feed=${{__data.fields.feed}}"
                     f"&var-symbol=${{__data.fields.symbol}}&${{datasource:queryparam}}&${{__url_time_range}}")


def build() -> models.Dashboard:
    dash = (p.base_dashboard(TITLE, UID, "Every feed's connection and every symbol's freshness at a glance.")
            .with_variable(p.label_variable("feed", "feed", "feedwatch_feed_up", title="Feed",
                                            multi=True, include_all=True))
            .link(p.dashboard_link("Symbol detail", symbol_detail.UID,
                                   tooltip="Staleness, price and state history of one symbol"))
            .link(p.all_dashboards_link()))

    dash = dash.with_row(p.row("Now"))
    dash = dash.with_panel(
        p.stat_panel("Feeds up", "Is each feed's socket connected? DOWN if any of its connections is down "
                     "on every replica of a shard.",
                     [p.query(f"min by (feed) (max by (feed, shard, connection) (feedwatch_feed_up{FEED}))", "{{feed}}",
                              instant=True)],
                     unit=units.NoUnit, width=6)
        .mappings(p.flag_mappings("UP", "DOWN")).thresholds(p.plain_thresholds("red")))
    dash = dash.with_panel(
        p.stat_panel("Feeds healthy", "Healthy = fewer than the configured consecutive errors and an update "
                     "within unhealthy_after_silence.",
                     [p.query(f"min by (feed) (max by (feed, shard) (feedwatch_feed_healthy{FEED}))", "{{feed}}",
                              instant=True)],
                     unit=units.NoUnit, width=6)
        .mappings(p.flag_mappings("HEALTHY", "UNHEALTHY")).thresholds(p.plain_thresholds("red")))
    dash = dash.with_panel(
        p.stat_panel("Market open", "Is the feed's market session open? Outside it, symbols are 'closed', "
                     "which is not an error and raises no alert.",
                     [p.query(f"max by (feed) (feedwatch_feed_market_open{FEED})", "{{feed}}", instant=True)],
                     unit=units.NoUnit, width=4)
        .mappings(p.flag_mappings("OPEN", "CLOSED", off_colour=p.STATE_COLOURS[-1]))
        .thresholds(p.plain_thresholds(p.STATE_COLOURS[-1])))
    dash = dash.with_panel(
        p.state_name_colours(
            p.stat_panel("Symbols per state", "How many watched symbols are in each health state now "
                         "(degraded from 180 s, stale from 300 s, critical from 1 h by default).",
                         [p.query(f"sum by (state) (feed_state:feedwatch_feed_symbols:sum{FEED})", "{{state}}", instant=True)],
                         unit=units.Short, width=8)
            .thresholds(p.plain_thresholds("blue"))))

    dash = dash.with_row(p.row("Freshness"))
    dash = dash.with_panel(worst_symbols_table())
    dash = dash.with_panel(
        p.state_name_colours(
            p.timeseries_panel("Symbols per state over time", "When did symbols turn stale, and how many?",
                               [p.query(f"sum by (state) (feed_state:feedwatch_feed_symbols:sum{FEED})", "{{state}}")],
                               unit=units.Short, stacked=True, height=10)))
    dash = dash.with_panel(
        p.timeseries_panel("Oldest open symbol per feed", "Staleness of each feed's least recently updated "
                           "symbol (closed symbols left out); the bands are the default health thresholds.",
                           [p.query(f"max by (feed) (feed:feedwatch_symbol_staleness_seconds:max{FEED})", "{{feed}}")],
                           unit=units.Seconds, width=24)
        .thresholds(p.staleness_thresholds())
        .thresholds_style(p.threshold_bands()))

    dash = dash.with_row(p.row("Traffic"))
    dash = dash.with_panel(
        p.timeseries_panel("Messages per second", "Messages received per second (1-minute rate), by feed and kind.",
                           [p.query(f"sum by (feed, kind) (feed_kind:feedwatch_feed_messages:rate1m{FEED})", "{{feed}} {{kind}}")],
                           unit=units.MessagesPerSecond))
    dash = dash.with_panel(
        p.timeseries_panel("Price updates per second", "Accepted price updates per second (1-minute rate), by feed.",
                           [p.query(f"sum by (feed) (feed:feedwatch_symbol_updates:rate1m{FEED})", "{{feed}}")],
                           unit=units.EventsPerSecond))
    dash = dash.with_panel(
        p.timeseries_panel("Exchange-to-receive latency", "Median and 99th percentile over 5 minutes of the delay "
                           "between the exchange timestamp and reception, by feed.",
                           [p.query(f"max by (feed) (feed:feedwatch_feed_latency_seconds:p50_rate5m{FEED})", "{{feed}} p50", ref="A"),
                            p.query(f"max by (feed) (feed:feedwatch_feed_latency_seconds:p99_rate5m{FEED})", "{{feed}} p99", ref="B")],
                           unit=units.Seconds))
    dash = dash.with_panel(
        p.timeseries_panel("Bytes received per second", "Raw frame bytes, by feed (what the venue sends: each "
                           "shard once, by its busiest replica).",
                           [p.query(f"sum by (feed) (max by (feed, shard) (rate(feedwatch_feed_bytes_total{FEED}[$__rate_interval])))",
                                    "{{feed}}")],
                           unit=units.BytesPerSecondSI))

    dash = dash.with_row(p.row("Connections"))
    dash = dash.with_panel(
        p.timeseries_panel("Disconnects by reason", "Why sockets closed. Planned reasons (rollover, "
                           "server_shutdown, resharding, shutdown, reload) are routine; the others are problems.",
                           [p.query(f"sum by (feed, reason) (increase(feedwatch_feed_disconnects_total{FEED}[$__rate_interval]))",
                                    "{{feed}} {{reason}}")],
                           unit=units.Short, bars=True, stacked=True))
    dash = dash.with_panel(
        p.bar_gauge_panel("Reconnects in the selected range", "Connections opened and disconnects by "
                          "reason over the dashboard's time range, most frequent first.",
                          [p.query(f"sum by (feed) (increase(feedwatch_feed_connects_total{FEED}[$__range]))",
                                   "{{feed}} connects", instant=True, ref="A"),
                           p.query(f"sort_desc(sum by (feed, reason) (increase(feedwatch_feed_disconnects_total{FEED}[$__range])))",
                                   "{{feed}} {{reason}}", instant=True, ref="B")],
                          unit=units.Short)
        .thresholds(p.warn_above(1, base="blue", warn="orange")))
    dash = dash.with_panel(
        p.timeseries_panel("Errors per second", "Connect, decode, protocol, subscribe and other errors, by feed and kind.",
                           [p.query(f"sum by (feed, kind) (rate(feedwatch_feed_errors_total{FEED}[$__rate_interval]))",
                                    "{{feed}} {{kind}}")],
                           unit=units.EventsPerSecond))
    dash = dash.with_panel(
        p.timeseries_panel("Rejected updates per second", "Updates refused by the book per second over 5 "
                           "minutes (bad price, crossed quote, unconfirmed first print, unknown symbol), "
                           "by feed and reason.",
                           [p.query(f"sum by (feed, reason) (feed_reason:feedwatch_feed_rejected_updates:rate5m{FEED})",
                                    "{{feed}} {{reason}}")],
                           unit=units.EventsPerSecond))
    dash = dash.with_panel(
        p.timeseries_panel("Time since last message", "Seconds since any frame arrived, by feed.",
                           [p.query(f"time() - max by (feed) (feedwatch_feed_last_message_timestamp_seconds{FEED})",
                                    "{{feed}}")],
                           unit=units.Seconds))
    dash = dash.with_panel(
        p.timeseries_panel("Time since last heartbeat", "Seconds since each connection last showed it is "
                           "alive (frame, ping or pong); the runner reconnects after heartbeat_timeout.",
                           [p.query(f"time() - max by (feed, connection) (feedwatch_feed_last_heartbeat_timestamp_seconds{FEED})",
                                    "{{feed}} {{connection}}")],
                           unit=units.Seconds))

    dash = dash.with_panel(
        p.timeseries_panel("Subscribed and acknowledged symbols", "Symbols each feed asked the venue for "
                           "(configured plus watchlist) and those the venue confirmed; a gap that stays "
                           "means subscriptions the venue ignored.",
                           [p.query(f"sum by (feed) (max by (feed, shard) (feedwatch_feed_subscribed_symbols{FEED}))",
                                    "{{feed}} subscribed", ref="A"),
                            p.query(f"sum by (feed) (max by (feed, shard) (feedwatch_feed_acknowledged_symbols{FEED}))",
                                    "{{feed}} acknowledged", ref="B")],
                           unit=units.Short, width=24))

    dash = dash.with_row(p.row("Exporter"))
    dash = dash.with_panel(
        p.timeseries_panel("Event loop lag", "How late the exporter's asyncio loop runs its timers; "
                           "a lagging loop delays frames and scrapes.",
                           [p.query("max by (instance) (feedwatch_event_loop_lag_seconds)", "{{instance}}")],
                           unit=units.Seconds, width=8)
        .thresholds(p.warn_above(0.1)).thresholds_style(p.threshold_bands()))
    dash = dash.with_panel(
        p.timeseries_panel("Scrape render time", "Seconds the exporter took to render /metrics; it must "
                           "stay well under Prometheus' scrape timeout.",
                           [p.query("max by (instance) (feedwatch_scrape_duration_seconds)", "{{instance}}")],
                           unit=units.Seconds, width=8)
        .thresholds(p.warn_above(1.0)).thresholds_style(p.threshold_bands()))
    dash = dash.with_panel(
        p.table_panel("Running versions", "Which feedwatch and Python versions each exporter instance runs.",
                      [p.query("max by (instance, version, python_version) (feedwatch_build_info)",
                               instant=True, as_table=True)],
                      unit=units.NoUnit, width=8, height=8)
        .with_transformation(models.DataTransformerConfig(id_val="organize", options={
            "excludeByName": {"Time": True, "Value": True},
        })))
    return dash.build()


def worst_symbols_table() -> table.Panel:
    """The open symbols that went longest without an update, linked to their detail."""
    panel = p.table_panel(
        "Worst symbols", f"The {WORST_LIMIT} open symbols that went longest without an accepted update. "
        "Click a row for the symbol's detail.",
        [p.query(WORST_STALENESS, instant=True, as_table=True, ref="A"),
         p.query(f"{SYMBOL_STATE} and on (feed, symbol) {WORST_STALENESS}",
                 instant=True, as_table=True, ref="B")],
        unit=units.Seconds, height=10)
    panel = p.merged_table(panel, rename={"Value #A": "Staleness", "Value #B": "State"},
                           order={"feed": 0, "symbol": 1, "Value #A": 2, "Value #B": 3})
    panel = (panel.thresholds(p.staleness_thresholds())
             .data_links([p.data_link("Symbol detail: ${__data.fields.feed} ${__data.fields.symbol}",
                                      SYMBOL_DETAIL_URL)])
             .with_transformation(models.DataTransformerConfig(id_val="sortBy", options={
                 "sort": [{"field": "Staleness", "desc": True}],
             }))
             .override_by_name("Staleness", [
                 models.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
             ])
             .override_by_name("State", [
                 models.DynamicConfigValue(id_val="unit", value=units.NoUnit),
                 models.DynamicConfigValue(id_val="mappings", value=p.state_mappings()),
                 models.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
             ]))
    return panel

