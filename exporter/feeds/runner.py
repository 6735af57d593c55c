"""The feed runner: the only code that touches a venue's sockets.

One ``FeedRunner`` per configured feed spreads the feed's symbols over *shards* of at most
``adapter.capacity()`` symbols; each shard is one connection (label ``connection="0"``, "1",
...) served by one ``Link`` (``link.py``) at a time, with its own adapter instance.

A shard's life::

    connect -> open_messages -> (auth) -> subscribe (paced at control_rate) -> read ...
      socket ends (reason) -> classify(cause) -> backoff delay, logged once at INFO -> reconnect,
      resubscribe everything

Reconnect decisions follow python-websockets: ``classify`` is the one place that says whether
retrying soon can help; retryable failures wait the backoff delay (random first delay, growth to
``reconnect.max_delay``; reset after a connection that lasted ``reconnect.reset_after`` or that
delivered data, at most 3 such resets per ``reset_after``: ``backoff.py``); fatal
ones (a refused key, a URL the venue says does not exist) wait the full cap every time and are
logged as errors, so a misconfigured feed does not hammer the venue but recovers by itself when
the venue is fixed.

Planned reconnects are make-before-break: at the venue's connection age limit (``rollover``) or
when the venue announces maintenance (``server_shutdown``) a replacement link is opened and
subscribed while the old one keeps delivering into the same book; only once the replacement's
subscriptions are acknowledged does the old one close. Symbols added at run time are subscribed
on the live socket (a new shard when capacity is exceeded); adapters whose URL carries the
subscriptions get a make-before-break replacement instead (reason ``resharding``).

Silent-stall protection: if a socket is open (accepted by the venue or not) but no symbol of
the feed has updated for ``silence_timeout`` (book time, while the market is open), every link
reconnects with reason ``silent_stall``. A symbol that turned critical is resubscribed
(unsubscribe + subscribe) once per critical period; on an adapter whose URL carries the
subscriptions the only way is a make-before-break replacement of that connection (counted as
``resharding``).

A configuration reload that leaves the feed's connection settings alone hands the runner its
new ``FeedConfig`` (``reconfigure``): links read the ping and deadline settings from it as they
go, shards get the new backoff settings, the silence watch its new timeout; the sockets stay.

Timestamps written into the book come from the injected clock; asyncio timers use the loop.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Iterable, Sequence

import aiohttp

from exporter.feeds.backoff import Backoff
from exporter.book import FeedBook
from exporter.config import FeedConfig
from exporter.feeds import registry
from exporter.feeds.link import CLOSE_TIMEOUT, ConnectFailed, Link
from exporter.feeds.transport import HandshakeRefused, tls_context
from exporter.feeds.restpoll import RestPoller

if TYPE_CHECKING:
    from exporter.clock import SystemClock
    from exporter.feeds.base import Adapter
    from exporter.feeds.recorder import FrameRing

log = logging.getLogger(__name__)

# Disconnect reasons after which retrying soon cannot help.
FATAL_REASONS = frozenset({"auth_failed"})
# Handshake statuses that mean "this URL or key is wrong", not "try later".
FATAL_STATUSES = frozenset({400, 401, 403, 404, 405, 410})
# A repeated problem of one kind is logged at most once per this many seconds (loop time).
PROBLEM_LOG_INTERVAL = 60.0
# A resubscription's log line names this many symbols, then says how many more.
RESUBSCRIBE_LOG_SYMBOLS = 20


def classify(cause: BaseException | str | None) -> bool:
    """True if the failure is retryable (retry after the backoff delay), False if fatal.

    ``cause`` is the exception that ended the connection, or the disconnect reason when the
    connection ended without one (a close signal, an auth refusal, a heartbeat timeout).
    """
    if cause is None:
        return True
    if isinstance(cause, str):
        return cause not in FATAL_REASONS
    if isinstance(cause, ConnectFailed) and cause.__cause__ is not None:
        return classify(cause.__cause__)
    if isinstance(cause, (aiohttp.WSServerHandshakeError, HandshakeRefused)):
        return cause.status not in FATAL_STATUSES
    if isinstance(cause, (aiohttp.InvalidURL, ssl.SSLCertVerificationError)):
        return False  # a config mistake: the same URL or certificate fails the same way again
    if isinstance(cause, ValueError):
        return False
    # Refused, reset, DNS, timeouts, 5xx, anything unknown: the venue or network may recover.
    return True


class ProblemLog:
    """Logs each kind of problem once, then at most once per interval with a repeat count."""

    def __init__(self, feed: str, interval: float = PROBLEM_LOG_INTERVAL) -> None:
        self.feed = feed
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def report(self, kind: str, message: str, what: str = "error", **fields: object) -> None:
        """Log ``message`` unless a ``kind`` ``what`` (error, rejected update) was logged within
        the interval; the next line that is logged says how many were held back. A venue's words
        may be in ``message`` (the log formatter escapes them); the feed, the kind and ``fields``
        (connection, reason, ...) go out as log fields."""
        now = asyncio.get_running_loop().time()
        key = (what, kind)
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        repeats = self._suppressed.pop(key, 0)
        more = f" ({repeats} more {kind} {what}(s) since the last report)" if repeats else ""
        log.warning("feed %s: %s %s: %s%s", self.feed, kind, what, message, more,
                    extra={"feed": self.feed, "kind": kind, "problem": what, **fields,
                           **({"suppressed": repeats} if repeats else {})})


class Shard:
    """One connection slot: a set of symbols and the link serving them, reconnected forever."""

    def __init__(self, runner: "FeedRunner", name: str, symbols: Iterable[str]) -> None:
        self.runner = runner
        self.name = name
        self.symbols: dict[str, None] = dict.fromkeys(symbols)  # ordered set
        self.link: Link | None = None
        self.successor: Link | None = None   # a make-before-break replacement in progress
        self.retired = False
        c = runner.config.reconnect
        self.backoff = Backoff(c.initial_delay, c.max_delay, c.multiplier, c.reset_after)
        self._wake = asyncio.Event()
        self._replacing: asyncio.Task[None] | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return f"{self.runner.feed.name}[{self.name}]"

    @property
    def fields(self) -> dict[str, str]:
        """This connection slot as log fields (``extra=``)."""
        return {"feed": self.runner.feed.name, "connection": self.name}

    def start(self) -> None:
        self.task = asyncio.create_task(self._supervise(), name=f"shard {self.label}")

    @property
    def stopping(self) -> bool:
        return self.runner.stopping or self.retired

    async def _supervise(self) -> None:
        runner, feed = self.runner, self.runner.feed
        while not self.stopping:
            link = self.link = Link(self, primary=True)
            while True:
                await asyncio.wait({link.task})
                if self.link is not link:      # replaced while it was alive: follow the new one
                    link = self.link  # type: ignore[assignment]
                    continue
                successor = self.successor
                if successor is not None and not self.stopping:
                    # The old socket died while its replacement was being prepared: adopt it.
                    if await successor.wait_ready(runner.replacement_timeout) and self.successor is successor:
                        self.successor = None
                        self.link = successor
                        successor.promote(runner.clock.time())
                        link = successor
                        continue
                    if self.successor is successor:
                        self.successor = None
                        successor.close("shutdown")
                break
            if self.stopping:
                return
            self.backoff.connection_ended(link.uptime(), link.delivered, asyncio.get_running_loop().time())
            cause = link.cause if link.cause is not None else link.reason
            retryable = classify(cause)
            delay = self.backoff.next_delay() if retryable else self.backoff.cap()
            feed.reconnect_attempts += 1
            why = link.reason if link.opened_at is not None else f"connect failed: {_describe(link.cause)}"
            if link.opened_at is not None and link.cause is not None:
                why = f"{why}: {_describe(link.cause)}"
            if link.close_detail:   # the venue's close code and text; a close that failed
                why = f"{why}: {link.close_detail}"
            fields = {**self.fields, "reason": link.reason or "connect_failed", "delay": round(delay, 3),
                      "attempt": self.backoff.attempts}
            if link.cause is not None:
                fields["error"] = _describe(link.cause)
            if retryable:
                log.info("%s: reconnecting in %.2fs (%s; attempt %d)", self.label, delay, why, self.backoff.attempts,
                         extra=fields)
            else:
                log.error("%s: %s; retrying soon will not help, next attempt in %.1fs", self.label, why, delay,
                          extra=fields)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    def replace_link(self, old: Link, reason: str) -> None:
        """Start a make-before-break replacement of ``old`` (no-op if one is under way)."""
        if self.stopping or self._replacing is not None or self.link is not old:
            return
        self._replacing = asyncio.create_task(self._replace(old, reason), name=f"replace {self.label}")
        self._replacing.add_done_callback(self._replaced)

    def _replaced(self, task: asyncio.Task[None]) -> None:
        self._replacing = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s: replacement failed: %r", self.label, task.exception(), exc_info=task.exception(),
                        extra=self.fields)

    async def _replace(self, old: Link, reason: str) -> None:
        runner = self.runner
        log.info("%s: opening a replacement connection (%s)", self.label, reason, extra={**self.fields, "reason": reason})
        successor = self.successor = Link(self, primary=False)
        ready = await successor.wait_ready(runner.replacement_timeout)
        if self.successor is not successor:
            return  # the supervisor adopted it (the old socket died meanwhile) or we are stopping
        self.successor = None
        if ready and self.link is old and old.is_open:
            now = runner.clock.time()
            # Book order matters: count the old one's planned disconnect, then the new connect,
            # with no await between, so no reader ever sees the connection down.
            old.primary = False
            runner.feed.disconnected(self.name, reason, now)
            old.close(reason)
            self.link = successor
            successor.promote(now)
            log.info("%s: switched to the replacement connection (%s)", self.label, reason,
                     extra={**self.fields, "reason": reason})
            return
        successor.close("shutdown")
        log.warning("%s: replacement connection not ready within %.0fs (%s)", self.label,
                    runner.replacement_timeout, reason, extra={**self.fields, "reason": reason})
        if reason != "rollover" and self.link is old:
            old.close(reason)  # planned but cannot overlap: plain reconnect

    # --- symbols at run time -------------------------------------------------------------------

    async def add(self, symbols: Sequence[str]) -> None:
        self.symbols.update(dict.fromkeys(symbols))
        await self._follow_symbols(symbols, subscribe=True)

    async def remove(self, symbols: Sequence[str]) -> None:
        for symbol in symbols:
            self.symbols.pop(symbol, None)
        await self._follow_symbols(symbols, subscribe=False)

    async def _follow_symbols(self, symbols: Sequence[str], subscribe: bool) -> None:
        """Bring the open link(s) in line with ``self.symbols`` after ``symbols`` were added or removed."""
        self._sync_connection_symbols()
        link = self.link
        if link is None or not link.is_open:
            if subscribe:
                self._wake.set()  # a waiting reconnect may as well go now
            return
        if link.adapter.subscribed_in_url():
            self.replace_link(link, "resharding")
            return
        # A replacement past its subscribe step would otherwise take over without the change; a
        # link still before its subscribe step subscribes the whole (updated) set itself.
        for live in (link, self.successor):
            if live is not None and live.live:
                await (live.subscribe(symbols) if subscribe else live.unsubscribe(symbols))

    async def resubscribe(self, symbols: Sequence[str]) -> None:
        link = self.link
        if link is None or not link.is_open or not link.live:
            return  # a reconnect is coming anyway, and subscribes everything
        if link.adapter.subscribed_in_url():
            self.replace_link(link, "resharding")  # a fresh URL subscription is the only way
        else:
            await link.resubscribe(symbols)

    def _sync_connection_symbols(self) -> None:
        link = self.link
        if link is not None and link.primary and link.opened_at is not None:
            self.runner.feed.connection(self.name).symbols = tuple(self.symbols)

    # --- stopping ------------------------------------------------------------------------------

    async def stop(self, reason: str = "shutdown") -> None:
        """Close the socket(s) with ``reason`` and wait for the supervisor to finish."""
        self.retired = True
        self._wake.set()
        if self._replacing is not None:
            self._replacing.cancel()
        for link in (self.successor, self.link):
            if link is not None:
                link.close(reason)
        tasks = {t for t in (self.task, *(l.task for l in (self.link, self.successor) if l)) if t}
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT + 1.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)


class FeedRunner:
    """Runs one feed: its shards, run-time symbol changes and the silent-stall watch."""

    def __init__(self, config: FeedConfig, feed: FeedBook, clock: "SystemClock",
                 adapter_class: type["Adapter"] | None = None) -> None:
        self.config = config
        self.feed = feed
        self.clock = clock
        cls = adapter_class or registry.get(config.kind)
        if cls is None:
            raise ValueError(f"feed {config.name}: unknown kind {config.kind!r}")
        self.adapter_class = cls
        self.capacity = cls(config, feed, "0").capacity()
        self.shards: dict[str, Shard] = {}
        self.stopping = False
        self.problems = ProblemLog(config.name)
        # A replacement link must be subscribed within this long, or the switch is abandoned.
        self.replacement_timeout = max(5.0, 3 * config.connect_timeout)
        self.session: aiohttp.ClientSession | None = None
        self._tls: ssl.SSLContext | None = None
        # The feed's frame recorder ring (recorder.py), set by the service when recording is on.
        self.recording: "FrameRing | None" = None
        self._up_since = 0.0   # book time of the latest (re)connect: silent-stall reference
        self._watch: asyncio.Task[None] | None = None
        self._resubscribed: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self.rest: RestPoller | None = None   # the REST fallback, when rest.enabled

    def tls_context(self) -> ssl.SSLContext:
        """How this feed's links verify a wss:// venue (``transport.tls_context``), made on the
        first wss:// connection and kept: loading the trust store is blocking file I/O."""
        if self._tls is None:
            self._tls = tls_context()
        return self._tls

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        _warn_about_liveness(self.config)
        # limit=0: a feed with many shards must not queue behind aiohttp's connection pool cap.
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        symbols = list(self.feed.symbols)
        chunks = self._chunks(symbols) or [[]]  # a feed with no symbols still connects (trading)
        for chunk in chunks:
            self._new_shard(chunk)
        if self.config.silence_timeout > 0:
            self._watch = asyncio.create_task(self._silence_watch(), name=f"silence {self.feed.name}")
        self._start_rest()

    def _start_rest(self) -> None:
        if self.config.rest.enabled:
            self.rest = RestPoller(self)
            self.rest.start()

    async def stop(self, reason: str = "shutdown") -> None:
        """Close every socket with ``reason`` (``shutdown``; ``reload`` for a feed restarted by a reload)."""
        self.stopping = True
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        if self.rest is not None:
            await self.rest.stop()
            self.rest = None
        await asyncio.gather(*(shard.stop(reason) for shard in list(self.shards.values())))
        if self.session is not None:
            await self.session.close()

    async def reconfigure_rest(self) -> None:
        """After ``reconfigure``: a changed ``rest:`` section restarts the REST poller."""
        if self.rest is not None and self.rest.venue.config.rest == self.config.rest:
            self.rest.venue.config = self.config
            return
        if self.rest is not None:
            await self.rest.stop()
            self.rest = None
        self._start_rest()

    def reconfigure(self, config: FeedConfig) -> None:
        """A reloaded config whose connection settings (url, kind, credentials, venue keys,
        connect timeout) are unchanged: take it without touching the sockets (the REST poller
        follows in ``reconfigure_rest``)."""
        old, self.config = self.config, config
        if (config.ping_interval, config.heartbeat_timeout) != (old.ping_interval, old.heartbeat_timeout):
            _warn_about_liveness(config)
        if config.reconnect != old.reconnect:
            c = config.reconnect
            for shard in self.shards.values():
                shard.backoff = Backoff(c.initial_delay, c.max_delay, c.multiplier, c.reset_after)
        if config.silence_timeout > 0 and self._watch is None:
            self._watch = asyncio.create_task(self._silence_watch(), name=f"silence {self.feed.name}")
        elif config.silence_timeout <= 0 and self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def note_connected(self, now: float) -> None:
        self._up_since = now

    def receive_backlog(self) -> int:
        """Bytes received on the feed's sockets and not yet processed (the sweep samples it for
        ``FeedBook.sample_lag``): every open link's, a make-before-break replacement's included."""
        return sum(link.receive_backlog() for shard in self.shards.values()
                   for link in (shard.link, shard.successor) if link is not None)

    # --- symbols at run time -------------------------------------------------------------------

    def symbols(self) -> list[str]:
        return [s for shard in self.shards.values() for s in shard.symbols]

    async def add_symbols(self, symbols: Iterable[str], configured: bool = False) -> list[str]:
        """Watch more symbols without reconnecting; returns the ones that were new.

        Run-time additions (trigger files, the watchlist API) pass the feed's gate
        (``FeedBook.admit``): impossible names and symbols past ``max_symbols`` are refused,
        counted and logged here in one line. ``configured=True``: symbols from the config, which
        the loader already held to the limits, are always taken.
        """
        return (await self.admit_symbols(symbols, configured))[0]

    async def admit_symbols(self, symbols: Iterable[str],
                            configured: bool = False) -> tuple[list[str], dict[str, str]]:
        """``add_symbols`` that also returns the refused symbols with their reason."""
        async with self._lock:
            have = set(self.symbols())
            candidates = [s for s in dict.fromkeys(symbols) if s not in have]
            if not candidates:
                return [], {}
            now = self.clock.time()
            refused: dict[str, str] = {}
            if configured:
                new = candidates
                for symbol in new:
                    self.feed.add_symbol(symbol, now)
            else:
                # Symbols already in the book (a stopped shard's) count as present: admit skips them.
                new, refused = self.feed.admit(candidates, now)
                new += [s for s in candidates if s in self.feed.symbols and s not in new]
                if refused:
                    self._report_refused(refused)
            if not new:
                return [], refused
            pending = list(new)
            for shard in list(self.shards.values()):
                room = len(pending) if self.capacity is None else self.capacity - len(shard.symbols)
                if room > 0 and pending:
                    take, pending = pending[:room], pending[room:]
                    await shard.add(take)
            for chunk in self._chunks(pending):
                self._new_shard(chunk)
            log.info("feed %s: watching %s", self.feed.name, ", ".join(new), extra={"feed": self.feed.name, "symbols": new})
            return new, refused

    def _report_refused(self, refused: dict[str, str]) -> None:
        """One line per refusal batch (rate-limited per reason) saying why and what to do."""
        feed, config = self.feed, self.config
        for reason in sorted(set(refused.values())):
            names = [s for s, r in refused.items() if r == reason]
            shown = ", ".join(repr(s) for s in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            if reason == "feed_limit":
                why = (f"the feed already watches {len(feed.symbols)} symbols, its max_symbols "
                       f"({config.max_symbols}); raise it, or let trigger files expire")
            elif reason == "exporter_limit":
                budget = feed.budget
                why = (f"the exporter already watches {budget.symbol_count() if budget else '?'} symbols, "
                       f"its max_symbols ({budget.max_symbols if budget else '?'})")
            else:
                why = "not a symbol name (wildcard-looking, empty, whitespace or control characters, too long)"
            self.problems.report("symbol name" if reason == "invalid_name" else "max_symbols",
                                 f"refused {len(names)} new symbol(s) {shown}: {why}",
                                 reason=reason, symbols=names[:20])

    async def remove_symbols(self, symbols: Iterable[str]) -> list[str]:
        """Stop watching symbols (unsubscribe on the live socket); returns the ones removed."""
        async with self._lock:
            wanted = set(symbols)
            removed: list[str] = []
            for shard in list(self.shards.values()):
                mine = [s for s in shard.symbols if s in wanted]
                if not mine:
                    continue
                removed.extend(mine)
                await shard.remove(mine)
                if not shard.symbols and len(self.shards) > 1:
                    del self.shards[shard.name]
                    await shard.stop("resharding")
                    self.feed.drop_connection(shard.name)
            for symbol in removed:
                self.feed.remove_symbol(symbol)
                self._resubscribed.pop(symbol, None)
            if removed:
                log.info("feed %s: no longer watching %s", self.feed.name, ", ".join(removed),
                         extra={"feed": self.feed.name, "symbols": removed})
            return removed

    async def resubscribe(self, symbols: Sequence[str]) -> list[str]:
        """Resubscribe symbols that went critical, each once per critical period (until it
        updates again); returns those resubscribed. One sweep's critical symbols come together:
        one unsubscribe and one subscribe per shard and one log line for all of them, not two
        control messages and a line per symbol (a whole feed going critical at once would queue
        thousands behind the venue's control-message rate)."""
        by_shard: dict[Shard, list[str]] = {}
        for symbol in symbols:
            state = self.feed.symbols.get(symbol)
            if state is None or self._resubscribed.get(symbol) == state.updates:
                continue  # gone, or already tried and nothing arrived since
            for shard in self.shards.values():
                if symbol in shard.symbols:
                    self._resubscribed[symbol] = state.updates
                    by_shard.setdefault(shard, []).append(symbol)
                    break
        done = sorted(s for batch in by_shard.values() for s in batch)
        if not done:
            return done
        shown = ", ".join(done[:RESUBSCRIBE_LOG_SYMBOLS]) + (
            f" and {len(done) - RESUBSCRIBE_LOG_SYMBOLS} more" if len(done) > RESUBSCRIBE_LOG_SYMBOLS else "")
        log.info("feed %s: resubscribing %d critical symbol(s): %s", self.feed.name, len(done), shown,
                 extra={"feed": self.feed.name, "symbols": done[:RESUBSCRIBE_LOG_SYMBOLS], "count": len(done),
                        "reason": "critical"})
        await asyncio.gather(*(shard.resubscribe(batch) for shard, batch in by_shard.items()))
        return done

    # --- internals -----------------------------------------------------------------------------

    def _chunks(self, symbols: list[str]) -> list[list[str]]:
        if not symbols:
            return []
        size = self.capacity or len(symbols)
        return [symbols[i:i + size] for i in range(0, len(symbols), size)]

    def _new_shard(self, symbols: list[str]) -> Shard:
        n = 0
        while str(n) in self.shards:
            n += 1
        shard = self.shards[str(n)] = Shard(self, str(n), symbols)
        shard.start()
        return shard

    async def _silence_watch(self) -> None:
        """Reconnect a feed whose socket is up but whose symbols all went quiet."""
        feed = self.feed
        while True:
            timeout = self.config.silence_timeout  # read each time: a reload may change it
            await asyncio.sleep(min(0.25, max(timeout / 4, 0.01)))
            # An open socket, accepted or not: one the venue never answers is reconnected too.
            if not feed.symbols or not any(shard.link is not None and shard.link.is_open
                                           for shard in self.shards.values()):
                continue
            now = self.clock.time()
            if not feed.calendar.is_open(now):
                continue
            reference = max(feed.last_update, self._up_since, feed.session_start)
            silent = now - reference
            if silent <= timeout:
                continue
            log.warning("feed %s: connected but no update for %.0fs: reconnecting (silent_stall)",
                        feed.name, silent, extra={"feed": feed.name, "reason": "silent_stall", "silence": round(silent, 3)})
            self._up_since = now  # one reconnect per silent period
            for shard in self.shards.values():
                if shard.link is not None and shard.link.is_open:
                    shard.link.close("silent_stall")


def _warn_about_liveness(config: FeedConfig) -> None:
    """Say once if a quiet but healthy connection could be cut between two of our pings."""
    ping, deadline = config.ping_interval, config.heartbeat_timeout
    if ping > 0 and deadline > 0 and ping > 0.5 * deadline:
        log.warning("feed %s: ping_interval (%gs) is more than half of heartbeat_timeout (%gs): a quiet "
                    "connection may be cut between two pongs; keep it at most about 40 %% of the deadline",
                    config.name, ping, deadline, extra={"feed": config.name})


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown"
    if isinstance(exc, ConnectFailed) and exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
