"""The frame recorder: per feed, the last seconds of raw frames, and the recording file format.

Every feed's links append each data frame they read to the feed's ``FrameRing`` as ``(time,
frame)``: one deque append of a tuple, the only cost on the hot path (bench/README.md measures it
against the same runner without recording). Everything else happens off the hot path, once a
second, in ``Recorder.run``:

- the ring is trimmed to ``window`` seconds and ``max_bytes`` (the deque's ``maxlen`` is the hard
  bound in between: ``max_frames``);
- with ``continuous.dir`` set, the frames that arrived since the last pass are written to a
  rotating gzip file per feed (``<dir>/<feed>-<UTC start>.fwrec.gz``), at most ``continuous.keep``
  files per feed.

The incident journal copies a ring's window when an incident opens (``FrameRing.window``) and
saves it with ``write_recording``; ``feedwatch simulate --replay FILE`` reads it back with
``read_recording`` and plays it with its original timing.

A recording is a gzip-compressed JSON-lines file::

    {"feedwatch_recording":1,"feed":"stocks","kind":"polygon","url":"wss://...","symbols":["AAPL"],
     "started_at":1700000000.1,"ended_at":1700000300.4,"frames":5321,"note":"incident ..."}
    [1700000000.1,"[{\\"ev\\":\\"T\\",\\"sym\\":\\"AAPL\\",...}]"]
    [1700000000.3,{"b64":"gAEC..."}]                      (a frame that is not UTF-8 text)

``zcat FILE | head`` shows what the venue sent. Times are the exporter's receive clock.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import gzip
import logging
import os
from collections import deque
from dataclasses import dataclass
from itertools import islice, repeat
from operator import indexOf, is_, itemgetter
from pathlib import Path
from typing import Any, Generator, Iterable, Mapping, Sequence

import msgspec

from exporter.book import escape_label
from exporter.collector import format_value, header
from exporter.config import Duration, FeedConfig, build_dataclass
from exporter.feeds.threads import in_daemon_thread
from exporter.slices import run_all, run_sliced

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SUFFIX = ".fwrec.gz"
Frame = tuple[float, Any]  # (receive time, bytes or str as the socket delivered it)
_data_of = itemgetter(1)
# Frames dropped per step of a trim (``FrameRing.trim_steps``): ~0.2 ms of freeing 9 KB frames.
TRIM_CHUNK = 1024


# --- configuration ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ContinuousConfig:
    """Optional continuous recording to rotating files (off unless ``dir`` is set)."""

    dir: str | None = None
    rotate_every: Duration = 3600.0
    keep: int = 24


@dataclass(frozen=True)
class RecorderConfig:
    """``recorder:``: the per-feed ring of raw frames behind incident recordings."""

    enabled: bool = True
    # Seconds of frames kept per feed: long enough to include the last update of a symbol that
    # turns degraded (180 s by default) when its incident opens.
    window: Duration = 300.0
    max_frames: int = 100_000
    max_bytes: int = 64 * 2**20
    # Feeds recorded; empty = every feed.
    feeds: tuple[str, ...] = ()
    continuous: ContinuousConfig = ContinuousConfig()


def section(raw: Any, path: str, errors: list[str], environ: Mapping[str, str],
            feeds: Sequence[FeedConfig]) -> RecorderConfig | None:
    """The ``recorder:`` section (``feedwatch.sections`` entry point); None (= the defaults) when absent."""
    if raw is None:
        return None
    config = build_dataclass(RecorderConfig, raw, path, errors, environ) or RecorderConfig()
    names = {f.name for f in feeds}
    for i, name in enumerate(config.feeds):
        if name not in names:
            errors.append(f"{path}.feeds[{i}]: unknown feed {name!r} (feeds: {', '.join(sorted(names)) or 'none'})")
    if config.window <= 0:
        errors.append(f"{path}.window: must be positive")
    if config.max_frames < 1:
        errors.append(f"{path}.max_frames: must be at least 1, got {config.max_frames}")
    if config.max_bytes < 1:
        errors.append(f"{path}.max_bytes: must be at least 1, got {config.max_bytes}")
    if config.continuous.rotate_every <= 0:
        errors.append(f"{path}.continuous.rotate_every: must be positive")
    if config.continuous.keep < 1:
        errors.append(f"{path}.continuous.keep: must be at least 1, got {config.continuous.keep}")
    return config


# --- the ring -----------------------------------------------------------------------------------

class FrameRing:
    """One feed's recent frames. ``frames.append((now, data))`` is all the hot path does."""

    def __init__(self, feed: FeedConfig, window: float, max_frames: int, max_bytes: int) -> None:
        self.feed = feed
        self.labels = f'feed="{escape_label(feed.name)}"'
        self.window = window
        self.max_bytes = max_bytes
        self.frames: deque[Frame] = deque(maxlen=max_frames)
        self.bytes = 0                  # bytes held, as of the last trim
        self._newest: Frame | None = None
        self.lost = 0                   # continuous mode: frames gone before they were written

    def trim(self, now: float) -> list[Frame]:
        """``trim_steps`` at once (tests, tools)."""
        return run_all(self.trim_steps(now))

    def trim_steps(self, now: float) -> Generator[None, None, list[Frame]]:
        """Bound the ring by age and bytes: a pass (``exporter/slices.py``) that returns the frames
        that arrived since the last trim.

        The frames since the last trim (those after the last one counted, found by identity) are
        found at once, in C: the ring may not change while it is walked. The frames past the
        window or the byte bound are then dropped ``TRIM_CHUNK`` per step: at a few thousand 9 KB
        frames a second, freeing them held the event loop 1.3 ms alone and up to 7 ms beside a
        scrape (issue 14's stall rounds). Only frames that were in the ring when the pass began
        are dropped; frames the links append meanwhile wait for the next trim, counted then.
        Should the ring reach ``max_frames`` meanwhile, the deque itself pushes out frames
        already counted: the byte count is then high until the next trim recounts (the
        saturated case below), never low."""
        frames = self.frames
        newest = self._newest
        found = False
        count = len(frames)
        if newest is not None:
            try:
                # By identity: an equal frame (the same bytes in the same batch) may follow it.
                count = indexOf(map(is_, reversed(frames), repeat(newest)), True)
                found = True
            except ValueError:
                pass
        fresh = list(islice(reversed(frames), count))
        fresh.reverse()
        if found and len(frames) < (frames.maxlen or 0):
            self.bytes += sum(map(len, map(_data_of, fresh)))
        else:
            # The last frame we accounted for was pushed out by maxlen (or this is the first
            # pass): older ones went with it unseen. Count again from scratch.
            if newest is not None and not found:
                self.lost += 1  # at least one; the exact number is unknowable without hot-path work
            self.bytes = sum(map(len, map(_data_of, frames)))
        newest = self._newest = frames[-1] if frames else None
        cutoff = now - self.window
        popleft = frames.popleft
        while True:
            for _ in range(TRIM_CHUNK):
                if not frames or not (frames[0][0] < cutoff or self.bytes > self.max_bytes):
                    return fresh
                dropped = popleft()
                self.bytes -= len(dropped[1])
                if dropped is newest:   # every frame counted is gone: the rest is the next trim's
                    self._newest = None
                    self.bytes = 0
                    return fresh
            yield

    def window_frames(self, now: float, seconds: float | None = None) -> list[Frame]:
        """A copy of the frames of the last ``seconds`` (default: the ring's window)."""
        cutoff = now - (self.window if seconds is None else seconds)
        return [frame for frame in self.frames if frame[0] >= cutoff]

    def oldest_age(self, now: float) -> float:
        return now - self.frames[0][0] if self.frames else 0.0


# --- the file format ----------------------------------------------------------------------------

class RecordingError(ValueError):
    """A file that is not a feedwatch recording (or is damaged)."""


def recording_header(feed: FeedConfig, frames: Sequence[Frame], note: str = "") -> dict[str, Any]:
    return {
        "feedwatch_recording": FORMAT_VERSION,
        "feed": feed.name,
        "kind": feed.kind,
        "url": feed.url,
        "symbols": list(feed.symbols),
        "started_at": frames[0][0] if frames else None,
        "ended_at": frames[-1][0] if frames else None,
        "frames": len(frames),
        "note": note,
    }


_encoder = msgspec.json.Encoder()


def _line(frame: Frame) -> bytes:
    at, data = frame
    if isinstance(data, str):
        return _encoder.encode([at, data])
    try:
        return _encoder.encode([at, data.decode("utf-8")])
    except UnicodeDecodeError:
        return _encoder.encode([at, {"b64": base64.b64encode(data).decode("ascii")}])


def write_recording(path: str | Path, header: Mapping[str, Any], frames: Iterable[Frame]) -> int:
    """Write a recording atomically (a temporary file, then rename); returns the compressed size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wb", compresslevel=6) as out:
        out.write(_encoder.encode(dict(header)) + b"\n")
        for frame in frames:
            out.write(_line(frame) + b"\n")
    os.replace(tmp, path)
    return path.stat().st_size


def read_recording(path: str | Path) -> tuple[dict[str, Any], list[tuple[float, str | bytes]]]:
    """(header, [(time, frame), ...]) of a recording: text frames as str, binary ones as bytes.
    RecordingError names what is wrong."""
    decoder = msgspec.json.Decoder()
    frames: list[tuple[float, str | bytes]] = []
    try:
        with gzip.open(path, "rb") as fh:
            first = fh.readline()
            try:
                header = decoder.decode(first)
            except msgspec.DecodeError:
                header = None
            if not isinstance(header, dict) or header.get("feedwatch_recording") != FORMAT_VERSION:
                raise RecordingError(f"{path}: not a feedwatch recording (version {FORMAT_VERSION} header missing)")
            for number, line in enumerate(fh, start=2):
                if not line.strip():
                    continue
                try:
                    at, data = decoder.decode(line)
                    raw = data if isinstance(data, str) else base64.b64decode(data["b64"])
                    frames.append((float(at), raw))
                except (msgspec.DecodeError, ValueError, TypeError, KeyError) as exc:
                    raise RecordingError(f"{path}: line {number}: not a recorded frame ({exc})") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        if isinstance(exc, RecordingError):
            raise
        raise RecordingError(f"{path}: cannot read: {exc}") from exc
    return header, frames


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_." else "_" for c in name)


def recording_name(feed: str, at: float, tag: str = "") -> str:
    """``<feed>-<UTC time>[-<tag>].fwrec.gz``: sorts by time within a feed."""
    stamp = dt.datetime.fromtimestamp(at, dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{_safe(feed)}-{stamp}{('-' + tag) if tag else ''}{SUFFIX}"


# --- continuous recording -----------------------------------------------------------------------

@dataclass
class _RotatingFile:
    path: Path
    opened_at: float
    handle: Any = None


class ContinuousWriter:
    """Appends each feed's new frames to its current file; rotates and prunes old files."""

    def __init__(self, config: ContinuousConfig) -> None:
        self.config = config
        self.dir = Path(config.dir or ".")
        self.current: dict[str, _RotatingFile] = {}
        self.written: dict[str, int] = {}
        self.errors = 0

    def write(self, ring: FrameRing, frames: list[Frame], now: float) -> None:
        """Runs in a worker thread: blocking file I/O is kept off the event loop."""
        name = ring.feed.name
        current = self.current.get(name)
        if current is not None and now - current.opened_at >= self.config.rotate_every:
            self._close(current)
            current = None
        if current is None:
            path = self.dir / recording_name(name, now, "continuous")
            self.dir.mkdir(parents=True, exist_ok=True)
            handle = gzip.open(path, "wb", compresslevel=6)
            header = {**recording_header(ring.feed, frames), "note": "continuous"}
            header["started_at"] = now
            handle.write(_encoder.encode(header) + b"\n")
            current = self.current[name] = _RotatingFile(path, now, handle)
            self._prune(name)
        for frame in frames:
            current.handle.write(_line(frame) + b"\n")
        current.handle.flush()
        self.written[name] = self.written.get(name, 0) + len(frames)

    def _prune(self, feed: str) -> None:
        # Names sort by their UTC start (recording_name), so the oldest come first.
        files = sorted(self.dir.glob(f"{_safe(feed)}-*-continuous{SUFFIX}"))
        for old in files[:-self.config.keep]:
            try:
                old.unlink()
            except OSError:
                pass

    @staticmethod
    def _close(current: _RotatingFile) -> None:
        try:
            current.handle.close()
        except OSError:
            pass

    def close(self) -> None:
        for current in self.current.values():
            self._close(current)
        self.current.clear()


# --- the recorder -------------------------------------------------------------------------------

class Recorder:
    """The rings of every recorded feed and the task that trims them (and writes continuously).

    Its ``render`` is a /metrics renderer::

        # HELP feedwatch_recorder_buffered_frames Raw frames held in the feed's recorder ring (as of the last trim).
        # TYPE feedwatch_recorder_buffered_frames gauge
        feedwatch_recorder_buffered_frames{feed="stocks"} 18211
        # HELP feedwatch_recorder_buffered_bytes Bytes of raw frames held in the feed's recorder ring (as of the last trim).
        # TYPE feedwatch_recorder_buffered_bytes gauge
        feedwatch_recorder_buffered_bytes{feed="stocks"} 2311904
        # HELP feedwatch_recorder_window_seconds Age of the oldest frame held: the window a recording can cover now.
        # TYPE feedwatch_recorder_window_seconds gauge
        feedwatch_recorder_window_seconds{feed="stocks"} 299.412

    and with continuous recording on, also::

        # HELP feedwatch_recorder_written_frames_total Frames written to the continuous recording files.
        # TYPE feedwatch_recorder_written_frames_total counter
        feedwatch_recorder_written_frames_total{feed="stocks"} 1894410
        # HELP feedwatch_recorder_overruns_total Trim passes that found frames gone before the continuous writer saw them (raise max_frames or max_bytes).
        # TYPE feedwatch_recorder_overruns_total counter
        feedwatch_recorder_overruns_total{feed="stocks"} 0
        # HELP feedwatch_recorder_write_errors_total Failed passes of the continuous recording writer (disk full, permissions).
        # TYPE feedwatch_recorder_write_errors_total counter
        feedwatch_recorder_write_errors_total 0
    """

    def __init__(self, config: RecorderConfig | None, feeds: Iterable[FeedConfig], clock: Any,
                 interval: float = 1.0) -> None:
        self.config = config = config or RecorderConfig()
        self.clock = clock
        self.interval = interval
        self.rings: dict[str, FrameRing] = {}
        if config.enabled:
            wanted = set(config.feeds)
            for feed in feeds:
                if not wanted or feed.name in wanted:
                    self.rings[feed.name] = FrameRing(feed, config.window, config.max_frames, config.max_bytes)
        self.writer = ContinuousWriter(config.continuous) if config.continuous.dir and config.enabled else None
        self._writing: asyncio.Future[None] | None = None   # the continuous write under way, if any

    def ring(self, feed: str) -> FrameRing | None:
        return self.rings.get(feed)

    def follow(self, feed: FeedConfig) -> FrameRing | None:
        """The ring of a feed a configuration reload added or reconnected (made if it is recorded)."""
        config = self.config
        if not config.enabled or (config.feeds and feed.name not in config.feeds):
            return None
        ring = self.rings.get(feed.name)
        if ring is None:
            ring = self.rings[feed.name] = FrameRing(feed, config.window, config.max_frames, config.max_bytes)
        ring.feed = feed  # recordings name the feed as it is now configured
        return ring

    def forget(self, feed: str) -> None:
        """A feed removed by a reload: its frames go with it."""
        self.rings.pop(feed, None)

    def trim(self) -> list[tuple[FrameRing, list[Frame]]]:
        """``trim_steps`` at once (tests, tools)."""
        return run_all(self.trim_steps())

    def trim_steps(self) -> Generator[None, None, list[tuple[FrameRing, list[Frame]]]]:
        """Every ring's trim, one pass: each ring's frames since its last trim."""
        now = self.clock.time()
        batches = []
        for ring in list(self.rings.values()):   # a reload may add or forget a ring meanwhile
            batches.append((ring, (yield from ring.trim_steps(now))))
        return batches

    async def run(self) -> None:
        """Trim every ``interval``; hand new frames to the continuous writer in a worker thread."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                batches = await run_sliced(self.trim_steps())
                if self.writer is not None:
                    work = [(ring, frames) for ring, frames in batches if frames]
                    if work:
                        # A daemon thread (threads.py), remembered so that ``stop`` can give it a
                        # deadline; shielded: cancelling this task must not orphan it unseen.
                        self._writing = asyncio.ensure_future(in_daemon_thread(self._write_all, work, self.clock.time()))
                        await asyncio.shield(self._writing)
            except Exception:  # a full disk must not stop the trimming (memory stays bounded)
                if self.writer is not None:
                    self.writer.errors += 1
                log.exception("frame recorder pass failed")

    def _write_all(self, work: list[tuple[FrameRing, list[Frame]]], now: float) -> None:
        assert self.writer is not None
        for ring, frames in work:
            self.writer.write(ring, frames, now)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    async def stop(self, timeout: float) -> bool:
        """After the ``run`` task is cancelled: let a continuous write under way finish, for at
        most ``timeout`` seconds, then close the files. A write stuck longer (a hung disk) is
        logged and left behind with its files open (closing them under it would only race it);
        False then. Never waits longer than ``timeout``."""
        writing = self._writing
        if writing is not None and not writing.done():
            await asyncio.wait({writing}, timeout=timeout)
            if not writing.done():
                log.warning("frame recorder: a continuous write to %s did not finish within %gs of stopping "
                            "(a stuck disk?); stopping without it", self.writer.dir if self.writer else "?", timeout)
                return False
        self.close()
        return True

    def render(self, now: float) -> str:
        rings = list(self.rings.values())
        out = [header("feedwatch_recorder_buffered_frames", "gauge",
                      "Raw frames held in the feed's recorder ring (as of the last trim).")]
        out += [f"feedwatch_recorder_buffered_frames{{{r.labels}}} {len(r.frames)}\n" for r in rings]
        out.append(header("feedwatch_recorder_buffered_bytes", "gauge",
                          "Bytes of raw frames held in the feed's recorder ring (as of the last trim)."))
        out += [f"feedwatch_recorder_buffered_bytes{{{r.labels}}} {r.bytes}\n" for r in rings]
        out.append(header("feedwatch_recorder_window_seconds", "gauge",
                          "Age of the oldest frame held: the window a recording can cover now."))
        out += [f"feedwatch_recorder_window_seconds{{{r.labels}}} {format_value(round(r.oldest_age(now), 3))}\n"
                for r in rings]
        if self.writer is not None:
            out.append(header("feedwatch_recorder_written_frames_total", "counter",
                              "Frames written to the continuous recording files."))
            out += [f"feedwatch_recorder_written_frames_total{{{r.labels}}} {self.writer.written.get(r.feed.name, 0)}\n"
                    for r in rings]
            out.append(header("feedwatch_recorder_overruns_total", "counter",
                              "Trim passes that found frames gone before the continuous writer saw them "
                              "(raise max_frames or max_bytes)."))
            out += [f"feedwatch_recorder_overruns_total{{{r.labels}}} {r.lost}\n" for r in rings]
            out.append(header("feedwatch_recorder_write_errors_total", "counter",
                              "Failed passes of the continuous recording writer (disk full, permissions)."))
            out.append(f"feedwatch_recorder_write_errors_total {self.writer.errors}\n")
        return "".join(out)

    __call__ = render
