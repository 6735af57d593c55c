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
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from exporter.config import WatchlistConfig

if TYPE_CHECKING:
    from exporter.clock import SystemClock
    from exporter.feeds.runner import FeedRunner

log = logging.getLogger(__name__)


class Watchlist:
    def __init__(self, config: WatchlistConfig, runners: "dict[str, FeedRunner]", clock: "SystemClock") -> None:
        self.config = config
        self.runners = runners
        self.clock = clock
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
        for feed, runner in self.runners.items():
            configured = set(runner.config.symbols)
            want = {s for s in wanted.get(feed, {}) if s not in configured}
            have = self.managed[feed]
            add = sorted(want - have)
            drop = sorted(have - want)
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
            if entry.name not in self.runners:
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
