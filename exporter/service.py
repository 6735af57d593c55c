"""The running exporter minus HTTP: the book, one runner per feed, the sweeper, the watchlist.

    service = Service(config, clock)       # builds Book + FeedRunners (nothing runs yet)
    await service.start()                  # connects every feed, starts the sweeper/watchlist
    service.book.feeds["stocks"]           # what the HTTP server renders
    service.runners["stocks"].add_symbols(["NVDA"])
    await service.stop()                   # sockets closed (reason "shutdown"), tasks awaited

With the journal on (the default), every state change, connection change, trading breach and
config reload also goes to the incident journal (``exporter/journal``), and each feed's frames
to its frame recorder ring (``exporter/feeds/recorder.py``) so an incident can be saved with
what the venue sent before it. With a ``tick_sink:`` section, every accepted price also goes to
the tick sink (``exporter/ticks``). ``renderers`` are their /metrics renderers (the web app adds them).

The sweeper wakes every ``sweep_interval`` seconds (loop time), classifies every symbol with the
injected clock (``book.sweep``), logs each state change once at INFO and asks the feed's runner
to resubscribe a symbol that turned critical (once per critical period: only the transition into
critical triggers it). Health is still classified at read time by the collector; the sweep only
produces the transition events.

Service is generic over feed kinds: every adapter gets its feed's ``FeedBook``. The one
exception is the ``trading:`` section, whose tracker must exist before the ``trading`` feed's
adapter runs; it is attached here when configured (``exporter.trading.tracker.attach``).

``await service.apply(config)`` puts a reloaded configuration into effect (``exporter/reload.py``
says what happens to each feed); ``service.check(config)`` first names what only a restart can
change here (adding or removing the trading section, its state file).

Sharded (``Service(config, clock, shard=Shard(1, 3))``, ``exporter/sharding.py``): the service
runs its shard's share of ``config`` (``service.config``) and keeps the feeds it holds no symbol
of on standby (``service.standby``): no book, no runner, no connection, until a trigger file for
a symbol this shard owns brings one up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from exporter.book import CRITICAL, Book, TickTape, Transition
from exporter.clock import SystemClock
from exporter.config import Config, FeedConfig
from exporter.feeds.recorder import Recorder
from exporter.feeds.runner import FeedRunner
from exporter.feeds.watchlist import Watchlist
from exporter.journal.collector import JournalCollector
from exporter.journal.config import JournalConfig, open_sink, recordings_dir, resolve_path
from exporter.journal.journal import Journal
from exporter.markets import ending_within
from exporter.reload import feed_changes
from exporter.sharding import Shard
from exporter.slices import run_sliced
from exporter.ticks.collector import TickSinkCollector
from exporter.ticks.config import TickSinkConfig, open_backend, resolve as resolve_ticks
from exporter.ticks.sink import TickSink
from exporter.trading.tracker import attach as attach_tracker, detach as detach_tracker, reattach as reattach_tracker

log = logging.getLogger(__name__)

# A market calendar in use that stops covering within this long is warned about at start-up
# (feedwatch_market_calendar_end_timestamp_seconds carries the same date for the alert rules).
CALENDAR_WARNING_HORIZON = 365 * 86400.0

# Stopping waits at most this long for a write under way (frame recorder, journal phases): a
# stuck disk or database is logged and left behind, never a hung shutdown.
STOP_TIMEOUT = 5.0

# Past this many state changes in one sweep, one summary line replaces the per-symbol lines
# (a market close turns every symbol "closed" at once).
MAX_TRANSITION_LINES = 20


class Service:
    def __init__(self, config: Config, clock: SystemClock | None = None, sweep_interval: float = 1.0,
                 shard: Shard = Shard()) -> None:
        # Bound to the file's instruments: their members are placed together (exporter/sharding.py).
        self.shard = shard = shard.bound(config)
        share = shard.share(config)
        self.config = config = share.config
        self.clock = clock or SystemClock()
        self.sweep_interval = sweep_interval
        self.book = Book(config.feeds, self.clock.time(), config.instruments,
                         max_symbols=config.max_symbols)
        # Before anything builds an adapter: adapters decode trade sizes only for a tape (binance).
        self.ticks = self._tick_sink(config.tick_sink)
        self.runners: dict[str, FeedRunner] = {
            feed.name: FeedRunner(feed, self.book.feeds[feed.name], self.clock) for feed in config.feeds
        }
        self.standby = StandbyFeeds(self, share.standby)
        # Always there: trigger files when watchlist.trigger_dir is set, the admin API when
        # watchlist.api has a credential (exporter/web/watchlist_api.py calls watch/unwatch).
        # Sharded, it honours only the (feed, symbol) pairs this shard owns.
        self.watchlist = Watchlist(config.watchlist, self.runners, self.clock, self.book,
                                   shard=shard, standby=self.standby)
        self.recorder = Recorder(config.recorder, config.feeds, self.clock)
        for name, runner in self.runners.items():
            runner.recording = self.recorder.ring(name)
        self.journal = self._journal(config.journal or JournalConfig())
        self.renderers: tuple = ((self.recorder,) + ((JournalCollector(self.journal),) if self.journal else ())
                                 + ((TickSinkCollector(self.ticks),) if self.ticks else ()))
        self._recorder_task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._resubscribes: set[asyncio.Task[bool]] = set()
        self._trading_attached = False

    def _journal(self, config: JournalConfig) -> Journal | None:
        if not config.enabled:
            return None
        path = resolve_path(config, self.config.trading) if config.sink == "sqlite" else None
        sink = open_sink(config, path)
        directory = recordings_dir(config, path)
        journal = Journal(config, sink, self.clock, self.book, recorder=self.recorder, recordings_dir=directory)
        self.book.listeners.append(journal.on_transition)
        self.book.connection_listeners.append(journal.on_connection)
        return journal

    def _tick_sink(self, config: TickSinkConfig | None) -> TickSink | None:
        """The tick sink, when configured: its tape goes on the book (every feed, and feeds added later)."""
        if config is None or not config.enabled:
            return None
        journal = self.config.journal or JournalConfig()
        journal_sqlite = resolve_path(journal, self.config.trading) if journal.sink == "sqlite" else None
        target = resolve_ticks(config, journal, journal_sqlite)
        tape = TickTape(config.buffer_limit)
        self.book.attach_tape(tape)
        return TickSink(config, open_backend(config, target), tape, self.clock)

    async def start(self) -> None:
        if self.config.trading is not None:
            # The tracker the trading feed delivers to must exist before its adapter runs.
            tracker = attach_tracker(self.config, self.clock.time())
            self._trading_attached = True
            if self.journal is not None and tracker is not None:
                self.journal.tracker = tracker
                tracker.listeners.append(self.journal.on_trading)
        if self.journal is not None:
            await self.journal.start()
        if self.ticks is not None:
            await self.ticks.start()
        if self.recorder.config.enabled:
            self._recorder_task = asyncio.create_task(self.recorder.run(), name="feedwatch-recorder")
        for runner in self.runners.values():
            await runner.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="feedwatch-sweeper")
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
                        "early closes read as trading days; %s", cal.name, cal.end, left, remedy,
                        extra={"market": cal.name, "until": str(cal.end)})

    async def stop(self) -> None:
        await self.watchlist.stop()
        tasks = [t for t in (self._sweeper, *self._resubscribes) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._sweeper = None
        await asyncio.gather(*(runner.stop() for runner in list(self.runners.values())))
        if self._recorder_task is not None:
            self._recorder_task.cancel()
            await asyncio.gather(self._recorder_task, return_exceptions=True)
            self._recorder_task = None
        await self.recorder.stop(STOP_TIMEOUT)   # a continuous write under way: bounded
        if self.ticks is not None:
            await self.ticks.stop()   # after the runners: their last prices are written too (bounded)
        if self.journal is not None:
            # After the runners: their "shutdown" disconnects are journaled too.
            tracker = self.journal.tracker
            if tracker is not None and self.journal.on_trading in tracker.listeners:
                tracker.listeners.remove(self.journal.on_trading)
            await self.journal.stop(STOP_TIMEOUT)
        if self._trading_attached:
            detach_tracker(self.config)
            self._trading_attached = False

    # --- configuration reload ---------------------------------------------------------------

    def check(self, config: Config) -> list[str]:
        """What in ``config`` (the whole file) this running service cannot take without a restart."""
        old, new = self.config.trading, self.shard.share(config).config.trading
        if (old is None) != (new is None):
            return [f"trading: {'adding' if old is None else 'removing'} the trading section takes a restart "
                    f"(the push API and the state file are set up at start; the reload changed nothing)"]
        if old is not None and old.state_file != new.state_file:
            return [f"trading.state_file: changed from {old.state_file!r} to {new.state_file!r}; switching "
                    f"state files takes a restart (the reload changed nothing)"]
        # The databases, the rings, the tape and their tasks are set up at start.
        for section in ("journal", "recorder", "tick_sink"):
            if getattr(self.config, section) != getattr(config, section):
                return [f"{section}: changing this section takes a restart (the reload changed nothing)"]
        return []

    async def apply(self, config: Config) -> list[str]:
        """Put a reloaded ``config`` into effect, keeping the state of what did not change.

        ``config`` is the whole file: it is cut to this shard's share as at the start. Returns what
        changed, one line each, for the log. ``check(config)`` must be empty.
        """
        share = self.shard.share(config)
        # Run-time additions are judged by the reloaded file's instruments too.
        self.shard = self.watchlist.shard = self.shard.bound(config)
        config, now = share.config, self.clock.time()
        managed = self.watchlist.managed
        # Feeds up only for trigger files (no configured symbol on this shard) are running
        # feeds too: compared as such, those still on standby stay up with their trigger symbols.
        configured = {feed.name for feed in self.config.feeds}
        triggered = [runner.config for name, runner in self.runners.items() if name not in configured]
        keep = tuple(feed for name, feed in share.standby.items() if name in self.runners and managed.get(name))
        old = dataclasses.replace(self.config, feeds=self.config.feeds + tuple(triggered))
        new = dataclasses.replace(config, feeds=config.feeds + keep)
        done: list[str] = []
        if self._trading_attached:
            reattach_tracker(self.config, config)   # before any trading feed (re)connects
            if config.trading != self.config.trading:
                done.append("trading: accounts, limits and settings reloaded")
        changes = feed_changes(old, new)
        self.book.max_symbols = config.max_symbols
        for name in changes.removed:
            await self.runners.pop(name).stop()
            self.book.remove_feed(name)
            self.recorder.forget(name)
            managed.pop(name, None)
            done.append(f"feed {name}: removed")
        for feed, keys in changes.restarted:
            book = self.book.feeds[feed.name]
            await self.runners[feed.name].stop("reload")
            book.reconfigure(feed, now)
            book.connections.clear()  # the new runner shards its symbols afresh
            added, removed = self._follow_config_symbols(feed, now, managed.get(feed.name, set()))
            runner = self.runners[feed.name] = FeedRunner(feed, book, self.clock)
            runner.recording = self.recorder.follow(feed)   # the same ring: the frames before the change stay
            await runner.start()
            done.append(f"feed {feed.name}: reconnected ({', '.join(keys)} changed){_symbols(added, removed)}")
        for feed in changes.updated:
            runner, book = self.runners[feed.name], self.book.feeds[feed.name]
            mine = managed.get(feed.name, set())
            mine.difference_update(feed.symbols)  # now configured: no longer the watchlist's to drop
            book.reconfigure(feed, now)
            runner.reconfigure(feed)
            await runner.reconfigure_rest()
            gone = [s for s in runner.symbols() if s not in feed.symbols and s not in mine]
            removed = await runner.remove_symbols(gone) if gone else []
            added = await runner.add_symbols(feed.symbols, configured=True)
            done.append(f"feed {feed.name}: settings reloaded, connections kept{_symbols(added, removed)}")
        for feed in changes.added:
            book = self.book.add_feed(feed, now)
            runner = self.runners[feed.name] = FeedRunner(feed, book, self.clock)
            runner.recording = self.recorder.follow(feed)
            managed.setdefault(feed.name, set())
            await runner.start()
            done.append(f"feed {feed.name}: added")
        self.standby.configs = share.standby
        await self._apply_watchlist(config)
        if config.instruments != old.instruments:
            self.book.instruments = {k: dict(v) for k, v in config.instruments.items()}
            done.append("instruments: reloaded")
        self.config = config
        for line in done:
            log.info("configuration reload: %s", line)
        if changes.added or changes.restarted or changes.updated:
            self.warn_calendars_ending()   # a feed may use another calendar now
        return done

    def _follow_config_symbols(self, feed: FeedConfig, now: float, managed: set[str]) -> tuple[list[str], list[str]]:
        """Make a (stopped) feed's book watch its configured symbols plus the watchlist's."""
        book = self.book.feeds[feed.name]
        managed.difference_update(feed.symbols)
        removed = [s for s in book.symbols if s not in feed.symbols and s not in managed]
        for symbol in removed:
            book.remove_symbol(symbol)
        added = [s for s in feed.symbols if s not in book.symbols]
        for symbol in added:
            book.add_symbol(symbol, now)
        return added, removed

    async def _apply_watchlist(self, config: Config) -> None:
        """Read at every scan: directory, ttl, interval. A trigger_dir switched off drops the
        file triggers' symbols at the next scan (a feed up for them alone goes back to standby);
        the API's keep their expiry."""
        self.watchlist.config = config.watchlist
        await self.watchlist.scan()

    def sweep(self) -> list[Transition]:
        """Classify every symbol now; log and act on the changes; sample how far behind each
        feed's processing is."""
        return self._after_sweep(self.book.sweep(self._sample_lag()))

    async def sweep_sliced(self) -> list[Transition]:
        """``sweep`` in slices, the event loop running between them (the sweeper calls this
        every second)."""
        return self._after_sweep(await run_sliced(self.book.sweep_steps(self._sample_lag())))

    def _sample_lag(self) -> float:
        """Sample every feed's processing lag (once per sweep); returns the sweep's time."""
        now = self.clock.time()
        for name, runner in self.runners.items():
            feed = self.book.feeds.get(name)
            if feed is not None:
                feed.sample_lag(now, runner.receive_backlog())
        return now

    def _after_sweep(self, changes: list[Transition]) -> list[Transition]:
        for change in changes[:MAX_TRANSITION_LINES]:
            log.info("%s", change.describe(), extra=change.fields())
        if len(changes) > MAX_TRANSITION_LINES:
            log.info("... and %d more state changes in this sweep", len(changes) - MAX_TRANSITION_LINES)
        critical: dict[str, list[str]] = {}
        for change in changes:
            if change.new == CRITICAL:
                critical.setdefault(change.feed, []).append(change.symbol)
        for feed, symbols in critical.items():   # one resubscription per feed and sweep
            runner = self.runners.get(feed)
            if runner is not None:
                task = asyncio.create_task(runner.resubscribe(symbols))
                self._resubscribes.add(task)
                task.add_done_callback(self._resubscribes.discard)
        return changes

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep_sliced()
            except Exception:  # a bug here must not stop the sweeps (or the process)
                log.exception("sweep failed")


def _symbols(added: list[str], removed: list[str]) -> str:
    parts = ([f"+{', '.join(added)}"] if added else []) + ([f"-{', '.join(removed)}"] if removed else [])
    return f"; symbols {' '.join(parts)}" if parts else ""


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
        book = service.book.add_feed(config, service.clock.time())
        runner = service.runners[feed] = FeedRunner(config, book, service.clock)
        runner.recording = service.recorder.follow(config)   # recorded like a feed a reload adds
        await runner.start()
        return runner

    async def deactivate(self, feed: str) -> None:
        service = self.service
        runner = service.runners.pop(feed, None)
        if runner is not None:
            await runner.stop()
        if feed in service.book.feeds:
            service.book.remove_feed(feed)
        service.recorder.forget(feed)
