"""Property-based fuzzing of the five adapters' ``handle()`` (hypothesis), seeded from fixtures.

Each example builds a fresh book and adapter, feeds it one to six frames mutated from the
venue's recorded frames (``tests/fuzz/mutate.py``: hostile values, swapped types, deep nesting,
invalid UTF-8, truncation, noise), and checks after every frame that nothing escaped
``handle()``, that the frame was accepted or counted, and that the book holds no bad price or
implausible timestamp; then it renders ``/metrics`` and checks the exposition
(``tests/fuzz/harness.py``). A last test per adapter runs a fixed seeded sequence through one
long-lived adapter and hands the result to the real ``promtool check metrics``.

How many examples: the hypothesis profile named by ``FEEDWATCH_FUZZ_PROFILE`` (``ci``, the
default: a few seconds per adapter, derandomized so CI is reproducible; ``dev``: more, random;
``long``: five thousand per adapter). The million-case run is ``make fuzz``
(``python -m tests.fuzz``), which drives the same mutation engine without hypothesis's
per-example bookkeeping.
"""

from __future__ import annotations

import os
import random
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import mutate
from tests.fuzz.harness import VENUES, Target

settings.register_profile("ci", max_examples=120, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=2_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=5_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = os.environ.get("FEEDWATCH_FUZZ_PROFILE", "ci")
SEEDS = {venue: mutate.seeds(venue) for venue in VENUES}


@pytest.mark.parametrize("venue", VENUES)
@settings(settings.get_profile(PROFILE))
@given(rng=st.randoms(use_true_random=False), frames=st.integers(1, 6), variant=st.integers(0, 2))
def test_handle_never_raises_and_counts_every_frame(venue: str, rng: random.Random, frames: int,
                                                    variant: int) -> None:
    target = Target(venue, variant if venue == "generic" else 0)
    for _ in range(frames):
        target.feed_frame(mutate.make_case(rng, SEEDS[venue]))  # raises Escape / Violation
    target.check_render()


@pytest.mark.parametrize("venue", VENUES)
def test_metrics_after_a_fuzzed_session_pass_promtool(venue: str) -> None:
    """One adapter through 1,000 mutated frames, then the real ``promtool check metrics``."""
    rng = random.Random(f"promtool-{venue}")
    targets = [Target(venue, v) for v in range(3 if venue == "generic" else 1)]
    for i in range(1_000):
        targets[i % len(targets)].feed_frame(mutate.make_case(rng, SEEDS[venue]))
    for target in targets:
        text = target.check_render()
        assert sum(target.feed.rejected.values()) + sum(target.feed.errors.values()) > 0  # it was hostile
        result = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True,
                                timeout=60)
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
        assert result.stdout == b"" and result.stderr == b"", result.stdout.decode() + result.stderr.decode()
