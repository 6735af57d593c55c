"""A feed server killed with SIGKILL (a separate ``feedwatch simulate`` process) and started again
on the same port is reconnected to by the running exporter, with no restart of the exporter.

The in-process variant (test_runner_reconnect.py) aborts the simulator's sockets; this one is the
literal case: the venue's process dies, its kernel socket state goes with it, a new process binds
the same port later.

The second test runs at the default reconnect settings (1 s first delay, x2, 60 s cap, reset
after 30 s up) and judges the recovery by the order of the backoff waits the runner logged, never
by a measured duration: every outage of a connection that delivered data starts again from the
random first delay, however short-lived that connection was.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import AsyncIterator

import pytest

from exporter.config import load_data
from exporter.service import Service
from tests.integration.feedharness import API_KEY, Harness, feed_config
from tests.integration.test_liveness import reconnect_waits
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


def outages(waits: list[tuple[int, float, str]]) -> list[list[tuple[int, float, str]]]:
    """Split the logged waits per outage: each starts with the lost connection's own reason."""
    split: list[list[tuple[int, float, str]]] = []
    for wait in waits:
        if not wait[2].startswith("connect failed") or not split:
            split.append([])
        split[-1].append(wait)
    return split


async def test_a_venue_restarted_twice_is_retried_from_the_first_delay_each_time(clock, venue_port, caplog):
    caplog.set_level(logging.INFO, logger="exporter.feeds.runner")
    port, processes = venue_port
    first, url = await start_venue(port)
    processes.append(first)
    # The default backoff; a deadline long enough that a busy machine cannot add an outage.
    config = load_data({"feeds": [feed_config(url, reconnect={}, heartbeat_timeout="10s")]})
    assert config.feeds[0].reconnect.reset_after == 30.0
    service = Service(config, clock, sweep_interval=0.05)
    await service.start()
    try:
        h = Harness(sim=None, service=service, name="stocks")  # type: ignore[arg-type]
        await h.wait(lambda: h.feed.is_up() and h.acked("AAPL", "MSFT"), "connected and subscribed", timeout=20)
        await h.flowing("AAPL", "MSFT")
        for n in (1, 2):
            # Killed; restarted once the exporter has found it gone (a refused connect). The
            # connection killed the second time had been up only for a few seconds.
            processes[-1].send_signal(signal.SIGKILL)
            await processes[-1].wait()
            refused = h.feed.errors["connect"]
            await h.wait(lambda: h.feed.errors["connect"] > refused, f"outage {n}: a refused connect", timeout=20)
            processes.append((await start_venue(port))[0])
            await h.wait(lambda: h.feed.connects == n + 1 and h.acked("AAPL", "MSFT"),
                         f"outage {n}: reconnected to the restarted venue", timeout=30)
            await h.flowing("AAPL", "MSFT")

        per_outage = outages(reconnect_waits(caplog))
        assert len(per_outage) == 2, per_outage
        for waits in per_outage:
            # Each outage is retried from attempt 1 with the random first delay (<= 1 s), then
            # the fresh sequence (<= 1, 2, 4 ... s), not from where the previous outage left it.
            assert [attempt for attempt, _, _ in waits] == list(range(1, len(waits) + 1)), per_outage
            assert waits[0][2].startswith("network_error"), per_outage
            for attempt, delay, _ in waits:
                assert delay <= 1.0 * 2 ** max(0, attempt - 2), per_outage
        # A killed process sends no close frame: each loss is a network error, not "the server closed".
        assert h.feed.disconnects["network_error"] == 2 and h.feed.disconnects["server_closed"] == 0
    finally:
        await service.stop()
