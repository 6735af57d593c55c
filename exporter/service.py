"""The running exporter minus HTTP: the book, one runner per feed, the sweeper, the watchlist.

    service = Service(config, clock)       # builds Book + FeedRunners (nothing runs yet)
    await service.start()                  # connects every feed, starts the sweeper/watchlist
    service.book.feeds["stocks"]           # what the HTTP server renders
    service.runners["stocks"].add_symbols(["NVDA"])
    await service.stop()                   # sockets closed (reason "shutdown"), tasks awaited

The sweeper wakes every ``sweep_interval`` seconds (loop time), classifies every symbol with the
injected clock (``book.sweep``), logs each state change once at INFO and asks the feed's runner
to resubscribe a symbol that turned critical (once per critical period: only the transition into
critical triggers it). Health is still classified at read time by the collector; the sweep only
produces the transition events.

Service is generic over feed kinds: every adapter gets its feed's ``FeedBook``. The one
exception is the ``trading:`` section, whose tracker must exist before the ``trading`` feed's
adapter runs; it is attached here when configured (``exporter.trading.tracker.attach``).

Sharded (``Service(config, clock, shard=Shard(1, 3))``, ``exporter/sharding.py``): the service
runs its shard's share of ``config`` (``service.config``) and keeps the feeds it holds no symbol
of on standby (``service.standby``): no book, no runner, no connection, until a trigger file for
a symbol this shard owns brings one up.
"""

from __future__ import annotations

import asyncio
import logging

from exporter.book import CRITICAL, Book, FeedBook, Transition
from exporter.clock import SystemClock
from exporter.config import Config, FeedConfig
from exporter.feeds.runner import FeedRunner
from exporter.feeds.watchlist import Watchlist
from exporter.markets import ending_within
from exporter.sharding import Shard
from exporter.trading.tracker import attach as attach_tracker, detach as detach_tracker

log = logging.getLogger(__name__)

# A market calendar in use that stops covering within this long is warned about at start-up
# (feedwatch_market_calendar_end_timestamp_seconds carries the same date for the alert rules).
CALENDAR_WARNING_HORIZON = 365 * 86400.0

# Past this many state changes in one sweep, one summary line replaces the per-symbol lines
# (a market close turns every symbol "closed" at once).
MAX_TRANSITION_LINES = 20


class Service:
    def __init__(self, config: Config, clock: SystemClock | None = None, sweep_interval: float = 1.0,
                 shard: Shard = Shard()) -> None:
        self.shard = shard
        share = shard.share(config)
        self.config = config = share.config
        self.clock = clock or SystemClock()
        self.sweep_interval = sweep_interval
        self.book = Book(config.feeds, self.clock.time())
        self.runners: dict[str, FeedRunner] = {
            feed.name: FeedRunner(feed, self.book.feeds[feed.name], self.clock) for feed in config.feeds
        }
        self.standby = StandbyFeeds(self, share.standby)
        self.watchlist = (Watchlist(config.watchlist, self.runners, self.clock, owns=shard.owns, standby=self.standby)
                          if config.watchlist.trigger_dir else None)
        self._sweeper: asyncio.Task[None] | None = None
        self._resubscribes: set[asyncio.Task[bool]] = set()
        self._trading_attached = False

    async def start(self) -> None:
        if self.config.trading is not None:
            # The tracker the trading feed delivers to must exist before its adapter runs.
            attach_tracker(self.config, self.clock.time())
            self._trading_attached = True
        for runner in self.runners.values():
            await runner.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="feedwatch-sweeper")
        if self.watchlist is not None:
            await self.watchlist.start()
        where = f" (shard {self.shard}; {len(self.standby.configs)} feed(s) on standby)" if self.shard.sharded else ""
        log.info("watching %d feed(s), %d symbol(s)%s", len(self.runners), self.book.symbol_count(), where)
        self.warn_calendars_ending()

    def warn_calendars_ending(self) -> None:
        """One warning per market calendar in use whose holiday table ends within a year."""
        now = self.clock.time()
        for cal in ending_within((feed.calendar for feed in self.book.feeds.values()), now, CALENDAR_WARNING_HORIZON):
            end = cal.end_timestamp or now
            left = f"{int((end - now) // 86400)} day(s) left" if end > now else "already past"
            remedy = ("extend its holidays and holidays_until in the config" if cal.source == "config"
                      else "upgrade feedwatch, whose calendars are regenerated from exchange_calendars")
            log.warning("market calendar %s knows holidays only up to %s (%s): after that its holidays and "
                        "early closes read as trading days; %s", cal.name, cal.end, left, remedy)

    async def stop(self) -> None:
        if self.watchlist is not None:
            await self.watchlist.stop()
        tasks = [t for t in (self._sweeper, *self._resubscribes) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._sweeper = None
        await asyncio.gather(*(runner.stop() for runner in list(self.runners.values())))
        if self._trading_attached:
            detach_tracker(self.config)
            self._trading_attached = False

    def sweep(self) -> list[Transition]:
        """Classify every symbol now; log and act on the changes (the sweeper calls this)."""
        changes = self.book.sweep(self.clock.time())
        for change in changes[:MAX_TRANSITION_LINES]:
            log.info("%s", change.describe())
        if len(changes) > MAX_TRANSITION_LINES:
            log.info("... and %d more state changes in this sweep", len(changes) - MAX_TRANSITION_LINES)
        for change in changes:
            if change.new == CRITICAL:
                runner = self.runners.get(change.feed)
                if runner is not None:
                    task = asyncio.create_task(runner.resubscribe(change.symbol))
                    self._resubscribes.add(task)
                    task.add_done_callback(self._resubscribes.discard)
        return changes

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                self.sweep()
            except Exception:  # a bug here must not stop the sweeps (or the process)
                log.exception("sweep failed")


class StandbyFeeds:
    """Feeds this shard holds no configured symbol of (``watchlist.Standby``).

    ``feed in standby`` says whether a feed is one of them (up or not); ``activate`` gives it a
    book and a runner, so its trigger symbols can be added; ``deactivate`` closes its connection
    and drops its book (its series leave /metrics) once its last trigger symbol is gone.
    """

    def __init__(self, service: Service, configs: "dict[str, FeedConfig]") -> None:
        self.service = service
        self.configs = configs

    def __contains__(self, feed: object) -> bool:
        return feed in self.configs

    async def activate(self, feed: str) -> FeedRunner:
        service = self.service
        runner = service.runners.get(feed)
        if runner is not None:
            return runner
        config = self.configs[feed]
        book = service.book.feeds[feed] = FeedBook(config, service.clock.time())
        runner = service.runners[feed] = FeedRunner(config, book, service.clock)
        await runner.start()
        return runner

    async def deactivate(self, feed: str) -> None:
        service = self.service
        runner = service.runners.pop(feed, None)
        if runner is not None:
            await runner.stop()
        service.book.feeds.pop(feed, None)
