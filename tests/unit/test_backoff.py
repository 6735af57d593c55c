"""Reconnect backoff: random first delay, exponential growth, cap, jitter bounds, reset."""

from __future__ import annotations

import random

import pytest

from exporter.feeds.backoff import JITTER, Backoff, delays


def take(it, n):
    return [next(it) for _ in range(n)]


def test_first_delay_is_uniform_in_zero_to_initial():
    firsts = [next(delays(2.0, 60.0, 2.0, random.Random(seed))) for seed in range(300)]
    assert all(0.0 <= d <= 2.0 for d in firsts)
    # Spread over the whole range, not clustered at one end (that is what desynchronises fleets).
    assert min(firsts) < 0.2 and max(firsts) > 1.8


def test_delays_grow_exponentially_within_jitter_bounds():
    seq = take(delays(1.0, 1000.0, 2.0, random.Random(7)), 8)[1:]
    for n, d in enumerate(seq):
        nominal = 1.0 * 2.0 ** n
        assert nominal * (1 - JITTER) <= d <= nominal, (n, d)


def test_delays_stop_at_the_cap_and_never_exceed_it():
    seq = take(delays(1.0, 10.0, 3.0, random.Random(3)), 50)
    assert max(seq) <= 10.0
    tail = seq[10:]
    assert all(10.0 * (1 - JITTER) <= d <= 10.0 for d in tail)


def test_multiplier_below_one_does_not_shrink_delays():
    seq = take(delays(1.0, 10.0, 0.5, random.Random(3)), 10)[1:]
    assert all(1.0 * (1 - JITTER) <= d <= 1.0 for d in seq)


@pytest.mark.parametrize("seed", range(5))
def test_backoff_resets_after_a_connection_that_stayed_up(seed):
    b = Backoff(initial=1.0, max_delay=60.0, multiplier=2.0, reset_after=30.0, rng=random.Random(seed))
    for _ in range(6):
        b.next_delay()
    assert b.attempts == 6
    b.connection_ended(uptime=5.0)      # too short: keep growing
    assert b.next_delay() >= 32.0 * (1 - JITTER)
    b.connection_ended(uptime=30.0)     # long enough: start over from the random first delay
    assert b.attempts == 0
    assert b.next_delay() <= 1.0
    assert b.attempts == 1


def test_cap_is_the_fatal_error_delay():
    b = Backoff(initial=0.5, max_delay=20.0)
    assert b.cap() == 20.0
    # A cap below the initial delay is lifted to it rather than producing negative ranges.
    assert Backoff(initial=5.0, max_delay=1.0).cap() == 5.0
