"""Daemon threads for blocking file and database I/O (the journal, the frame recorder), so a
stuck disk cannot hold up the exit.

``asyncio.to_thread`` and ``ThreadPoolExecutor`` workers are joined when the process ends (by
``asyncio.run``'s executor shutdown and by ``concurrent.futures`` at interpreter exit): one write
stuck on a hung disk or network mount would keep the exporter from ever exiting. These threads
are daemons, joined by nobody; a caller that stops waiting (a deadline, a cancellation) simply
leaves the call behind, and ``Journal.stop`` reports what it left.

    name = await in_daemon_thread(write_recording, path, header, frames)   # one call, one thread
    worker = Worker("feedwatch-journal-sqlite")                           # calls in order, one thread
    rows = await worker.run(db_query, sql)
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def _settle(future: "asyncio.Future[Any]", ok: bool, value: Any) -> None:
    if not future.done():   # the waiter may have given up (cancelled) meanwhile
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _call(loop: asyncio.AbstractEventLoop, future: "asyncio.Future[Any]", fn: Callable[..., Any],
          args: tuple) -> None:
    """Run ``fn(*args)`` here (a worker thread) and hand the outcome to ``future`` on ``loop``."""
    try:
        outcome = (True, fn(*args))
    except BaseException as exc:  # handed to the waiting task, whatever it is
        outcome = (False, exc)
    try:
        loop.call_soon_threadsafe(_settle, future, *outcome)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


async def in_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a new daemon thread of its own."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    threading.Thread(target=_call, args=(loop, future, fn, args), name="feedwatch-journal-io", daemon=True).start()
    return await future


class Worker:
    """One daemon thread running calls one at a time, in order (an sqlite3 connection's thread)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, future, fn, args))
        return await future

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            _call(*call)

    def shutdown(self) -> None:
        """The thread ends after the calls already queued (at once if it is idle); not waited for."""
        if self._thread is not None:
            self._calls.put(None)
            self._thread = None
