"""The journal's own metrics, rendered at scrape time from the writer's plain counters.

Exactly what ``render`` emits (``sink`` is ``sqlite``, ``postgres`` or ``memory``)::

    # HELP feedwatch_journal_writes_total Batches the journal tried to write to its database, by result.
    # TYPE feedwatch_journal_writes_total counter
    feedwatch_journal_writes_total{sink="postgres",result="ok"} 1520
    feedwatch_journal_writes_total{sink="postgres",result="error"} 12
    # HELP feedwatch_journal_written_records_total Incident and event rows written to the journal's database.
    # TYPE feedwatch_journal_written_records_total counter
    feedwatch_journal_written_records_total{sink="postgres"} 48211
    # HELP feedwatch_journal_dropped_records_total Rows dropped because the buffer was full while the database was unreachable (lost).
    # TYPE feedwatch_journal_dropped_records_total counter
    feedwatch_journal_dropped_records_total{sink="postgres"} 0
    # HELP feedwatch_journal_buffer_records Rows waiting to be written (buffered while the database is unreachable).
    # TYPE feedwatch_journal_buffer_records gauge
    feedwatch_journal_buffer_records{sink="postgres"} 0
    # HELP feedwatch_journal_buffer_limit_records Most rows the buffer keeps before dropping the oldest (journal.buffer_limit).
    # TYPE feedwatch_journal_buffer_limit_records gauge
    feedwatch_journal_buffer_limit_records{sink="postgres"} 100000
    # HELP feedwatch_journal_last_write_success_timestamp_seconds When a batch was last written (0 = never).
    # TYPE feedwatch_journal_last_write_success_timestamp_seconds gauge
    feedwatch_journal_last_write_success_timestamp_seconds{sink="postgres"} 1700000000.5
    # HELP feedwatch_journal_open_incidents Incidents open now (this replica), by kind.
    # TYPE feedwatch_journal_open_incidents gauge
    feedwatch_journal_open_incidents{kind="symbol"} 2
    feedwatch_journal_open_incidents{kind="feed"} 0
    feedwatch_journal_open_incidents{kind="trading"} 1
    # HELP feedwatch_journal_recordings_total Incident recordings saved or failed (disk full, permissions).
    # TYPE feedwatch_journal_recordings_total counter
    feedwatch_journal_recordings_total{result="saved"} 3
    feedwatch_journal_recordings_total{result="failed"} 0
"""

from __future__ import annotations

from exporter.book import escape_label
from exporter.collector import format_value, header
from exporter.journal.journal import Journal
from exporter.journal.records import KINDS

FAMILIES: dict[str, tuple[str, str]] = {
    "feedwatch_journal_writes_total": (
        "counter", "Batches the journal tried to write to its database, by result."),
    "feedwatch_journal_written_records_total": (
        "counter", "Incident and event rows written to the journal's database."),
    "feedwatch_journal_dropped_records_total": (
        "counter", "Rows dropped because the buffer was full while the database was unreachable (lost)."),
    "feedwatch_journal_buffer_records": (
        "gauge", "Rows waiting to be written (buffered while the database is unreachable)."),
    "feedwatch_journal_buffer_limit_records": (
        "gauge", "Most rows the buffer keeps before dropping the oldest (journal.buffer_limit)."),
    "feedwatch_journal_last_write_success_timestamp_seconds": (
        "gauge", "When a batch was last written (0 = never)."),
    "feedwatch_journal_open_incidents": (
        "gauge", "Incidents open now (this replica), by kind."),
    "feedwatch_journal_recordings_total": (
        "counter", "Incident recordings saved or failed (disk full, permissions)."),
}


class JournalCollector:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def __call__(self, now: float) -> str:
        return self.render(now)

    def render(self, now: float) -> str:
        journal = self.journal
        writer = journal.writer
        sink = f'sink="{escape_label(journal.sink.name)}"'
        open_by_kind = dict.fromkeys(KINDS, 0)
        for incident in journal.open.values():
            open_by_kind[incident.kind] = open_by_kind.get(incident.kind, 0) + 1
        recordings = journal.recordings
        samples = {
            "feedwatch_journal_writes_total": [f'{{{sink},result="ok"}} {writer.writes_ok}',
                                               f'{{{sink},result="error"}} {writer.writes_failed}'],
            "feedwatch_journal_written_records_total": [f"{{{sink}}} {writer.written}"],
            "feedwatch_journal_dropped_records_total": [f"{{{sink}}} {writer.dropped}"],
            "feedwatch_journal_buffer_records": [f"{{{sink}}} {writer.depth}"],
            "feedwatch_journal_buffer_limit_records": [f"{{{sink}}} {writer.buffer_limit}"],
            "feedwatch_journal_last_write_success_timestamp_seconds": [
                f"{{{sink}}} {format_value(float(writer.last_success))}"],
            "feedwatch_journal_open_incidents": [f'{{kind="{kind}"}} {count}' for kind, count in open_by_kind.items()],
            "feedwatch_journal_recordings_total": [
                f'{{result="saved"}} {recordings.saved if recordings else 0}',
                f'{{result="failed"}} {recordings.failed if recordings else 0}'],
        }
        out = []
        for name, lines in samples.items():
            kind, help_text = FAMILIES[name]
            out.append(header(name, kind, help_text))
            out.extend(f"{name}{line}\n" for line in lines)
        return "".join(out)
