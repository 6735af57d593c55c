"""Run-time watchlist: symbols watched for a while, from trigger files or the admin API.

Three sources, merged at every scan (every ``watchlist.scan_interval``) into the symbols each
feed's runner watches beside its configured ones (added and removed on the live connections,
no reconnect):

1. Per-symbol files: one directory per feed under ``watchlist.trigger_dir``, one empty file per
   symbol, watched until the file's mtime + ``watchlist.ttl``::

       triggers/
         stocks/
           NVDA        # watch NVDA on feed "stocks" until mtime + ttl

2. The price checker's files, ``triggers/immediate_*.json`` (one JSON object each)::

       {"ticker": "NVDA"}                                   # the default feed, watchlist.ttl
       {"tickers": ["NVDA", "AMD"], "feed": "stocks", "ttl": "2h"}

   ``ticker`` (a string) or ``tickers`` (a list of strings), not both; ``feed`` optional (default
   ``watchlist.default_feed``, else the only market-data feed); ``ttl`` optional, a duration
   (``"90m"``) or seconds. Other keys (a scraper's ``reason``, ``headline``...) are ignored.
   Watched until the file's mtime + ttl.

3. ``POST /api/v1/watchlist/{feed}/{symbol}`` (``watch``/``unwatch`` here; the HTTP side is
   ``exporter/web/watchlist_api.py``): watched until the request's time + ttl.

Touching a file again extends its watch; deleting it (or its expiry) ends it. Symbols listed in
the config are never added or removed here. Every new symbol passes the feed's gate
(``FeedRunner.admit_symbols``: impossible names and symbols past ``max_symbols`` are refused,
counted and logged there).

A trigger file is counted once per modification in ``Book.trigger_files`` (rendered as
``feedwatch_watchlist_trigger_files_total{result}``). One that cannot be used (not JSON, the
wrong shape, a bad ttl, a wildcard-looking symbol, a feed that does not exist) is logged once,
counted and moved to ``triggers/rejected/`` with a ``<name>.reason`` file beside it, so it is
neither retried forever nor silently ignored. Hidden files (``.name``) are ignored, so editors'
swap files do not become symbols; ``rejected`` is never read as a feed's directory.

Sharded replicas (``exporter/sharding.py``) share one trigger directory and each serves its own
admin API: each honours only the (feed, symbol) pairs its shard owns, so a symbol is added on
exactly one shard. A per-feed file or an ``immediate_*.json`` ticker another shard owns is left to
that shard (every replica reads the file and counts it accepted; an unusable one is rejected alike
everywhere, counted by the replica that moves it aside); an
API request for it is refused with 421 Misdirected Request naming the owner's shard. Caps count
this replica's symbols only: a shard's book holds its share. A feed this replica holds no
configured symbol of is on standby (``Standby``): the first symbol it owns brings the feed up, and
it goes back to standby, its connection closed, when its last run-time symbol goes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from exporter.config import WatchlistConfig, format_duration, parse_duration, symbol_problem
from exporter.sharding import Shard

if TYPE_CHECKING:
    from exporter.book import Book
    from exporter.clock import SystemClock
    from exporter.feeds.runner import FeedRunner

log = logging.getLogger(__name__)

IMMEDIATE_PREFIX = "immediate_"
IMMEDIATE_SUFFIX = ".json"
REJECTED_DIR = "rejected"
# A trigger file is a few hundred bytes; anything much larger is not one.
MAX_TRIGGER_BYTES = 64 * 1024


@dataclass
class Outcome:
    """What one scan made of one trigger file (counted and logged on the event loop)."""

    path: str
    result: str                     # a book.TRIGGER_RESULTS value
    reason: str = ""                # for the rejected ones: why, as logged and written beside it
    moved_to: str | None = None


@dataclass
class Reading:
    """One pass over the trigger directory: feed -> {symbol: expiry}, and the files' outcomes."""

    wanted: dict[str, dict[str, float]] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)   # path -> mtime_ns of the usable files

    def reject(self, outcome: "Outcome | None") -> None:
        if outcome is not None:
            self.outcomes.append(outcome)


@dataclass(frozen=True)
class Change:
    """The answer to a watchlist API request: an HTTP status and a sentence."""

    status: int
    message: str
    expires: float | None = None
    owner: int | None = None        # 421: the shard that owns the symbol


class Standby(Protocol):
    """Feeds with no symbols on this replica (sharded): the Service brings one up for a trigger.

    ``feed in standby`` is true for such a feed whether it is up or not; ``configs`` maps their
    names to their configs (no symbols).
    """

    configs: dict[str, Any]

    def __contains__(self, feed: object) -> bool: ...

    async def activate(self, feed: str) -> "FeedRunner": ...

    async def deactivate(self, feed: str) -> None: ...


class _NoStandby:
    configs: dict[str, Any] = {}

    def __contains__(self, feed: object) -> bool:
        return False

    async def activate(self, feed: str) -> "FeedRunner":
        raise KeyError(feed)

    async def deactivate(self, feed: str) -> None:
        raise KeyError(feed)


class Watchlist:
    def __init__(self, config: WatchlistConfig, runners: "dict[str, FeedRunner]", clock: "SystemClock",
                 book: "Book | None" = None, *, shard: Shard = Shard(), standby: "Standby | None" = None) -> None:
        self.config = config
        self.runners = runners
        self.clock = clock
        self.book = book
        # Sharded: only the (feed, symbol) pairs this replica's shard owns.
        self.shard = shard
        self.standby: Standby = standby if standby is not None else _NoStandby()
        # feed -> symbols the watchlist added (and so may remove)
        self.managed: dict[str, set[str]] = {name: set() for name in runners}
        # feed -> {symbol: expiry} added over the admin API
        self.api: dict[str, dict[str, float]] = {}
        self._files: dict[str, dict[str, float]] = {}   # the last scan's file triggers
        self._counted: dict[str, int] = {}                # path -> mtime_ns already counted
        self._refused: dict[str, set[str]] = {}           # feed -> wanted symbols a cap refused
        self._warned: set[str] = set()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.scan()
        self._task = asyncio.create_task(self._scan_forever(), name="feedwatch-watchlist")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def scan(self) -> None:
        """Read the trigger directory once and add/remove symbols to match it and the API's."""
        reading = await asyncio.to_thread(self._read, self.clock.time(), self._feed_names(), dict(self._counted))
        async with self._lock:
            self._count(reading.outcomes)
            self._counted = reading.seen
            self._files = reading.wanted
            await self._follow(self.clock.time())

    # --- the admin API (exporter/web/watchlist_api.py) ----------------------------------------

    async def watch(self, feed: str, symbol: str, ttl: float | None, who: str, origin: str = "") -> Change:
        """Watch ``symbol`` on ``feed`` for ``ttl`` seconds (default ``watchlist.ttl``)."""
        runner = self.runners.get(feed)
        if runner is None and feed not in self.standby:
            return self._no_feed(feed)
        problem = symbol_problem(symbol)
        if problem is not None:
            # Through the feed's gate all the same: counted (invalid_name) and logged like any
            # refused symbol, so the operator sees a sender using wildcards, not just the sender.
            # (Not on a feed on standby here: it has no gate until it runs.)
            if runner is not None:
                await runner.admit_symbols([symbol])
            return Change(400, problem)
        elsewhere = self._elsewhere(feed, symbol)
        if elsewhere is not None:
            return elsewhere
        ttl = self.config.ttl if ttl is None else ttl
        if runner is not None and symbol in runner.config.symbols:
            return Change(200, f"{symbol} is in {feed}'s configured symbols: always watched")
        async with self._lock:
            now = self.clock.time()
            if symbol not in self.managed.setdefault(feed, set()):
                runner = await self._runner(feed, "the watchlist API")
                added, refused = await runner.admit_symbols([symbol])
                if refused:
                    await self._back_to_standby(feed, runner)
                    return Change(409, f"{symbol} refused on {feed}: {_refusal(refused[symbol], runner)}")
                self.managed[feed].update(added)
            expires = now + ttl
            self.api.setdefault(feed, {})[symbol] = expires
            self._count_change("add", who)
        log.info("watchlist API: watching %s on %s for %s (signed with %s, from %s)", symbol, feed,
                 format_duration(ttl), who, origin or "?",
                 extra={"feed": feed, "symbol": symbol, "credential": who, "remote": origin or "?", "ttl": ttl})
        return Change(200, f"watching {symbol} on {feed} for {format_duration(ttl)}", expires)

    async def unwatch(self, feed: str, symbol: str, who: str, origin: str = "") -> Change:
        """End the API's watch of ``symbol`` on ``feed`` (a trigger file may still hold it)."""
        runner = self.runners.get(feed)
        if runner is None and feed not in self.standby:
            return self._no_feed(feed)
        elsewhere = self._elsewhere(feed, symbol)
        if elsewhere is not None:
            return elsewhere
        if runner is not None and symbol in runner.config.symbols:
            return Change(409, f"{symbol} is in {feed}'s configured symbols; remove it from the config instead")
        async with self._lock:
            if symbol not in self.api.get(feed, {}):
                return Change(404, f"{symbol} on {feed} was not added over the watchlist API")
            del self.api[feed][symbol]
            self._count_change("remove", who)
            held = symbol in self._files.get(feed, {})
            runner = self.runners.get(feed)
            if not held and runner is not None:
                await runner.remove_symbols([symbol])
                self.managed.get(feed, set()).discard(symbol)
                await self._back_to_standby(feed, runner)
        log.info("watchlist API: stopped watching %s on %s (signed with %s, from %s)%s", symbol, feed, who, origin or "?",
                 "; a trigger file still holds it" if held else "",
                 extra={"feed": feed, "symbol": symbol, "credential": who, "remote": origin or "?"})
        return Change(200, f"no longer watching {symbol} on {feed}" if not held
                      else f"removed the API's watch of {symbol} on {feed}; a trigger file still holds it")

    # --- internals -----------------------------------------------------------------------------

    def _no_feed(self, feed: str) -> Change:
        known = sorted({*self.runners, *self.standby.configs})
        return Change(404, f"no feed named {feed!r} (feeds: {', '.join(known) or 'none'})")

    def _elsewhere(self, feed: str, symbol: str) -> Change | None:
        """Sharded: a 421 naming the shard that owns ``symbol`` when this one does not."""
        shard = self.shard
        if shard.owns(feed, symbol):
            return None
        theirs = shard.owner_of(feed, symbol)
        return Change(421, f"{symbol!r} on feed {feed!r} belongs to shard {theirs} of {shard.count}; this replica "
                           f"is shard {shard} and adds only its own symbols: send the request to a replica of "
                           f"shard {theirs} (docs/scaling.md)", owner=theirs)

    async def _runner(self, feed: str, why: str) -> "FeedRunner":
        """The feed's runner, bringing a feed on standby up for run-time symbols."""
        runner = self.runners.get(feed)
        if runner is None:
            runner = await self.standby.activate(feed)
            log.info("watchlist: %s has no symbols on this shard; connecting it for %s", feed, why,
                     extra={"feed": feed})
        return runner

    async def _back_to_standby(self, feed: str, runner: "FeedRunner") -> None:
        """A feed up for run-time symbols only goes back to standby once it has none."""
        if feed in self.standby and feed in self.runners and not runner.symbols():
            await self.standby.deactivate(feed)
            log.info("watchlist: no run-time symbol left for %s on this shard; back to standby", feed,
                     extra={"feed": feed})

    def _feed_names(self) -> dict[str, Any]:
        """Feed name -> its config, for the reader thread (a snapshot: reloads swap runners).
        Feeds on standby are feeds too: a trigger for one is valid, its owner brings it up."""
        return {**self.standby.configs, **{name: runner.config for name, runner in self.runners.items()}}

    async def _follow(self, now: float) -> None:
        """Bring each runner in line with the unexpired triggers (the lock is held)."""
        for feed, entries in list(self.api.items()):
            if feed in self.runners or feed in self.standby:
                self.api[feed] = {s: until for s, until in entries.items() if until > now}
            else:
                del self.api[feed]  # the feed was removed by a reload
        owns = self.shard.owns
        for feed in sorted({*self.runners, *self._files, *self.api}):
            runner = self.runners.get(feed)
            # Sharded: another shard's triggers are that shard's (the API only ever takes ours).
            files = {s: t for s, t in self._files.get(feed, {}).items() if owns(feed, s)}
            api = self.api.get(feed, {})
            expiry = {**files, **{s: max(t, files.get(s, 0.0)) for s, t in api.items()}}
            # Only with a trigger to check: a set of 100,000 configured symbols built at every
            # scan, on the event loop, is a stall of its own.
            configured = set(runner.config.symbols) if runner is not None and expiry else set()
            want = {s for s in expiry if s not in configured}
            have = self.managed.setdefault(feed, set())
            add = sorted(want - have)
            drop = sorted(have - want)
            # Symbols a cap refused are counted once: retried only once the feed has room again.
            refused = self._refused.setdefault(feed, set())
            refused &= want
            if refused and not (_has_room(runner) if runner is not None else self._exporter_has_room()):
                add = [s for s in add if s not in refused]
            if add and runner is None:
                if feed not in self.standby:
                    continue
                runner = await self._runner(feed, "trigger files")
            if runner is None:
                continue
            if add:
                added, now_refused = await runner.admit_symbols(add)
                refused.difference_update(added)
                refused.update(now_refused)
                have.update(added)
                for symbol in added:
                    source = "trigger file" if symbol in files else "watchlist API"
                    log.info("watchlist: watching %s on %s for up to %.0fs (%s)", symbol, feed,
                             expiry[symbol] - now, source,
                             extra={"feed": feed, "symbol": symbol, "reason": source.replace(" ", "_")})
            if drop:
                await runner.remove_symbols(drop)
                have.difference_update(drop)
                log.info("watchlist: stopped watching %s on %s (trigger expired or removed)", ", ".join(drop), feed,
                         extra={"feed": feed, "symbols": drop, "reason": "trigger_gone"})
            await self._back_to_standby(feed, runner)

    def _exporter_has_room(self) -> bool:
        return self.book is None or self.book.room() > 0

    def _count(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            if self.book is not None:
                self.book.trigger_files[outcome.result] = self.book.trigger_files.get(outcome.result, 0) + 1
            if outcome.result != "accepted":
                where = f"moved to {outcome.moved_to}" if outcome.moved_to else "left in place (could not move it)"
                log.warning("watchlist: trigger file %s rejected (%s): %s; %s", outcome.path, outcome.result,
                            outcome.reason, where, extra={"file": outcome.path, "reason": outcome.result})

    def _count_change(self, action: str, who: str) -> None:
        if self.book is not None:
            key = (action, who)
            self.book.watchlist_changes[key] = self.book.watchlist_changes.get(key, 0) + 1

    # --- the reader (runs in a thread: no event-loop state is touched) -----------------------

    def _read(self, now: float, feeds: dict[str, Any], counted: dict[str, int]) -> Reading:
        """feed -> {symbol: expiry} for the unexpired triggers, and what became of new files."""
        reading = Reading()
        root = self.config.trigger_dir
        if not root:
            return reading
        seen = reading.seen
        try:
            entries = list(os.scandir(root))
        except FileNotFoundError:
            return reading
        except OSError as exc:
            self._warn_once(root, f"watchlist: cannot read {root}: {exc}", file=root)
            return reading
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name == REJECTED_DIR:
                continue
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError:
                continue
            if is_dir:
                self._read_feed_dir(entry, now, feeds, counted, seen, reading)
            elif is_file and name.startswith(IMMEDIATE_PREFIX) and name.endswith(IMMEDIATE_SUFFIX):
                self._read_immediate(entry, now, feeds, counted, seen, reading)
        return reading

    def _read_feed_dir(self, entry: os.DirEntry[str], now: float, feeds: dict[str, Any], counted: dict[str, int],
                       seen: dict[str, int], reading: Reading) -> None:
        if entry.name not in feeds:
            self._warn_once(entry.name, f"watchlist: {entry.path}: no feed named {entry.name!r}; ignored",
                            file=entry.path)
            return
        symbols = reading.wanted.setdefault(entry.name, {})
        try:
            items = list(os.scandir(entry.path))
        except OSError as exc:
            self._warn_once(entry.path, f"watchlist: cannot read {entry.path}: {exc}", file=entry.path)
            return
        for item in items:
            name = item.name
            try:
                if name.startswith(".") or not item.is_file():
                    continue
                stat = item.stat()
            except OSError:
                continue  # gone between the listing and the look
            problem = symbol_problem(name)
            if problem is not None:
                reading.reject(self._reject(item.path, "invalid_symbol", problem))
                continue
            if counted.get(item.path) != stat.st_mtime_ns:
                reading.outcomes.append(Outcome(item.path, "accepted"))
            seen[item.path] = stat.st_mtime_ns
            expiry = stat.st_mtime + self.config.ttl
            if expiry > now:
                symbols[name] = max(expiry, symbols.get(name, 0.0))

    def _read_immediate(self, entry: os.DirEntry[str], now: float, feeds: dict[str, Any], counted: dict[str, int],
                        seen: dict[str, int], reading: Reading) -> None:
        try:
            stat = entry.stat()
            if stat.st_size > MAX_TRIGGER_BYTES:
                raise ValueError(f"{stat.st_size} bytes; a trigger file is at most {MAX_TRIGGER_BYTES}")
            with open(entry.path, "rb") as fh:
                raw = fh.read(MAX_TRIGGER_BYTES + 1)
        except FileNotFoundError:
            return  # taken away between the listing and the read
        except (OSError, ValueError) as exc:
            reading.reject(self._reject(entry.path, "malformed", str(exc)))
            return
        try:
            feed, symbols, ttl = parse_immediate(raw, feeds, self.config)
        except TriggerError as exc:
            reading.reject(self._reject(entry.path, exc.result, exc.message))
            return
        if counted.get(entry.path) != stat.st_mtime_ns:
            reading.outcomes.append(Outcome(entry.path, "accepted"))
        seen[entry.path] = stat.st_mtime_ns
        expiry = stat.st_mtime + ttl
        if expiry > now:
            wanted = reading.wanted.setdefault(feed, {})
            for symbol in symbols:
                wanted[symbol] = max(expiry, wanted.get(symbol, 0.0))

    def _reject(self, path: str, result: str, reason: str) -> Outcome | None:
        """Move a trigger file that cannot be used to ``rejected/``, with the reason beside it.

        None when the file was gone by the time it was moved: replicas sharing the directory
        (docs/scaling.md) all judge a file alike, and the first to move it counts and logs it.
        """
        root = self.config.trigger_dir or "."
        folder = os.path.join(root, REJECTED_DIR)
        relative = os.path.relpath(path, root).replace(os.sep, "__")
        target = os.path.join(folder, relative)
        try:
            os.makedirs(folder, exist_ok=True)
            if os.path.exists(target):  # the same name rejected before: keep both
                stem, dot, ext = relative.rpartition(".")
                suffix = f"-{int(self.clock.time())}"
                target = os.path.join(folder, f"{stem}{suffix}.{ext}" if dot and stem else f"{relative}{suffix}")
            try:
                os.replace(path, target)
            except FileNotFoundError:
                return None   # another replica (or the author) took it first
            with open(target + ".reason", "w", encoding="utf-8") as fh:
                fh.write(f"{result}: {reason}\n")
        except OSError as exc:
            self._warn_once(f"move {path}", f"watchlist: cannot move {path} to {folder}: {exc}", file=path)
            return Outcome(path, result, reason)
        return Outcome(path, result, reason, target)

    def _warn_once(self, key: str, message: str, **fields: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message, extra=fields)

    async def _scan_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.scan_interval)
            try:
                await self.scan()
            except Exception:  # keep scanning; one bad pass must not end the watchlist
                log.exception("watchlist scan failed")


class TriggerError(Exception):
    """A trigger file that cannot be used: ``result`` (a TRIGGER_RESULTS value) and why."""

    def __init__(self, result: str, message: str) -> None:
        super().__init__(message)
        self.result = result
        self.message = message


def parse_immediate(raw: bytes, feeds: dict[str, Any], config: WatchlistConfig) -> tuple[str, list[str], float]:
    """An ``immediate_*.json`` file -> (feed, symbols, ttl seconds); TriggerError when unusable.

    ``feeds`` maps the feed names to their configs (the kind tells market-data feeds from the
    trading bot's stream, which cannot take symbols).
    """
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TriggerError("malformed", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise TriggerError("malformed", f"expected a JSON object with \"ticker\" or \"tickers\", got {type(data).__name__}")
    if ("ticker" in data) == ("tickers" in data):
        raise TriggerError("malformed", "give exactly one of \"ticker\" (a symbol) or \"tickers\" (a list of symbols)")
    if "ticker" in data:
        symbols = [data["ticker"]]
    else:
        symbols = data["tickers"]
        if not isinstance(symbols, list) or not symbols:
            raise TriggerError("malformed", "\"tickers\" must be a non-empty list of symbols")
    for symbol in symbols:
        if not isinstance(symbol, str):
            raise TriggerError("malformed", f"a ticker must be a string, got {json.dumps(symbol)[:40]}")
        problem = symbol_problem(symbol)
        if problem is not None:
            raise TriggerError("invalid_symbol", problem)
    ttl = config.ttl
    if data.get("ttl") is not None:
        try:
            ttl = parse_duration(data["ttl"])
        except ValueError as exc:
            raise TriggerError("malformed", f"ttl: {exc}") from None
        if ttl <= 0:
            raise TriggerError("malformed", "ttl: must be positive")
    feed = data.get("feed")
    if feed is None:
        feed = config.default_feed or _only_market_feed(feeds)
        if feed is None:
            candidates = sorted(name for name, c in feeds.items() if getattr(c, "kind", "") != "trading")
            raise TriggerError("unknown_feed", f"no \"feed\" given and {len(candidates)} feeds could take it "
                                               f"({', '.join(candidates) or 'none'}): add \"feed\" or set "
                                               f"watchlist.default_feed")
    if not isinstance(feed, str) or feed not in feeds:
        raise TriggerError("unknown_feed", f"no feed named {feed!r} (feeds: {', '.join(sorted(feeds)) or 'none'})")
    if getattr(feeds[feed], "kind", "") == "trading":
        raise TriggerError("unknown_feed", f"feed {feed!r} is the trading bot's event stream, not a market-data feed")
    return feed, list(dict.fromkeys(symbols)), ttl


def _only_market_feed(feeds: dict[str, Any]) -> str | None:
    market = [name for name, c in feeds.items() if getattr(c, "kind", "") != "trading"]
    return market[0] if len(market) == 1 else None


def _has_room(runner: "FeedRunner") -> bool:
    feed = runner.feed
    return len(feed.symbols) < runner.config.max_symbols and (feed.budget is None or feed.budget.room() > 0)


def _refusal(reason: str, runner: "FeedRunner") -> str:
    if reason == "feed_limit":
        return f"the feed watches its max_symbols ({runner.config.max_symbols}) already"
    if reason == "exporter_limit":
        budget = runner.feed.budget
        return f"the exporter watches its max_symbols ({budget.max_symbols if budget else '?'}) already"
    return reason
