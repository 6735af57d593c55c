"""When a link pings, and when it gives a silent socket up: the liveness schedule, with no I/O.

A connection is alive while something arrives on it: a data frame, a ping or a pong. The link
counts arrivals (``Link.rx``); a ``Keepalive`` looks at that count when it wakes and answers
what to do now. Time is the event loop's clock, passed in, so the schedule is tested by stepping
numbers (tests/unit/test_keepalive.py), at the real default settings, without sleeping::

    keeper = Keepalive(ping_interval=10.0, heartbeat_timeout=25.0, venue_pings=False, now=loop.time())
    while True:
        await asyncio.sleep(keeper.next_wake(loop.time()) - loop.time())
        ping, dead = keeper.step(loop.time(), link.rx)
        if dead: close("heartbeat_timeout")
        elif ping: send a ping

The rules:

- **Our pings.** Every ``ping_interval`` (a WebSocket ping, or the adapter's own ping message).
  A venue that pings us itself (``venue_pings``, Binance every 20 s) gets a ping from us only
  when nothing at all has arrived for ``ping_interval``: its own pings usually prove the link, and
  ours fill its gaps, so a quiet socket is never cut between two of the venue's pings.
- **The deadline.** Nothing arrived for ``heartbeat_timeout``: the socket is dead (a half-open
  TCP connection, traffic black-holed both ways). An unanswered ping is exactly that: no pong.
- **The bound.** The keeper wakes at least every ``heartbeat_timeout / CHECKS_PER_TIMEOUT``, and
  at the deadline itself. When it sees the count moved, the arrival happened after its previous
  wake, so it dates it at the current wake (never earlier than it really was): a link is never
  cut while arrivals are less than ``heartbeat_timeout`` apart, and a dead one is given up at most
  ``heartbeat_timeout * (1 + 1/CHECKS_PER_TIMEOUT)`` after its last arrival
  (``worst_case_detection``: 27.5 s at the defaults, 25 s and 10 s pings).
"""

from __future__ import annotations

import math

# The deadline is checked this many times per heartbeat_timeout (the detection bound's slack).
CHECKS_PER_TIMEOUT = 10
# Without a deadline the keeper still wakes this often (pings, the rollover check).
IDLE_CHECK = 1.0
# Never sleep less than this: tests compress timeouts to milliseconds.
MIN_SLEEP = 0.005


class Keepalive:
    """The ping and deadline schedule of one link (see the module docstring)."""

    __slots__ = ("ping_interval", "heartbeat_timeout", "venue_pings", "seen", "alive_at", "next_ping")

    def __init__(self, ping_interval: float, heartbeat_timeout: float, venue_pings: bool, now: float) -> None:
        self.ping_interval = 0.0
        self.heartbeat_timeout = 0.0
        self.venue_pings = venue_pings
        self.seen = 0            # the arrival count at the last step
        self.alive_at = now      # loop time at or after the last arrival (the socket opening, at first)
        self.next_ping = math.inf
        self.retune(ping_interval, heartbeat_timeout, now)

    def retune(self, ping_interval: float, heartbeat_timeout: float, now: float) -> None:
        """New settings (a configuration reload); the next ping is counted from ``now``."""
        self.ping_interval = max(0.0, ping_interval)
        self.heartbeat_timeout = max(0.0, heartbeat_timeout)
        self.next_ping = now + self.ping_interval if self.ping_interval else math.inf

    @property
    def check_every(self) -> float:
        if self.heartbeat_timeout:
            return self.heartbeat_timeout / CHECKS_PER_TIMEOUT
        return min(IDLE_CHECK, self.ping_interval) if self.ping_interval else IDLE_CHECK

    @property
    def worst_case_detection(self) -> float:
        """Longest time from a dead socket's last arrival to giving it up (inf: no deadline)."""
        if not self.heartbeat_timeout:
            return math.inf
        return self.heartbeat_timeout + self.check_every

    def _ping_due(self) -> float:
        if self.venue_pings:  # only when the venue's own traffic left a gap
            return max(self.next_ping, self.alive_at + self.ping_interval)
        return self.next_ping

    def next_wake(self, now: float) -> float:
        """Loop time of the next step: the next check, ping or deadline, whichever comes first."""
        wake = now + self.check_every
        if self.ping_interval:
            wake = min(wake, self._ping_due())
        if self.heartbeat_timeout:
            wake = min(wake, self.alive_at + self.heartbeat_timeout)
        return max(wake, now + MIN_SLEEP)

    def step(self, now: float, rx: int) -> tuple[bool, bool]:
        """(send a ping now, the socket is dead) at loop time ``now``, ``rx`` arrivals so far."""
        if rx != self.seen:
            self.seen = rx
            self.alive_at = now
        if self.heartbeat_timeout and now - self.alive_at >= self.heartbeat_timeout:
            return False, True
        if self.ping_interval and now >= self._ping_due():
            self.next_ping = now + self.ping_interval
            return True, False
        return False, False
