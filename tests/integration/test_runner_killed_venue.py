"""A feed server killed with SIGKILL (a separate ``feedwatch simulate`` process) and started again
on the same port is reconnected to by the running exporter, with no restart of the exporter.

The in-process variant (test_runner_reconnect.py) aborts the simulator's sockets; this one is the
literal case: the venue's process dies, its kernel socket state goes with it, a new process binds
the same port later.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import AsyncIterator

import pytest

from exporter.config import load_data
from exporter.service import Service
from tests.integration.feedharness import API_KEY, Harness, feed_config
from tests.waiting import free_port

pytestmark = pytest.mark.integration


async def start_venue(port: int) -> tuple[asyncio.subprocess.Process, str]:
    """``feedwatch simulate`` on ``port``; (process, ws URL) once it listens."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter.cli", "simulate", "--venue", "polygon", "--symbols", "AAPL,MSFT",
        "--rate", "40", "--api-key", API_KEY, "--port", str(port), "--control-port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
    assert line.startswith("ws: "), f"the simulator printed {line!r} instead of its URL"
    return proc, line.split(" ", 1)[1]


async def kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


@pytest.fixture
async def venue_port() -> AsyncIterator[tuple[int, list[asyncio.subprocess.Process]]]:
    processes: list[asyncio.subprocess.Process] = []
    yield free_port(), processes
    for proc in processes:
        await kill(proc)


async def test_killed_venue_process_is_reconnected_to_without_a_restart(clock, venue_port) -> None:
    port, processes = venue_port
    first, url = await start_venue(port)
    processes.append(first)
    service = Service(load_data({"feeds": [feed_config(url)]}), clock, sweep_interval=0.05)
    await service.start()
    try:
        h = Harness(sim=None, service=service, name="stocks")  # type: ignore[arg-type]
        await h.wait(lambda: h.feed.is_up() and h.acked("AAPL", "MSFT"), "connected and subscribed", timeout=20)
        await h.flowing("AAPL", "MSFT")

        first.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(first.wait(), 10) == -signal.SIGKILL
        await h.wait(lambda: not h.feed.is_up(), "feed down once the venue process died")
        await h.wait(lambda: h.feed.errors["connect"] >= 1, "refused connects counted while it is gone")
        assert not h.acked("AAPL")

        second, _ = await start_venue(port)
        processes.append(second)
        await h.wait(lambda: h.feed.is_up() and h.acked("AAPL", "MSFT"), "reconnected to the new process",
                     timeout=20)
        await h.flowing("AAPL", "MSFT")
        assert h.feed.connects == 2
        assert service.runners["stocks"] is h.runner   # the same runner: nothing was restarted
    finally:
        await service.stop()
