"""Run-time watchlist: drop a file, watch a symbol for a while.

Layout: one directory per feed under ``watchlist.trigger_dir``, one empty file per symbol::

    triggers/
      stocks/
        NVDA        # watch NVDA on feed "stocks" until mtime + ttl
        TSLA

Creating the file (``touch triggers/stocks/NVDA``) adds the symbol to that feed's runner at the
next scan (every ``scan_interval``) without reconnecting; touching it again extends the watch;
once ``mtime + ttl`` has passed, or the file is deleted, the symbol is removed. Symbols listed in
the config are never added or removed by the watchlist. Hidden files (``.name``) are ignored, so
editors' swap files do not become symbols. A directory named after an unknown feed is reported
once and otherwise ignored.

Sharded replicas (``exporter/sharding.py``) share one trigger directory: each honours only the
triggers for symbols its shard owns, so a symbol is added on exactly one replica. A feed this
replica holds no configured symbol of is on standby (``Standby``): the first trigger it owns
brings the feed up, and it goes back to standby, its connection closed, when its last trigger
expires.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Callable, Protocol

from exporter.config import WatchlistConfig

if TYPE_CHECKING:
    from exporter.clock import SystemClock
    from exporter.feeds.runner import FeedRunner

log = logging.getLogger(__name__)


class Standby(Protocol):
    """Feeds with no symbols on this replica (sharded): the Service brings one up for a trigger.

    ``feed in standby`` is true for such a feed whether it is up or not.
    """

    def __contains__(self, feed: object) -> bool: ...

    async def activate(self, feed: str) -> "FeedRunner": ...

    async def deactivate(self, feed: str) -> None: ...


class _NoStandby:
    def __contains__(self, feed: object) -> bool:
        return False

    async def activate(self, feed: str) -> "FeedRunner":
        raise KeyError(feed)

    async def deactivate(self, feed: str) -> None:
        raise KeyError(feed)


class Watchlist:
    def __init__(self, config: WatchlistConfig, runners: "dict[str, FeedRunner]", clock: "SystemClock",
                 owns: Callable[[str, str], bool] | None = None, standby: Standby | None = None) -> None:
        self.config = config
        self.runners = runners
        self.clock = clock
        # Sharded: only the triggers for (feed, symbol) pairs this replica's shard owns.
        self.owns = owns or (lambda feed, symbol: True)
        self.standby: Standby = standby if standby is not None else _NoStandby()
        # feed -> symbols the watchlist added (and so may remove)
        self.managed: dict[str, set[str]] = {name: set() for name in runners}
        self._warned: set[str] = set()
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
        """Read the trigger directory once and add/remove symbols to match it."""
        wanted = await asyncio.to_thread(self._read, self.clock.time())
        owns = self.owns
        for feed in sorted({*self.runners, *wanted}):
            runner = self.runners.get(feed)
            configured = set(runner.config.symbols) if runner is not None else set()
            want = {s for s in wanted.get(feed, {}) if s not in configured and owns(feed, s)}
            have = self.managed.setdefault(feed, set())
            add = sorted(want - have)
            drop = sorted(have - want)
            if add and runner is None:
                if feed not in self.standby:
                    continue
                runner = await self.standby.activate(feed)
                log.info("watchlist: %s has no symbols on this shard; connecting it for trigger files", feed,
                         extra={"feed": feed})
            if runner is None:
                continue
            if add:
                added = await runner.add_symbols(add)
                have.update(added)
                for symbol in added:
                    log.info("watchlist: watching %s on %s for up to %.0fs (trigger file)",
                             symbol, feed, wanted[feed][symbol] - self.clock.time(),
                             extra={"feed": feed, "symbol": symbol, "reason": "trigger_file"})
            if drop:
                await runner.remove_symbols(drop)
                have.difference_update(drop)
                log.info("watchlist: stopped watching %s on %s (trigger expired or removed)", ", ".join(drop), feed,
                         extra={"feed": feed, "symbols": drop, "reason": "trigger_gone"})
                if not runner.symbols() and feed in self.standby:
                    await self.standby.deactivate(feed)
                    log.info("watchlist: no trigger left for %s on this shard; back to standby", feed,
                             extra={"feed": feed})

    def _read(self, now: float) -> dict[str, dict[str, float]]:
        """feed -> {symbol: expiry} for the unexpired trigger files (runs in a thread)."""
        root = self.config.trigger_dir
        found: dict[str, dict[str, float]] = {}
        try:
            feeds = [e for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")]
        except FileNotFoundError:
            return found
        except OSError as exc:
            self._warn_once(root or "", f"watchlist: cannot read {root}: {exc}", file=root)
            return found
        for entry in feeds:
            if entry.name not in self.runners and entry.name not in self.standby:
                self._warn_once(entry.name, f"watchlist: {entry.path}: no feed named {entry.name!r}; ignored",
                                file=entry.path)
                continue
            symbols: dict[str, float] = {}
            try:
                for item in os.scandir(entry.path):
                    name = item.name
                    if name.startswith(".") or not name.strip() or name != name.strip() or not item.is_file():
                        continue
                    expiry = item.stat().st_mtime + self.config.ttl
                    if expiry > now:
                        symbols[name] = expiry
            except OSError as exc:
                self._warn_once(entry.path, f"watchlist: cannot read {entry.path}: {exc}", file=entry.path)
            found[entry.name] = symbols
        return found

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
