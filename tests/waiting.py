"""Poll-with-deadline helpers for tests (sync and async). Never a fixed sleep."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from pathlib import Path
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


# Ports for processes that need one on their command line. ``bind(("127.0.0.1", 0))`` hands out
# ports from the kernel's ephemeral range, the same range every outgoing connection's local port
# comes from: between choosing a port that way and the child process binding it, any connection
# on the machine (the other xdist worker's scrapes, a simulator's clients) can take it, and the
# child dies with "address already in use" (seen in CI: a shard replica in test_sharding).
# So ports come from below that range, from a slice of it owned by this xdist worker, in turn:
# nothing else on the machine allocates there, and no port is handed out twice in a session.
FREE_PORT_LOW = 15000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768   # Linux's default


def _worker_slice() -> range:
    """This xdist worker's share of [FREE_PORT_LOW, ephemeral range)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1), index + 1)
    size = (_ephemeral_low() - FREE_PORT_LOW) // count
    start = FREE_PORT_LOW + index * size
    return range(start, start + size)


_ports = itertools.count()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing else will take before a child process binds it (for
    processes that need a fixed flag): free now, outside the ephemeral range, this worker's own."""
    ports = _worker_slice()
    for _ in range(len(ports)):
        port = ports[next(_ports) % len(ports)]
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue   # a process from an earlier test still has it
            return port
    raise OSError(f"no free port in {ports.start}-{ports.stop - 1} on 127.0.0.1")
