"""The journal's bounded write buffer and the task that drains it into the sink in batches.

Producers (the journal, on the event loop) only ``put`` rows: a dict insert, never I/O, never a
wait, so nothing that feeds the journal can be slowed down by the database. The buffer is keyed
by row id: a newer version of an incident replaces the one still waiting (a symbol flapping
between degraded and stale while the database is down costs one row, not hundreds).

``run`` wakes every ``flush_interval`` (or at once when ``batch_size`` rows wait), takes up to
``batch_size`` rows out and writes them in one transaction. If the write fails or times out the
rows go back in front (unless a newer version arrived meanwhile) and the next attempt waits a
backoff delay (0.5 s growing to 10 s); the first success drains the rest at full speed. Past
``buffer_limit`` rows the oldest are dropped and counted: memory stays bounded through any outage,
and the loss is visible (``feedwatch_journal_dropped_records_total``), never silent.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

from exporter.feeds.backoff import Backoff
from exporter.journal.records import Event, Incident
from exporter.journal.sinks import Sink
from exporter.throttle import FAILURES, Throttle

log = logging.getLogger(__name__)

Row = Incident | Event


class Writer:
    def __init__(self, sink: Sink, clock: Any, *, flush_interval: float = 1.0, batch_size: int = 500,
                 buffer_limit: int = 100_000, timeout: float = 10.0) -> None:
        self.sink = sink
        self.clock = clock
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.buffer_limit = buffer_limit
        self.timeout = timeout
        self.pending: OrderedDict[str, Row] = OrderedDict()
        self.in_flight = 0
        # Counters, rendered by the collector.
        self.writes_ok = 0
        self.writes_failed = 0
        self.written = 0
        self.dropped = 0
        self.last_success = 0.0
        self.last_error = ""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._backoff = Backoff(0.5, 10.0, 2.0, reset_after=0.0)
        # A write failure is logged once a minute, with how many were not since the last report.
        self._throttle = Throttle(log, suffix=FAILURES)

    # --- producers -------------------------------------------------------------------------------

    def put(self, row: Row) -> None:
        pending = self.pending
        if row.id in pending:
            pending.move_to_end(row.id)
        pending[row.id] = row
        while len(pending) > self.buffer_limit:
            pending.popitem(last=False)
            self.dropped += 1
        self._idle.clear()
        if len(pending) >= self.batch_size:
            self._wake.set()

    @property
    def depth(self) -> int:
        """Rows not yet in the database (waiting, or in the transaction under way)."""
        return len(self.pending) + self.in_flight

    def waiting(self, row_id: str) -> Row | None:
        return self.pending.get(row_id)

    # --- the task --------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if not await self.flush():
                await asyncio.sleep(self._backoff.next_delay())

    async def flush(self) -> bool:
        """Write everything waiting, batch by batch; False at the first failed batch."""
        while self.pending:
            batch = [self.pending.popitem(last=False)[1] for _ in range(min(self.batch_size, len(self.pending)))]
            self.in_flight = len(batch)
            try:
                incidents = [r for r in batch if isinstance(r, Incident)]
                events = [r for r in batch if isinstance(r, Event)]
                await asyncio.wait_for(self.sink.write(incidents, events), self.timeout)
            except asyncio.CancelledError:
                self._requeue(batch)
                raise
            except Exception as exc:
                self._requeue(batch)
                self.writes_failed += 1
                self.last_error = f"{type(exc).__name__}: {exc}".strip()
                self._throttle.warn("write", "journal: cannot write to %s: %s; %d row(s) kept in memory (limit %d), "
                                    "retrying", self.sink.name, self.last_error, len(self.pending), self.buffer_limit)
                return False
            finally:
                self.in_flight = 0
            self.writes_ok += 1
            self.written += len(batch)
            self.last_success = self.clock.time()
            if self._throttle.settle("write") or self._backoff.attempts:
                log.info("journal: writing to %s again (%d row(s) still waiting)", self.sink.name,
                         len(self.pending))
            self._backoff.reset()
        self._idle.set()
        return True

    def _requeue(self, batch: list[Row]) -> None:
        """Put a failed batch back in front, except rows superseded by a newer version meanwhile."""
        for row in reversed(batch):
            if row.id not in self.pending:
                self.pending[row.id] = row
                self.pending.move_to_end(row.id, last=False)
        while len(self.pending) > self.buffer_limit:
            self.pending.popitem(last=False)
            self.dropped += 1

    async def drained(self, timeout: float) -> bool:
        """Wait until nothing is waiting (tests, shutdown); False at the deadline."""
        self._wake.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return not self.pending
