"""The REST fallback's polling loop: keeps prices checked while the socket cannot.

One ``RestPoller`` per feed with ``rest.enabled``, started and stopped by its ``FeedRunner``
(the runner owns the sockets; the poller owns its own HTTP session). Every ``TICK`` (loop time)
it picks the *affected* symbols:

- every symbol while no connection of the feed is up (a feed that never connected included);
- otherwise each symbol that is stale or critical, and each whose price still comes from REST
  (no socket update since the last REST one), so a symbol keeps being polled until its socket
  delivers again instead of flapping between stale and REST-fresh;
- none while the feed's market is closed.

Each affected symbol is polled at most once per ``rest.interval``; the venue module
(``rest.py``) batches them into requests, sent at most ``rate`` per second (the venue's default
or ``rest.max_requests_per_second``), one at a time. Answers go into the book through
``FeedBook.apply_rest`` (source ``rest``; see there for the timestamp rule).

Failures are counted in ``FeedBook.rest_requests[result]`` and logged through the runner's
problem log (once, then at most once a minute per kind). A rate limit (429, Binance 418, Bybit's
403/10006) pauses every request for the venue's Retry-After (60 s without one); other failures
back off exponentially (1 s doubling to 60 s) until a request succeeds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import aiohttp

from exporter.book import CRITICAL, STALE, FeedBook
from exporter.config import FeedConfig
from exporter.feeds.rest import RestError, RestVenue, rest_venue

log = logging.getLogger(__name__)

TICK = 0.1                 # how often the poller looks for due symbols (loop time)
MAX_BACKOFF = 60.0         # the longest pause after repeated failures
RATE_LIMIT_PAUSE = 60.0    # a rate limit without Retry-After
MAX_BODY = 4 * 1024 * 1024  # a snapshot answer larger than this is not one


class Owner(Protocol):
    """What the poller needs of its runner (declared here so it never imports the runner)."""

    config: FeedConfig       # read at every pass: a reload may hand over a new one
    feed: FeedBook
    clock: Any               # the injected clock (book time)
    problems: Any            # the runner's ProblemLog: report(kind, message)


class RestPoller:
    def __init__(self, runner: Owner) -> None:
        self.runner = runner
        venue = rest_venue(runner.config)
        if venue is None:
            raise ValueError(f"feed {runner.config.name}: no REST fallback for kind {runner.config.kind!r}")
        self.venue: RestVenue = venue
        self.session: aiohttp.ClientSession | None = None
        self.polled: dict[str, float] = {}   # symbol -> loop time it was last requested
        self.paused_until = 0.0              # loop time: no request before it (rate limit, backoff)
        self.failures = 0                    # failures in a row (backoff)
        self.next_request = 0.0              # loop time the rate allows the next request
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.runner.config.rest.timeout))
        self._task = asyncio.create_task(self._run(), name=f"rest {self.runner.feed.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.session is not None:
            await self.session.close()
            self.session = None
        self.runner.feed.rest_active = False

    # --- choosing --------------------------------------------------------------------------------

    def affected(self, now: float) -> list[str]:
        """The symbols the fallback should cover now (book time)."""
        feed = self.runner.feed
        if not feed.refresh_market(now):
            return []
        if not feed.is_up():
            return list(feed.symbols)
        classify = feed.classify
        return [s.symbol for s in feed.symbols.values() if s.from_rest or classify(s, now) in (STALE, CRITICAL)]

    # --- the loop --------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK)
            try:
                await self._poll_once(loop)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end the fallback (or the process)
                log.exception("feed %s: REST fallback pass failed", self.runner.feed.name)

    async def _poll_once(self, loop: asyncio.AbstractEventLoop) -> None:
        feed = self.runner.feed
        config = self.runner.config.rest
        targets = self.affected(self.runner.clock.time())
        feed.rest_active = bool(targets)
        if not targets:
            self.polled.clear()
            return
        now = loop.time()
        due = [s for s in targets if now - self.polled.get(s, -1e18) >= config.interval]
        if not due:
            return
        for request in self.venue.requests(due):
            now = loop.time()
            wait = max(self.paused_until, self.next_request) - now
            if wait > 0:
                if wait > config.interval:
                    return  # paused (rate limit, backoff): look again later, do not queue up
                await asyncio.sleep(wait)
            self.next_request = loop.time() + 1.0 / self.venue.rate
            for symbol in request.symbols:
                self.polled[symbol] = loop.time()
            await self._fetch(request, loop)

    async def _fetch(self, request, loop: asyncio.AbstractEventLoop) -> None:
        feed = self.runner.feed
        assert self.session is not None
        try:
            async with self.session.get(request.url) as response:
                body = await response.content.read(MAX_BODY)
                snapshots = self.venue.parse(request, response.status, body, response.headers)
        except RestError as exc:
            self._failed(exc.result, exc.message, exc.retry_after, loop)
            return
        except (asyncio.TimeoutError, TimeoutError):
            self._failed("timeout", f"no answer within {self.runner.config.rest.timeout:g}s", None, loop)
            return
        except (aiohttp.ClientError, OSError) as exc:
            self._failed("network_error", f"{type(exc).__name__}: {exc}", None, loop)
            return
        feed.rest_requests["ok"] += 1
        self.failures = 0
        now = self.runner.clock.time()
        for snap in snapshots:
            feed.apply_rest(snap.symbol, snap.bid, snap.ask, snap.ts, now)
        # Rejections (counted in the book) are reported here, like an adapter reports a frame's.
        for reason, detail in feed.take_notes():
            self.runner.problems.report(f"rest {reason}", f"REST fallback price rejected ({reason}): {detail}",
                                        what="rejected update", reason=reason)

    def _failed(self, result: str, message: str, retry_after: float | None, loop: asyncio.AbstractEventLoop) -> None:
        feed = self.runner.feed
        feed.rest_requests[result] = feed.rest_requests.get(result, 0) + 1
        self.failures += 1
        if result == "rate_limited":
            pause = RATE_LIMIT_PAUSE if retry_after is None else retry_after
            what = f"rate limited, pausing REST requests for {pause:g}s"
        else:
            pause = min(MAX_BACKOFF, 2.0 ** (self.failures - 1))
            what = f"backing off {pause:g}s"
        self.paused_until = max(self.paused_until, loop.time() + pause)
        self.runner.problems.report(f"rest {result}", f"REST fallback {result}: {message} ({what})",
                                    reason=result, delay=pause)
