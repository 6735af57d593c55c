"""A recorded incident, replayed, shows the same state transitions.

Run 1: the exporter (a real ``Service``: runner, frame recorder, journal on SQLite) watches a
Polygon simulator; AAPL stops trading. Its incident opens when AAPL turns degraded and the
journal saves the feed's recorder window. Run 2: ``feedwatch simulate --replay`` (the real CLI,
a subprocess) plays that file with its original timing to a fresh exporter, which must see the
same transitions, in the same order, up to and including AAPL's: MSFT keeps updating through
the replay, AAPL goes silent where it did and turns degraded after the same threshold.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import pytest

from exporter.book import STATE_NAMES, Transition
from exporter.clock import SystemClock
from exporter.config import load_data
from exporter.feeds.recorder import read_recording
from exporter.service import Service
from exporter.simulator.server import Simulator
from tests.integration.feedharness import API_KEY, FAST
from tests.waiting import async_wait_for

pytestmark = pytest.mark.integration

THRESHOLDS = {"degraded": "2s", "stale": "4s", "critical": "1m"}


def config_for(url: str, workdir: Path):
    return load_data({
        "thresholds": THRESHOLDS,
        "feeds": [{"name": "stocks", "kind": "polygon", "url": url, "api_key": API_KEY,
                   "symbols": ["AAPL", "MSFT"], "channels": ["T", "Q"], **FAST}],
        "journal": {"path": str(workdir / "journal.sqlite"), "flush_interval": "50ms"},
        "recorder": {"window": "8s"},
    }, environ={})


async def run_until_aapl_degraded(url: str, workdir: Path, stall=None) -> tuple[Service, list[Transition], float]:
    """The transitions up to AAPL's first, and how long MSFT had kept trading after AAPL's last update."""
    service = Service(config_for(url, workdir), SystemClock(), sweep_interval=0.05)
    seen: list[Transition] = []
    gap: list[float] = []

    def listen(change: Transition) -> None:
        seen.append(change)
        if change.symbol == "AAPL" and not gap:
            symbols = service.book.feeds["stocks"].symbols
            gap.append(symbols["MSFT"].last_update - symbols["AAPL"].last_update)

    service.book.listeners.append(listen)
    await service.start()
    feed = service.book.feeds["stocks"]
    await async_wait_for(lambda: feed.symbols["AAPL"].updates > 20 and feed.symbols["MSFT"].updates > 20,
                         timeout=30, what="both symbols trading")
    if stall is not None:
        stall()
    await async_wait_for(lambda: gap, timeout=30, what="AAPL's incident")
    return service, seen, gap[0]


def up_to_aapl(transitions: list[Transition]) -> list[tuple[str, str, str]]:
    out = []
    for t in transitions:
        out.append((t.symbol, STATE_NAMES[t.old], STATE_NAMES[t.new]))
        if t.symbol == "AAPL":
            break
    return out


async def test_a_recorded_incident_replays_with_the_same_transitions(tmp_path: Path) -> None:
    sim = Simulator("polygon", ("AAPL", "MSFT"), rate=20, api_key=API_KEY)
    await sim.start()
    try:
        service, first, first_gap = await run_until_aapl_degraded(sim.ws_url, tmp_path / "run1",
                                                       stall=lambda: sim.fault("stall", "AAPL"))
        journal = service.journal
        incident = journal.open[("symbol", "stocks", "AAPL")]
        await async_wait_for(lambda: incident.recording is not None, timeout=20, what="the incident's recording")
        await service.stop()
    finally:
        await sim.stop()
    recording = tmp_path / "run1" / "recordings" / incident.recording
    header, frames = read_recording(recording)
    assert header["feed"] == "stocks" and header["kind"] == "polygon" and header["frames"] == len(frames) > 50
    assert incident.id in header["note"]
    expected = up_to_aapl(first)
    assert expected == [("AAPL", "healthy", "degraded")]

    replay = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter.cli", "simulate", "--replay", str(recording), "--api-key", API_KEY,
        "--port", "0", "--control-port", "0", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        lines = [(await asyncio.wait_for(replay.stdout.readline(), 30)).decode().strip() for _ in range(3)]
        ws_url = lines[0].removeprefix("ws: ")
        control = lines[1].removeprefix("control: ")
        assert lines[2].startswith(f"replay: {recording} ({len(frames)} frames of stocks over ")
        service, second, second_gap = await run_until_aapl_degraded(ws_url, tmp_path / "run2")
        try:
            assert up_to_aapl(second) == expected
            # With the original timing: MSFT traded on for the degraded threshold (2 s) after AAPL's
            # last update, in the replay as in the original (all frames at once would make it ~0).
            assert first_gap >= 1.9 and second_gap >= 1.5, (first_gap, second_gap)
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{control}/state") as resp:
                    state = await resp.json()
            assert state["venue"] == "polygon" and state["replay"]["frames"] == len(frames)
            # The replayed incident is journaled like the original one.
            assert ("symbol", "stocks", "AAPL") in service.journal.open
        finally:
            await service.stop()
    finally:
        replay.terminate()
        try:   # bounded: a replay process that ignores SIGTERM fails the test, it cannot hang it
            await asyncio.wait_for(replay.wait(), 30)
        except asyncio.TimeoutError:
            replay.kill()
            await replay.wait()
            pytest.fail("feedwatch simulate --replay did not exit within 30 s of SIGTERM")
