"""The tick sink's metrics, rendered at scrape time from its plain counters.

Exactly what ``render`` emits (``sink`` is ``sqlite``, ``postgres`` or ``clickhouse``)::

    # HELP feedwatch_tick_sink_rows_total Accepted prices the tick sink wrote to its database, or dropped (buffer full, or left unwritten at shutdown: lost).
    # TYPE feedwatch_tick_sink_rows_total counter
    feedwatch_tick_sink_rows_total{sink="clickhouse",result="written"} 1250000
    feedwatch_tick_sink_rows_total{sink="clickhouse",result="dropped"} 0
    # HELP feedwatch_tick_sink_batches_total Batches the tick sink tried to write, by result (failed ones are retried).
    # TYPE feedwatch_tick_sink_batches_total counter
    feedwatch_tick_sink_batches_total{sink="clickhouse",result="ok"} 625
    feedwatch_tick_sink_batches_total{sink="clickhouse",result="error"} 3
    # HELP feedwatch_tick_sink_batch_duration_seconds Time to write one batch that succeeded.
    # TYPE feedwatch_tick_sink_batch_duration_seconds histogram
    feedwatch_tick_sink_batch_duration_seconds_bucket{sink="clickhouse",le="0.001"} 0
    ...
    feedwatch_tick_sink_batch_duration_seconds_bucket{sink="clickhouse",le="+Inf"} 625
    feedwatch_tick_sink_batch_duration_seconds_sum{sink="clickhouse"} 31.2
    feedwatch_tick_sink_batch_duration_seconds_count{sink="clickhouse"} 625
    # HELP feedwatch_tick_sink_buffer_rows Accepted prices in memory not yet written (waiting, or held while the database fails).
    # TYPE feedwatch_tick_sink_buffer_rows gauge
    feedwatch_tick_sink_buffer_rows{sink="clickhouse"} 3800
    # HELP feedwatch_tick_sink_buffer_limit_rows Most rows the tick sink holds in memory before dropping new ones (tick_sink.buffer_limit).
    # TYPE feedwatch_tick_sink_buffer_limit_rows gauge
    feedwatch_tick_sink_buffer_limit_rows{sink="clickhouse"} 500000
    # HELP feedwatch_tick_sink_last_write_success_timestamp_seconds When a batch was last written (0 = never).
    # TYPE feedwatch_tick_sink_last_write_success_timestamp_seconds gauge
    feedwatch_tick_sink_last_write_success_timestamp_seconds{sink="clickhouse"} 1700000000.5
"""

from __future__ import annotations

from exporter.book import escape_label
from exporter.collector import format_value, header
from exporter.ticks.sink import DURATION_BUCKETS, TickSink

FAMILIES: dict[str, tuple[str, str]] = {
    "feedwatch_tick_sink_rows_total": (
        "counter", "Accepted prices the tick sink wrote to its database, or dropped (buffer full, or left "
                   "unwritten at shutdown: lost)."),
    "feedwatch_tick_sink_batches_total": (
        "counter", "Batches the tick sink tried to write, by result (failed ones are retried)."),
    "feedwatch_tick_sink_batch_duration_seconds": (
        "histogram", "Time to write one batch that succeeded."),
    "feedwatch_tick_sink_buffer_rows": (
        "gauge", "Accepted prices in memory not yet written (waiting, or held while the database fails)."),
    "feedwatch_tick_sink_buffer_limit_rows": (
        "gauge", "Most rows the tick sink holds in memory before dropping new ones (tick_sink.buffer_limit)."),
    "feedwatch_tick_sink_last_write_success_timestamp_seconds": (
        "gauge", "When a batch was last written (0 = never)."),
}


class TickSinkCollector:
    def __init__(self, sink: TickSink) -> None:
        self.sink = sink

    def __call__(self, now: float) -> str:
        return self.render(now)

    def render(self, now: float) -> str:
        sink = self.sink
        label = f'sink="{escape_label(sink.backend.name)}"'
        name = "feedwatch_tick_sink_batch_duration_seconds"
        histogram, cumulative = [], 0
        for bound, count in zip((*DURATION_BUCKETS, "+Inf"), sink.duration_counts):
            cumulative += count
            le = bound if isinstance(bound, str) else format_value(bound)
            histogram.append(f'{name}_bucket{{{label},le="{le}"}} {cumulative}\n')
        histogram.append(f"{name}_sum{{{label}}} {format_value(sink.duration_sum)}\n")
        histogram.append(f"{name}_count{{{label}}} {cumulative}\n")
        samples = {
            "feedwatch_tick_sink_rows_total": [f'{{{label},result="written"}} {sink.written}',
                                               f'{{{label},result="dropped"}} {sink.dropped}'],
            "feedwatch_tick_sink_batches_total": [f'{{{label},result="ok"}} {sink.writes_ok}',
                                                  f'{{{label},result="error"}} {sink.writes_failed}'],
            name: None,
            "feedwatch_tick_sink_buffer_rows": [f"{{{label}}} {sink.depth}"],
            "feedwatch_tick_sink_buffer_limit_rows": [f"{{{label}}} {sink.config.buffer_limit}"],
            "feedwatch_tick_sink_last_write_success_timestamp_seconds": [
                f"{{{label}}} {format_value(float(sink.last_success))}"],
        }
        out = []
        for family, lines in samples.items():
            kind, help_text = FAMILIES[family]
            out.append(header(family, kind, help_text))
            if lines is None:
                out.extend(histogram)
            else:
                out.extend(f"{family}{line}\n" for line in lines)
        return "".join(out)
