"""``TickSink``: takes accepted prices off the book's tape every interval and writes them in batches.

    tape = TickTape(config.buffer_limit)
    book.attach_tape(tape)                      # the hot path appends (exporter/book.py)
    sink = TickSink(config, backend, tape)
    await sink.start() ... await sink.stop()

Every ``flush_interval`` (2 s by default, loop time) the task swaps the tape's list for an empty
one (O(1) on the event loop), the worker thread turns its entries (the frames' decoded updates)
into numbered rows (``rows.prepare``), cut into batches of ``batch_size``, and writes them, oldest
first, one transaction per batch. The event loop only awaits: conversion, encoding and database I/O happen in the one
worker thread, so a slow or dead database never stalls ingest.

A batch that fails (or takes longer than ``write_timeout``) stays first in line with its row
numbers and is retried after a backoff delay (0.5 s doubling to 30 s, reset by a success); the
first success drains the rest at full speed. Meanwhile the tape keeps filling: the rows held here
count against ``buffer_limit`` (``TickTape.take`` / ``release``), so memory stays bounded by
``buffer_limit`` rows plus one frame, and past it new prices are dropped and counted
(``feedwatch_tick_sink_rows_total{result="dropped"}``), never silently lost. On shutdown the
sink makes one last attempt (bounded by ``write_timeout``); rows it cannot write then are counted
as dropped too.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from bisect import bisect_left
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from exporter.book import TickTape
from exporter.feeds.backoff import Backoff
from exporter.throttle import FAILURES, Throttle
from exporter.ticks.backends import Backend
from exporter.ticks.rows import Row, prepare

log = logging.getLogger(__name__)

# Batch write duration buckets (seconds).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class TickSink:
    def __init__(self, config: Any, backend: Backend, tape: TickTape, clock: Any) -> None:
        self.config = config
        self.backend = backend
        self.tape = tape
        self.clock = clock
        self.run_id = uuid.uuid4().hex[:16]
        self.next_seq = 1
        self.batches: deque[list[Row]] = deque()  # prepared, unwritten, oldest first
        self.held = 0                             # rows in ``batches``
        # Counters, rendered by the collector.
        self.written = 0
        self.dropped_at_stop = 0
        self.writes_ok = 0
        self.writes_failed = 0
        self.duration_counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.last_success = 0.0
        self.last_error = ""
        self.writing = False                      # a batch is in the worker thread's hands now
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"feedwatch-ticks-{backend.name}")
        self._backoff = Backoff(0.5, 30.0, 2.0, reset_after=0.0)
        self._task: asyncio.Task[None] | None = None
        # A write failure is logged once a minute, with how many were not since the last report.
        self._throttle = Throttle(log, suffix=FAILURES)

    # --- what the collector reads ----------------------------------------------------------

    @property
    def dropped(self) -> int:
        return self.tape.dropped + self.dropped_at_stop

    @property
    def depth(self) -> int:
        """Rows in memory not yet written: on the tape and in the batches held here."""
        return self.tape.depth + self.held

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="feedwatch-tick-sink")

    async def stop(self) -> None:
        """Stop the task, make one last bounded attempt, count what is left as dropped."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await asyncio.wait_for(self.flush(), self.config.write_timeout)
        except Exception as exc:  # counted and logged below, with what is left
            self.last_error = self.last_error or f"{type(exc).__name__}: {exc}"
        left = self.depth
        if left:
            self.dropped_at_stop += left
            log.warning("tick sink: %d row(s) could not be written to %s before stopping (lost): %s",
                        left, self.backend.name, self.last_error or "timed out")
        self.tape.take(0)
        self.batches.clear()
        self.held = 0
        self.tape.release(0)
        # Bounded like the last flush: a write stuck in the worker thread (a hung server) would
        # hold the close behind it, and a shutdown must never hang on the sink.
        try:
            await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(self._thread, self.backend.close),
                                   self.config.write_timeout)
        except Exception as exc:
            log.warning("tick sink: closing %s did not finish (%s: %s); left behind", self.backend.name,
                        type(exc).__name__, exc)
        self._thread.shutdown(wait=False)

    async def _run(self) -> None:
        delay = self.config.flush_interval
        while True:
            await asyncio.sleep(delay)
            try:
                ok = await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end the task: the tape would fill and drop for ever
                log.exception("tick sink: flush failed")
                ok = False
            delay = self.config.flush_interval if ok else self._backoff.next_delay()

    # --- the work --------------------------------------------------------------------------

    async def flush(self) -> bool:
        """Take the tape and write every batch held, oldest first; False at the first failure."""
        loop = asyncio.get_running_loop()
        frames, count = self.tape.take(self.held)
        if frames:
            self.held += count  # counted against the bound at once (the tape's room shrank by as many)
            rows = await loop.run_in_executor(self._thread, prepare, frames, self.run_id, self.next_seq)
            del frames  # the decoded updates: freed now, not kept through the writes (an outage's retries)
            if len(rows) != count:  # a bug between the book's count and the conversion: say so, keep the rows
                log.error("tick sink: the tape counted %d row(s) but %d were converted", count, len(rows))
                self.held += len(rows) - count
                self.tape.release(self.held)
            self.next_seq += len(rows)
            size = self.config.batch_size
            self.batches.extend(rows[start:start + size] for start in range(0, len(rows), size))
        while self.batches:
            batch = self.batches[0]
            started = time.perf_counter()
            self.writing = True
            try:
                await asyncio.wait_for(loop.run_in_executor(self._thread, self.backend.write, batch),
                                       self.config.write_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.writes_failed += 1
                self.last_error = f"{type(exc).__name__}: {exc}".strip() if str(exc) else type(exc).__name__
                self._throttle.warn("write", "tick sink: cannot write to %s: %s; %d row(s) held in memory (limit %d), "
                                    "retrying", self.backend.name, self.last_error, self.depth,
                                    self.config.buffer_limit)
                return False
            finally:
                self.writing = False
            self._observe(time.perf_counter() - started)
            self.batches.popleft()
            self.held -= len(batch)
            self.tape.release(self.held)
            self.writes_ok += 1
            self.written += len(batch)
            self.last_success = self.clock.time()
            if self._throttle.settle("write") or self._backoff.attempts:
                log.info("tick sink: writing to %s again (%d row(s) still held)", self.backend.name, self.held)
            self._backoff.reset()
        return True

    def _observe(self, seconds: float) -> None:
        self.duration_counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum += seconds
