"""The frame recorder: its ring stays within its bounds, recordings round-trip, continuous files rotate."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading

import pytest

from exporter import slices
from exporter.clock import FakeClock
from exporter.config import ConfigError, FeedConfig, load_data
from exporter.feeds.recorder import (
    ContinuousConfig,
    FrameRing,
    Recorder,
    RecorderConfig,
    RecordingError,
    read_recording,
    recording_header,
    write_recording,
)
from exporter.feeds import recorder as recorder_module
from exporter.slices import run_all

from tests.waiting import async_wait_for

FEED = FeedConfig(name="stocks", kind="polygon", url="wss://x.invalid", symbols=("AAPL",))


def test_the_ring_keeps_the_window_and_the_byte_bound():
    ring = FrameRing(FEED, window=10.0, max_frames=1000, max_bytes=50)
    for i in range(20):
        ring.frames.append((float(i), b"0123456789"))         # what the link's read loop does
    fresh = ring.trim(20.0)
    assert len(fresh) == 20                                    # everything was new
    # 10 s window: frames from t=10 on; then the byte bound keeps the newest 5 (50 bytes).
    assert [t for t, _ in ring.frames] == [15.0, 16.0, 17.0, 18.0, 19.0] and ring.bytes == 50
    ring.frames.append((20.5, b"x"))
    assert ring.trim(21.0) == [(20.5, b"x")]                  # only what arrived since the last trim
    assert ring.bytes == 41 and [t for t, _ in ring.frames][0] == 16.0
    assert ring.window_frames(21.0, seconds=2.0) == [(19.0, b"0123456789"), (20.5, b"x")]


def test_a_saturated_ring_is_recounted_and_the_overrun_noted():
    ring = FrameRing(FEED, window=1e9, max_frames=4, max_bytes=10**9)
    ring.frames.extend((float(i), b"ab") for i in range(4))
    ring.trim(5.0)
    ring.frames.extend((float(i), b"abc") for i in range(5, 11))   # pushes out what the trim saw last
    fresh = ring.trim(11.0)
    assert [t for t, _ in fresh] == [7.0, 8.0, 9.0, 10.0] and ring.bytes == 12 and ring.lost == 1


def test_the_trim_drops_in_steps_and_leaves_what_arrives_meanwhile_to_the_next(monkeypatch):
    """Issue 14: dropping a second's worth of frames at once held the event loop up to 7 ms beside
    a scrape. The trim is a pass that drops ``TRIM_CHUNK`` frames per step; a frame the read loop
    appends between two steps is neither dropped nor counted by it, but by the next trim."""
    monkeypatch.setattr(recorder_module, "TRIM_CHUNK", 2)
    ring = FrameRing(FEED, window=10.0, max_frames=1000, max_bytes=10**6)
    ring.frames.extend((float(i), b"0123456789") for i in range(10))
    steps = ring.trim_steps(15.0)       # the window keeps t >= 5: five frames to drop
    next(steps)
    assert [t for t, _ in ring.frames][0] == 2.0            # two dropped, then the loop's turn
    ring.frames.append((15.5, b"new"))                        # the read loop, meanwhile
    fresh = run_all(steps)
    assert len(fresh) == 10 and fresh[-1] == (9.0, b"0123456789")
    assert [t for t, _ in ring.frames] == [5.0, 6.0, 7.0, 8.0, 9.0, 15.5] and ring.bytes == 50
    assert ring.trim(16.0) == [(15.5, b"new")] and ring.lost == 0
    assert [t for t, _ in ring.frames] == [6.0, 7.0, 8.0, 9.0, 15.5] and ring.bytes == 43


def test_a_frame_equal_to_the_last_one_counted_is_new():
    """A batch's frames share one receive time, and a venue may send the same bytes twice: the
    last frame counted is found by identity, not by equality."""
    ring = FrameRing(FEED, window=10.0, max_frames=1000, max_bytes=10**6)
    now = 1.0
    ring.frames.append((now, b"ping"))       # a tuple made at run time, as the read loop makes it
    ring.trim(now)
    ring.frames.append((now, b"ping"))       # equal to the last one counted, not the same
    assert ring.frames[0] == ring.frames[1] and ring.frames[0] is not ring.frames[1]
    assert ring.trim(now) == [(now, b"ping")] and ring.bytes == 8


def test_a_trim_that_drops_every_counted_frame_leaves_the_new_ones_to_the_next():
    ring = FrameRing(FEED, window=1.0, max_frames=1000, max_bytes=10**6)
    ring.frames.extend((float(i), b"ab") for i in range(3))
    steps = ring.trim_steps(100.0)
    assert run_all(steps) == [(0.0, b"ab"), (1.0, b"ab"), (2.0, b"ab")]
    assert not ring.frames and ring.bytes == 0
    ring.frames.append((100.5, b"abc"))
    assert ring.trim(101.0) == [(100.5, b"abc")] and ring.bytes == 3 and ring.lost == 0


async def test_the_recorder_gives_the_event_loop_turns_while_it_trims(monkeypatch):
    """``Recorder.run`` trims as a sliced pass: other tasks run between its steps (they see the
    ring half trimmed), where the trim done at once showed them only before and after."""
    monkeypatch.setattr(recorder_module, "TRIM_CHUNK", 1)
    monkeypatch.setattr(slices, "SLICE", 0.0)   # a turn after every step
    clock = FakeClock(1_000.0)
    recorder = Recorder(RecorderConfig(window=10.0), [FEED], clock, interval=0.001)
    ring = recorder.ring("stocks")
    ring.frames.extend((float(i), b"x") for i in range(50))   # every one past the window
    seen: set[int] = set()

    async def watch() -> None:
        while ring.frames:
            seen.add(len(ring.frames))
            await asyncio.sleep(0)

    runner = asyncio.ensure_future(recorder.run())
    try:
        await asyncio.wait_for(watch(), 10)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert {50} < seen and any(0 < n < 50 for n in seen)


def test_recordings_round_trip_text_and_binary_frames(tmp_path):
    frames = [(1.5, b'[{"ev":"T","sym":"AAPL","p":189.5}]'), (1.75, '{"already": "text"}'), (2.0, b"\xff\x00\x01")]
    path = tmp_path / "r.fwrec.gz"
    write_recording(path, recording_header(FEED, frames, note="test"), frames)
    header, back = read_recording(path)
    assert header["feed"] == "stocks" and header["kind"] == "polygon" and header["frames"] == 3
    assert header["started_at"] == 1.5 and header["ended_at"] == 2.0 and header["note"] == "test"
    assert back == [(1.5, '[{"ev":"T","sym":"AAPL","p":189.5}]'), (1.75, '{"already": "text"}'), (2.0, b"\xff\x00\x01")]
    with gzip.open(path, "rt") as fh:                            # readable with zcat
        assert json.loads(fh.readlines()[1]) == [1.5, '[{"ev":"T","sym":"AAPL","p":189.5}]']


# mtime=0: the same bytes, so the same test ids, at every collection (pytest-xdist's workers each
# collect and must agree; a gzip header's default mtime is the second it was made).
@pytest.mark.parametrize("content", [b"not gzip at all", gzip.compress(b'{"hello": 1}\n', mtime=0),
                                     gzip.compress(b'{"feedwatch_recording": 1}\n[1.0]\n', mtime=0)])
def test_a_file_that_is_not_a_recording_is_refused_with_its_path(tmp_path, content):
    path = tmp_path / "bad.fwrec.gz"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match="bad.fwrec.gz"):
        read_recording(path)


def test_continuous_recording_writes_new_frames_and_rotates(tmp_path):
    clock = FakeClock(1_700_000_000.0)
    config = RecorderConfig(continuous=ContinuousConfig(dir=str(tmp_path), rotate_every=60.0, keep=2))
    recorder = Recorder(config, [FEED], clock)
    ring = recorder.ring("stocks")
    for minute in range(4):
        for i in range(3):
            ring.frames.append((clock.time() + i, f"frame {minute}.{i}".encode()))
        recorder._write_all(recorder.trim(), clock.time())
        clock.advance(61)
    recorder.close()
    files = sorted(tmp_path.glob("stocks-*-continuous.fwrec.gz"))
    assert len(files) == 2                                        # keep: 2, the oldest deleted
    header, frames = read_recording(files[-1])
    assert [data for _, data in frames] == ["frame 3.0", "frame 3.1", "frame 3.2"]
    assert recorder.writer.written["stocks"] == 12
    assert 'feedwatch_recorder_written_frames_total{feed="stocks"} 12' in recorder.render(clock.time())


def test_recorder_config_is_strict_and_checked():
    config = load_data({"feeds": [{"name": "s", "kind": "polygon", "url": "wss://x", "symbols": ["A"]}],
                        "recorder": {"window": "30s", "feeds": ["s"]}}, environ={})
    assert config.recorder.window == 30.0 and config.recorder.feeds == ("s",)
    with pytest.raises(ConfigError) as exc:
        load_data({"feeds": [], "recorder": {"feeds": ["nope"], "max_frames": 0, "windw": "1s"}}, environ={})
    assert exc.value.errors == ["recorder.windw: unknown key (did you mean 'window'?)",
                                "recorder.feeds[0]: unknown feed 'nope' (feeds: none)",
                                "recorder.max_frames: must be at least 1, got 0"]


async def test_a_stuck_continuous_write_cannot_hang_the_recorders_stop(tmp_path, monkeypatch, caplog):
    """A disk that stops answering mid-write: the recorder's stop gives the write its deadline,
    says so, and returns; the files are not closed under the stuck thread."""
    clock = FakeClock(1_700_000_000.0)
    config = RecorderConfig(continuous=ContinuousConfig(dir=str(tmp_path), rotate_every=60.0, keep=2))
    recorder = Recorder(config, [FEED], clock, interval=0.01)
    release, entered = threading.Event(), threading.Event()

    def stuck(work, now) -> None:
        entered.set()
        release.wait()              # a write that never returns (released at the end of the test)

    monkeypatch.setattr(recorder, "_write_all", stuck)
    closed = []
    monkeypatch.setattr(recorder.writer, "close", lambda: closed.append(True))
    recorder.ring("stocks").frames.append((clock.time(), b"frame"))
    task = asyncio.create_task(recorder.run())
    try:
        await async_wait_for(entered.is_set, timeout=10, what="the continuous write under way and stuck")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        try:
            assert await asyncio.wait_for(recorder.stop(0.2), 30) is False
        except asyncio.TimeoutError:
            pytest.fail("Recorder.stop hung on a stuck write")
        assert closed == []
        assert any("did not finish within 0.2s of stopping" in r.getMessage() for r in caplog.records)
    finally:
        release.set()
    # A write that finishes in time: stop waits for it and closes the files.
    await async_wait_for(recorder._writing.done, timeout=10, what="the released write to end")
    assert await recorder.stop(0.2) is True and closed == [True]
