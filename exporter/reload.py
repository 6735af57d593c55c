"""Configuration reload: read the file again, apply what changed, keep what did not.

Triggered by SIGHUP (what ``systemctl reload`` sends) and ``POST /-/reload``, as Prometheus and
Alertmanager do; one reload runs at a time, a second request waits for the first::

    reloader = Reloader(load=lambda: load_file(path), apply=exporter.apply, clock=clock, source=path)
    problems = await reloader.reload("SIGHUP")     # [] when the new configuration is running

All or nothing. A file that does not load (bad YAML, an unknown key, an unset variable: every
problem with its key path), or a change only a restart can make (``restart_only``: the listen
address and the metrics path, which the HTTP server was bound with, and the ``shard``; the apply
step adds its own, such as the trading state file), changes nothing: the running configuration stays, each
problem is logged on its own line, and ``feedwatch_config_last_reload_successful`` reads 0 until
a reload succeeds. The apply step (``Service.apply``) keeps the state of whatever did not
change; ``feed_changes`` sorts the feeds into what it must do with each:

    added       connect it
    removed     close it; its series are gone from the next scrape
    restarted   kind, url, api_key, connect_timeout, transport or a venue key changed: new connections
                (disconnect reason "reload"); the feed's symbols keep their state and counters
    updated     anything else (symbols, thresholds, timeouts, backoff, market, ...): applied to
                the running feed; its sockets stay open, symbols are (un)subscribed on them

The two metrics are rendered at scrape time from plain state, like the collectors'::

    # HELP feedwatch_config_last_reload_successful Whether the last configuration reload attempt was successful (1) or not (0).
    # TYPE feedwatch_config_last_reload_successful gauge
    feedwatch_config_last_reload_successful 1
    # HELP feedwatch_config_last_reload_success_timestamp_seconds Unix time of the last successful configuration load (the start counts as one).
    # TYPE feedwatch_config_last_reload_success_timestamp_seconds gauge
    feedwatch_config_last_reload_success_timestamp_seconds 1700000000.0
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from exporter.config import Config, ConfigError, FeedConfig

log = logging.getLogger(__name__)

# FeedConfig fields a live connection was opened with: changing one means new connections.
CONNECTION_KEYS = ("kind", "url", "api_key", "options", "connect_timeout", "transport")


@dataclass
class FeedChanges:
    """What a reload does to each feed (see the module docstring)."""

    added: list[FeedConfig] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    restarted: list[tuple[FeedConfig, list[str]]] = field(default_factory=list)  # (new, keys changed)
    updated: list[FeedConfig] = field(default_factory=list)


def feed_changes(old: Config, new: Config) -> FeedChanges:
    before = {feed.name: feed for feed in old.feeds}
    after = {feed.name: feed for feed in new.feeds}
    changes = FeedChanges(removed=[name for name in before if name not in after])
    for name, feed in after.items():
        previous = before.get(name)
        if previous is None:
            changes.added.append(feed)
            continue
        keys = [key for key in CONNECTION_KEYS if getattr(previous, key) != getattr(feed, key)]
        if keys:
            changes.restarted.append((feed, keys))
        elif feed != previous:
            changes.updated.append(feed)
    return changes


def restart_only(old: Config, new: Config) -> list[str]:
    """Top-level keys the running process cannot change: the HTTP server is bound with them, and
    the shard is the replica's place among the others (a reload is cut to the same share)."""
    problems = []
    for key in ("listen", "telemetry_path", "shard"):
        if getattr(old, key) != getattr(new, key):
            problems.append(f"{key}: changed from {getattr(old, key)!r} to {getattr(new, key)!r}; "
                            f"this takes a restart (the reload changed nothing)")
    return problems


Apply = Callable[[Config], Awaitable[list[str]]]


class Reloader:
    """Runs reloads one at a time, logs them, and keeps the two reload metrics."""

    def __init__(self, load: Callable[[], Config], apply: Apply, clock: Any, source: str) -> None:
        self.load = load          # reads and validates the file; raises ConfigError
        self.apply = apply        # puts a loaded Config into effect; its problems, or [] when done
        self.clock = clock
        self.source = source      # the file, for the log
        self.successful = True
        self.success_at = clock.time()   # the start loaded the file: Prometheus counts it too
        self.problems: list[str] = []
        self._lock = asyncio.Lock()

    async def reload(self, trigger: str) -> list[str]:
        """Load and apply the file; the problems that kept it from running ([] on success)."""
        async with self._lock:
            try:
                config = await asyncio.to_thread(self.load)
            except ConfigError as exc:
                problems = list(exc.errors)
            except Exception as exc:  # never fatal: a reload that breaks must not stop the monitor
                log.exception("configuration reload (%s): loading %s failed unexpectedly", trigger, self.source,
                              extra={"trigger": trigger, "file": self.source})
                problems = [f"{self.source}: {exc!r}"]
            else:
                try:
                    problems = await self.apply(config)
                except Exception as exc:
                    log.exception("configuration reload (%s): applying %s failed", trigger, self.source,
                                  extra={"trigger": trigger, "file": self.source})
                    problems = [f"applying the configuration failed: {exc!r} (part of it may be in effect; "
                                f"a restart applies it whole)"]
            self.successful = not problems
            self.problems = problems
            if problems:
                log.error("configuration reload (%s) failed, the running configuration stays: %s has "
                          "%d problem(s)", trigger, self.source, len(problems),
                          extra={"trigger": trigger, "file": self.source})
                for problem in problems:
                    log.error("configuration reload: %s", problem, extra={"trigger": trigger, "file": self.source})
            else:
                self.success_at = self.clock.time()
            return problems

    def render(self, now: float) -> str:
        """The two reload metrics (a renderer for ``web.app.create_app``)."""
        return (
            "# HELP feedwatch_config_last_reload_successful Whether the last configuration reload attempt "
            "was successful (1) or not (0).\n"
            "# TYPE feedwatch_config_last_reload_successful gauge\n"
            f"feedwatch_config_last_reload_successful {1 if self.successful else 0}\n"
            "# HELP feedwatch_config_last_reload_success_timestamp_seconds Unix time of the last successful "
            "configuration load (the start counts as one).\n"
            "# TYPE feedwatch_config_last_reload_success_timestamp_seconds gauge\n"
            f"feedwatch_config_last_reload_success_timestamp_seconds {self.success_at!r}\n"
        )
