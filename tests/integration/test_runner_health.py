"""Runner + book over a real socket: a stalled symbol's health, critical resubscription.

The socket is real (simulator on 127.0.0.1); time in the book is a FakeClock that the test moves,
so states change exactly when the test says and nothing sleeps for a fixed time.
"""

from __future__ import annotations

import logging

from exporter.book import CRITICAL, DEGRADED, HEALTHY, STALE
from tests.integration.feedharness import simulated_feed

THRESHOLDS = {"degraded": "10s", "stale": "20s", "critical": "60s"}


def state_of(h, symbol, clock):
    feed = h.feed
    return feed.classify(feed.symbols[symbol], clock.time())


async def test_stalled_symbol_goes_degraded_then_stale_and_recovers_on_resume(clock):
    async with simulated_feed(clock, top={"thresholds": THRESHOLDS}) as h:
        await h.wait(lambda: h.acked("AAPL", "MSFT"), "subscriptions acknowledged")
        await h.flowing("AAPL", "MSFT")
        assert state_of(h, "AAPL", clock) == HEALTHY

        h.sim.fault("stall", "AAPL")
        await h.settled("AAPL")           # every AAPL update the simulator sent has landed
        stalled_at = h.feed.symbols["AAPL"].last_update

        clock.set(stalled_at + 12)        # past degraded (10 s), before stale (20 s)
        assert state_of(h, "AAPL", clock) == DEGRADED
        # MSFT keeps trading: its next update (stamped with the moved clock) makes it healthy.
        await h.wait(lambda: state_of(h, "MSFT", clock) == HEALTHY, "MSFT healthy while AAPL stalls")

        clock.set(stalled_at + 25)        # past stale
        assert state_of(h, "AAPL", clock) == STALE
        # The sweeper saw both changes and logged them as transitions.
        await h.wait(lambda: h.feed.symbols["AAPL"].last_state == STALE, "sweeper saw AAPL stale")

        h.sim.fault("resume", "AAPL")
        await h.wait(lambda: state_of(h, "AAPL", clock) == HEALTHY, "AAPL healthy after resume")
        await h.wait(lambda: h.feed.symbols["AAPL"].last_state == HEALTHY, "sweeper saw AAPL healthy")
        assert h.feed.connects == 1       # all of it on one connection: no reconnect involved


async def test_critical_symbol_is_resubscribed_once_per_critical_period(clock):
    # AAPL alone: moving the clock past critical would make any other symbol critical too until
    # its next update lands, and a sweep in between resubscribes it as well (two more control
    # messages than counted here: seen on a loaded machine).
    async with simulated_feed(clock, symbols=("AAPL",), top={"thresholds": THRESHOLDS}) as h:
        await h.wait(lambda: h.acked("AAPL"), "subscription acknowledged")
        await h.flowing("AAPL")
        h.sim.fault("stall", "AAPL")
        await h.settled("AAPL")
        control_before = h.sim.stats.control_received

        clock.set(h.feed.symbols["AAPL"].last_update + 61)
        await h.wait(lambda: h.feed.symbols["AAPL"].last_state == CRITICAL, "sweeper saw AAPL critical")
        # Resubscription = one unsubscribe and one subscribe message; the venue acks it again.
        await h.wait(lambda: h.sim.stats.control_received == control_before + 2, "unsubscribe + subscribe")
        await h.wait(lambda: h.acked("AAPL"), "AAPL re-acknowledged")
        assert h.feed.connects == 1

        # Still critical, more sweeps: no second resubscription in the same critical period.
        sweeps = h.service.sweep  # run a few sweeps by hand as well as the background ones
        for _ in range(5):
            sweeps()
        clock.advance(120)
        for _ in range(5):
            sweeps()
        assert state_of(h, "AAPL", clock) == CRITICAL
        assert h.sim.stats.control_received == control_before + 2


async def test_symbols_critical_in_one_sweep_are_resubscribed_together(clock, caplog):
    """A feed whose symbols all go critical at once (the venue stops sending on a live socket)
    resubscribes them in one unsubscribe and one subscribe, logged once: not a task, two
    control messages and a log line per symbol (100,000 symbols made 100,000 of each, queued
    behind the venue's control-message rate)."""
    async with simulated_feed(clock, symbols=("AAPL", "MSFT", "IBM"), top={"thresholds": THRESHOLDS}) as h:
        await h.wait(lambda: h.acked("AAPL", "MSFT", "IBM"), "subscriptions acknowledged")
        await h.flowing("AAPL", "MSFT", "IBM")
        for symbol in ("AAPL", "MSFT", "IBM"):
            h.sim.fault("stall", symbol)
        for symbol in ("AAPL", "MSFT", "IBM"):
            await h.settled(symbol)
        control_before = h.sim.stats.control_received
        caplog.set_level(logging.INFO, logger="exporter.feeds.runner")
        caplog.clear()

        latest = max(s.last_update for s in h.feed.symbols.values())
        clock.set(latest + 61)   # every symbol past critical before the next sweep
        await h.wait(lambda: all(s.last_state == CRITICAL for s in h.feed.symbols.values()),
                     "sweeper saw all three critical")
        # The acknowledgements from the first subscription still stand until the unsubscribe
        # lands, so wait for the control messages themselves, then for the venue's new acks.
        await h.wait(lambda: h.sim.stats.control_received >= control_before + 2, "unsubscribe + subscribe")
        await h.wait(lambda: h.acked("AAPL", "MSFT", "IBM"), "all three re-acknowledged")
        assert h.sim.stats.control_received == control_before + 2   # one unsubscribe, one subscribe
        lines = [r.getMessage() for r in caplog.records if "resubscribing" in r.getMessage()]
        assert lines == ["feed stocks: resubscribing 3 critical symbol(s): AAPL, IBM, MSFT"], lines
