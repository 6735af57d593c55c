"""Incident recordings: when a feed or symbol incident opens, save what the venue sent before it.

The frame recorder (``exporter/feeds/recorder.py``) holds each feed's last ``recorder.window``
seconds of raw frames. When an incident opens, ``attach`` copies that window on the event loop
(a list of references, no bytes copied), compresses and writes it in a worker thread as
``<recordings_dir>/<feed>-<UTC time>-<incident id>.fwrec.gz``, then sets the incident's
``recording`` to the file name (``GET /api/v1/incidents/{id}/recording`` serves it;
``feedwatch simulate --replay FILE`` plays it back).

Incidents of one feed that open within ``SHARE_WITHIN`` seconds of a saved recording share it:
a feed outage that turns 500 symbols stale writes one file, not 500. Files older than the
journal's retention are deleted with the rows.

A write that never finishes (a hung disk or network mount) must not hang the exporter's stop:
each file is written by a daemon thread of its own (``feeds.threads.in_daemon_thread``: nothing
joins it, not ``asyncio.run``'s executor shutdown, not the interpreter's exit), and ``wait``
gives the writes still under way a deadline, then counts them as failed and leaves them behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from exporter.feeds.recorder import SUFFIX, recording_header, recording_name, write_recording
from exporter.feeds.threads import in_daemon_thread

log = logging.getLogger(__name__)

SHARE_WITHIN = 10.0


class Recordings:
    def __init__(self, recorder: Any, directory: str, clock: Any) -> None:
        self.recorder = recorder
        self.dir = Path(directory)
        self.clock = clock
        self.saved = 0
        self.failed = 0
        self._last: dict[str, tuple[float, "asyncio.Future[str | None]"]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._writing: set[asyncio.Task[None]] = set()   # of which the file writes

    def attach(self, journal: Any, incident: Any) -> None:
        """Link ``incident`` to a recording of its feed (saving one unless a fresh one is shared)."""
        ring = self.recorder.ring(incident.feed)
        if ring is None:
            return
        now = self.clock.time()
        last = self._last.get(incident.feed)
        if last is not None and now - last[0] <= SHARE_WITHIN:
            future = last[1]
        else:
            frames = ring.window_frames(now)
            if not frames:
                return
            name = recording_name(incident.feed, now, incident.id[:12])
            header = recording_header(ring.feed, frames, note=f"{incident.kind} incident {incident.id} "
                                      f"({incident.symbol or incident.feed}: {incident.level}, {incident.reason})")
            future = asyncio.get_running_loop().create_future()
            self._last[incident.feed] = (now, future)
            self._writing.add(self._spawn(self._write(name, header, frames, future)))
        self._spawn(self._link(journal, incident, future))

    async def _write(self, name: str, header: dict, frames: list, future: "asyncio.Future[str | None]") -> None:
        try:
            await in_daemon_thread(write_recording, self.dir / name, header, frames)
        except asyncio.CancelledError:  # abandoned at stop (``wait``): counted there
            future.set_result(None)
            raise
        except Exception as exc:  # a full disk costs the recording, never the incident
            self.failed += 1
            log.warning("journal: could not save the recording %s: %r", self.dir / name, exc)
            future.set_result(None)
            return
        self.saved += 1
        future.set_result(name)

    @staticmethod
    async def _link(journal: Any, incident: Any, future: "asyncio.Future[str | None]") -> None:
        name = await asyncio.shield(future)
        if name is not None:
            incident.recording = name
            journal.update(incident)

    def _spawn(self, coro) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._writing.discard)
        return task

    async def wait(self, timeout: float) -> int:
        """Let recordings being written finish (shutdown), for at most ``timeout`` seconds.

        Returns how many writes were still under way at the deadline: they are abandoned
        (counted as failed; their threads finish or not on their own, nothing waits for them),
        and the incidents waiting for them keep no recording link. The caller logs it."""
        tasks = set(self._tasks)
        if not tasks:
            return 0
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        stuck = [task for task in pending if task in self._writing]
        self.failed += len(stuck)
        for task in pending:
            task.cancel()   # returns at once: the thread is not waited for
        return len(stuck)

    def path(self, name: str) -> Path | None:
        """The file of a recording name taken from an incident (None if it is not a plain name here)."""
        if not name or os.path.basename(name) != name or not name.endswith(SUFFIX):
            return None
        path = self.dir / name
        return path if path.is_file() else None

    async def prune(self, before: float) -> None:
        def prune() -> None:
            for path in self.dir.glob(f"*{SUFFIX}"):
                try:
                    if path.stat().st_mtime < before:
                        path.unlink()
                except OSError:
                    pass

        await asyncio.to_thread(prune)

