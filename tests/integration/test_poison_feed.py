"""Poison frames on a live connection: counted, logged once, and nothing else happens.

The simulator (127.0.0.1) streams Polygon quotes to a real Service; in between, the frames that
once broke the adapter (tests/fixtures/polygon/fuzz/: invalid UTF-8, JSON nested 1,000 deep, a
~320-digit timestamp, negative and out-of-window timestamps) are sent three times over, as text
and as binary frames. The connection stays up, prices keep flowing, every frame is counted, the
runner's log shows each reason once (rate-limited) with a preview of the frame, and the runner's
last-resort catch around ``handle()`` never fires.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tests.integration.feedharness import simulated_feed

FUZZ = Path(__file__).resolve().parents[1] / "fixtures" / "polygon" / "fuzz"


async def test_poison_frames_are_counted_and_logged_once_and_the_feed_goes_on(clock, caplog):
    caplog.set_level(logging.WARNING, logger="exporter.feeds")
    paths = sorted(FUZZ.glob("*.json"))
    frames = [p.read_bytes() for p in paths]
    implausible = sum("timestamp" in p.name for p in paths)  # one implausible stamp each
    assert implausible == 4
    async with simulated_feed(clock, symbols=("AAPL", "MSFT")) as h:
        await h.wait(lambda: h.feed.connects == 1 and all(s.updates for s in h.feed.symbols.values()),
                     "both symbols updating")
        [session] = list(h.sim.sessions)
        for _ in range(3):
            for frame in frames:
                assert await session.send(frame)                                   # binary
                assert await session.send(frame.decode("utf-8", "surrogateescape")
                                          .encode("utf-8", "replace").decode())   # text
        await h.wait(lambda: h.feed.rejected["implausible_timestamp"] >= 6 * implausible,
                     "every implausible timestamp rejected")
        await h.wait(lambda: h.feed.errors["decode"] >= 6, "every deep frame counted as a decode error")
        before = {s: state.updates for s, state in h.feed.symbols.items()}
        await h.wait(lambda: all(h.feed.symbols[s].updates > n for s, n in before.items()), "prices still flowing")
        assert h.feed.connects == 1 and sum(h.feed.disconnects.values()) == 0
        assert "adapter raised" not in h.feed.last_error
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "adapter raised" in m or "connection failed unexpectedly" in m]
    rejected = [m for m in messages if "implausible_timestamp rejected update" in m]
    assert len(rejected) == 1, rejected  # logged once, the repeats held back for a minute
    assert "venue timestamp" in rejected[0] and "frame: [" in rejected[0]
    decode = [m for m in messages if "decode error" in m]
    assert len(decode) == 1 and "JSON nested too deeply" in decode[0], decode
