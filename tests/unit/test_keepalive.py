"""The liveness schedule at the real default settings, stepped through simulated time.

``Keepalive`` is the code the link runs (``Link._keep_alive`` sleeps until ``next_wake`` and acts
on ``step``); here a small event simulation plays the venue: its data, its own pings, and the
pongs it sends back for ours after a round trip. No sleeping: an hour of a quiet feed takes
milliseconds, so the defaults are checked by construction, not by waiting 30 s on a socket.
"""

from __future__ import annotations

import math

import pytest

from exporter.config import load_data
from exporter.feeds.binance import BinanceAdapter
from exporter.feeds.bybit import BybitAdapter
from exporter.feeds.keepalive import CHECKS_PER_TIMEOUT, Keepalive
from exporter.feeds.polygon import PolygonAdapter

FEEDS = {
    "polygon": {"name": "p", "kind": "polygon", "url": "wss://socket.polygon.io/stocks", "api_key": "k",
                "symbols": ["AAPL"]},
    "binance": {"name": "b", "kind": "binance", "url": "wss://stream.binance.com:9443", "symbols": ["BTCUSDT"]},
    "bybit": {"name": "y", "kind": "bybit", "url": "wss://stream.bybit.com/v5/public/spot", "symbols": ["BTCUSDT"]},
}
ADAPTERS = {"polygon": PolygonAdapter, "binance": BinanceAdapter, "bybit": BybitAdapter}
BINANCE_PING_EVERY = 20.0   # Binance pings every connection every 20 s
BYBIT_PING_AT_LEAST = 20.0  # Bybit wants a ping from the client at least every 20 s


def defaults(venue: str) -> tuple[float, float, bool]:
    feed = load_data({"feeds": [FEEDS[venue]]}, {}).feeds[0]
    return feed.ping_interval, feed.heartbeat_timeout, ADAPTERS[venue].server_pings


class Venue:
    """A peer on the far side: arrivals (data, its pings, pongs to ours) until it goes dark."""

    def __init__(self, data_every: float | None = None, pings_every: float | None = None,
                 rtt: float = 0.05, dark_at: float = math.inf, phase: float = 0.0) -> None:
        self.arrivals: list[float] = []
        self.dark_at = dark_at
        self.rtt = rtt
        for every in (data_every, pings_every):
            if every:
                t = phase + every
                while t < min(dark_at, 4000.0):
                    self.arrivals.append(t)
                    t += every

    def pinged(self, at: float) -> None:
        if at + self.rtt < self.dark_at:  # a dark peer answers nothing (half-open socket)
            self.arrivals.append(at + self.rtt)

    def count(self, until: float) -> int:
        return sum(1 for t in self.arrivals if t <= until)

    def last_before(self, until: float) -> float:
        return max((t for t in self.arrivals if t <= until), default=0.0)


def run(keeper: Keepalive, venue: Venue, until: float) -> tuple[float | None, list[float]]:
    """Step the keeper like the link does; (loop time it declared the socket dead, our pings)."""
    now, pings = 0.0, []
    while now < until:
        now = keeper.next_wake(now)
        ping, dead = keeper.step(now, venue.count(now))
        if dead:
            return now, pings
        if ping:
            pings.append(now)
            venue.pinged(now)
    return None, pings


@pytest.mark.parametrize("venue", sorted(FEEDS))
def test_the_defaults_give_up_a_dead_socket_within_30_seconds(venue):
    ping_interval, timeout, venue_pings = defaults(venue)
    assert Keepalive(ping_interval, timeout, venue_pings, 0.0).worst_case_detection <= 30.0
    # The peer goes dark (traffic black-holed both ways) at many points of the schedule, so the
    # last arrival falls at every phase of the keeper's checks and pings.
    for i in range(40):
        dark_at = 300.0 + i * 0.37
        peer = Venue(data_every=None, pings_every=BINANCE_PING_EVERY if venue_pings else None,
                     dark_at=dark_at, phase=i * 0.11)
        dead_at, _ = run(Keepalive(ping_interval, timeout, venue_pings, 0.0), peer, 1000.0)
        assert dead_at is not None, f"{venue}: a dark peer was never given up"
        silent = dead_at - peer.last_before(dead_at)
        assert timeout <= silent <= 30.0, (venue, dark_at, silent)


@pytest.mark.parametrize("venue", sorted(FEEDS))
@pytest.mark.parametrize("rtt", [0.05, 2.0, 8.0])
def test_the_defaults_never_cut_a_quiet_live_connection(venue, rtt):
    # No data at all for an hour (a quiet market); the venue answers every ping after rtt and,
    # if it is a venue that pings, pings every 20 s.
    ping_interval, timeout, venue_pings = defaults(venue)
    peer = Venue(pings_every=BINANCE_PING_EVERY if venue_pings else None, rtt=rtt)
    dead_at, pings = run(Keepalive(ping_interval, timeout, venue_pings, 0.0), peer, 3600.0)
    assert dead_at is None, f"{venue}: a quiet but live connection was cut at {dead_at}"
    if venue_pings:
        # Ours only fill the gaps between Binance's: at most one per Binance ping.
        assert len(pings) <= 3600.0 / BINANCE_PING_EVERY
    else:
        gaps = [b - a for a, b in zip([0.0] + pings, pings)]
        assert max(gaps) <= BYBIT_PING_AT_LEAST   # Bybit's rule, and plenty for Polygon


def test_a_venue_that_pings_and_streams_gets_no_pings_from_us():
    ping_interval, timeout, venue_pings = defaults("binance")
    assert venue_pings
    peer = Venue(data_every=0.1, pings_every=BINANCE_PING_EVERY)
    dead_at, pings = run(Keepalive(ping_interval, timeout, venue_pings, 0.0), peer, 600.0)
    assert dead_at is None and pings == []


def test_pings_to_other_venues_go_out_on_schedule_even_when_data_flows():
    # Bybit counts only pings as the client's heartbeat, not the data we receive.
    ping_interval, timeout, venue_pings = defaults("bybit")
    peer = Venue(data_every=0.1)
    _, pings = run(Keepalive(ping_interval, timeout, venue_pings, 0.0), peer, 120.0)
    assert len(pings) == pytest.approx(120.0 / ping_interval, abs=1)


def test_the_check_interval_and_bound_follow_the_timeout():
    keeper = Keepalive(0.0, 3.0, False, 0.0)
    assert keeper.check_every == pytest.approx(3.0 / CHECKS_PER_TIMEOUT)
    assert keeper.worst_case_detection == pytest.approx(3.3)
    # No deadline, no bound: the keeper only pings.
    assert Keepalive(10.0, 0.0, False, 0.0).worst_case_detection == math.inf
    dead_at, pings = run(Keepalive(10.0, 0.0, False, 0.0), Venue(dark_at=0.0), 100.0)
    assert dead_at is None and len(pings) == 10


def test_retune_applies_new_settings_from_now():
    keeper = Keepalive(10.0, 25.0, False, 0.0)
    assert keeper.step(4.0, 1) == (False, False)           # an arrival, seen at 4 s
    keeper.retune(1.0, 3.0, 5.0)
    assert keeper.next_wake(5.0) == pytest.approx(5.3)     # checks every 0.3 s now
    assert keeper.step(6.0, 1) == (True, False)            # the first ping 1 s after the retune
    assert keeper.step(7.0, 1) == (False, True)            # 3 s without an arrival: dead
