"""Poll-with-deadline helpers for tests (sync and async). Never a fixed sleep."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Awaitable, Callable, TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
             what: str = "condition") -> T:
    """Call ``condition`` until it returns something truthy; return that, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # e.g. connection refused while a process starts
            last_exc = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


async def async_wait_for(condition: Callable[[], T | Awaitable[T]], timeout: float = 10.0,
                         interval: float = 0.02, what: str = "condition") -> T:
    """Async twin of wait_for; ``condition`` may be a plain or an async callable."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            result = condition()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
        except Exception as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        await asyncio.sleep(interval)


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (for processes that need a fixed flag)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
