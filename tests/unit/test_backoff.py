"""Reconnect backoff: random first delay, exponential growth, cap, jitter bounds, reset."""

from __future__ import annotations

import random

import pytest

from exporter.feeds.backoff import JITTER, QUICK_RESETS, Backoff, delays


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


@pytest.mark.parametrize("seed", range(5))
def test_a_short_connection_that_delivered_data_starts_the_sequence_over(seed):
    # A venue restarted for a second: the connection was up only 10 s, but it delivered data.
    b = Backoff(initial=1.0, max_delay=60.0, multiplier=2.0, reset_after=30.0, rng=random.Random(seed))
    for _ in range(5):
        b.next_delay()
    assert b.connection_ended(uptime=10.0, delivered=True, now=100.0)
    assert b.attempts == 0
    assert b.next_delay() <= 1.0   # back to the random first delay, not 16-32 s


def test_a_venue_that_accepts_and_drops_before_any_data_still_backs_off():
    b = Backoff(initial=1.0, max_delay=60.0, multiplier=2.0, reset_after=30.0, rng=random.Random(2))
    waits = []
    for i in range(10):
        assert not b.connection_ended(uptime=0.05, delivered=False, now=float(i))
        waits.append(b.next_delay())
    assert b.attempts == 10
    assert waits[-1] >= 60.0 * (1 - JITTER)          # grown to the cap
    assert min(waits[3:]) >= 4.0 * (1 - JITTER)      # and never started over on the way


def test_data_delivered_resets_a_few_times_per_reset_after_so_flapping_still_backs_off():
    # Delivers a frame and drops, every few seconds: three resets within reset_after,
    # then growth until the oldest of them has left the window.
    b = Backoff(initial=1.0, max_delay=60.0, multiplier=2.0, reset_after=30.0, rng=random.Random(4))
    for _ in range(4):
        b.next_delay()
    assert QUICK_RESETS == 3
    for now in (0.0, 5.0, 10.0):
        assert b.connection_ended(uptime=2.0, delivered=True, now=now)
        assert b.attempts == 0
        b.next_delay()
    for now in (15.0, 20.0, 29.9):
        assert not b.connection_ended(uptime=2.0, delivered=True, now=now)
        b.next_delay()
    assert b.attempts == 4
    assert b.connection_ended(uptime=2.0, delivered=True, now=30.0)   # the reset at 0 s has expired
    assert b.attempts == 0
    # A connection that lasted reset_after always resets, whatever happened just before.
    b.next_delay()
    assert b.connection_ended(uptime=30.0, delivered=False, now=31.0)
