"""Reconnect delays, the python-websockets way: random first delay, growth to a cap, reset.

The first retry after a connection drops waits a uniformly random time in ``[0, initial]``, so a
fleet of exporters that lost the venue at the same instant does not reconnect in lockstep. Each
further retry waits ``initial * multiplier**n`` (with a little downward jitter) up to ``max_delay``,
then stays at the cap.

When does the sequence start over? A connection that stayed up at least ``reset_after`` seconds
was a success. So was one that *delivered data* (the venue acknowledged a subscription or sent an
accepted update), however short: the venue was really serving us, so its loss is a fresh outage
and the next attempt comes within ``initial`` seconds instead of where the growth had got to (a
venue restarted for a second must not cost a minute of data). Flapping stays protected:

- a venue that accepts the socket and drops it before delivering anything never resets the
  sequence, so its delays grow to the cap;
- a venue that delivers a little and drops, over and over, gets at most ``QUICK_RESETS`` such
  "delivered" resets within any ``reset_after`` seconds; past that its delays grow as if nothing
  had been delivered, until a connection stays up ``reset_after`` or the window has passed.
  (Two quick restarts of a venue are recovered from at once; a subscription that makes the venue
  drop us every time does not turn into a reconnect per second.)

    >>> import random
    >>> b = Backoff(initial=1.0, max_delay=8.0, multiplier=2.0, reset_after=30.0, rng=random.Random(1))
    >>> [round(b.next_delay(), 2) for _ in range(6)]   # first random, then ~1, 2, 4, 8, 8
    [0.13, 0.97, 1.91, 3.4, 7.19, 7.12]

Time is passed in (loop time, seconds); nothing here sleeps.
"""

from __future__ import annotations

import random
from typing import Iterator

# Later delays are drawn from [nominal * (1 - JITTER), nominal]: never above the cap, and spread
# enough that shards of one feed do not hit the venue in the same millisecond.
JITTER = 0.2
# "Delivered data" resets allowed within any reset_after seconds (see the module docstring).
QUICK_RESETS = 3


def delays(initial: float, max_delay: float, multiplier: float,
           rng: random.Random | None = None, jitter: float = JITTER) -> Iterator[float]:
    """Infinite sequence of reconnect delays (seconds)."""
    rng = rng or random.Random()
    initial = max(0.0, initial)
    max_delay = max(initial, max_delay)
    yield rng.uniform(0.0, initial)
    nominal = initial
    while True:
        capped = min(nominal, max_delay)
        yield rng.uniform(capped * (1.0 - jitter), capped)
        if nominal < max_delay:
            nominal *= max(multiplier, 1.0)


class Backoff:
    """Delay generator with the "reset after a good connection" rule."""

    def __init__(self, initial: float, max_delay: float, multiplier: float = 2.0,
                 reset_after: float = 30.0, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.max_delay = max(initial, max_delay)
        self.multiplier = multiplier
        self.reset_after = reset_after
        self._rng = rng or random.Random()
        self._delays = self._fresh()
        self.attempts = 0  # consecutive failures since the last reset
        self._quick: list[float] = []  # loop times of the recent "delivered data" resets

    def _fresh(self) -> Iterator[float]:
        return delays(self.initial, self.max_delay, self.multiplier, self._rng)

    def next_delay(self) -> float:
        self.attempts += 1
        return next(self._delays)

    def cap(self) -> float:
        """The longest delay: used after a fatal error, when retrying soon would not help."""
        return self.max_delay

    def connection_ended(self, uptime: float, delivered: bool = False, now: float = 0.0) -> bool:
        """Report how the last connection went; True if that started the sequence over.

        ``uptime``: seconds it stayed open (0 for a connect that failed); ``delivered``: the
        venue acknowledged a subscription or sent an accepted update on it; ``now``: loop time,
        to allow ``QUICK_RESETS`` "delivered" resets per ``reset_after`` (the module docstring).
        """
        if uptime >= self.reset_after:
            self.reset()
            return True
        if delivered:
            self._quick = [t for t in self._quick if now - t < self.reset_after]
            if len(self._quick) < QUICK_RESETS:
                self._quick.append(now)
                self.reset()
                return True
        return False

    def reset(self) -> None:
        self._delays = self._fresh()
        self.attempts = 0
