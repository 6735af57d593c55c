"""The last hour in memory, for the status page's sparklines: bounded, sampled, no I/O.

``History`` keeps, per series, the last ``span / interval`` samples (360 for an hour at 10 s) in
fixed-size deques, so memory is bounded whatever runs for how long. Samplers are functions
``now -> {series name: value or None}`` registered per group: the trading extension adds each
account's equity (``"accounts"``). A sampler that walks every symbol is a *pass* instead
(``add_pass``; ``exporter/slices.py``): a generator that yields between chunks and returns the
values, so the app's sampling task gives the event loop back while it runs. The worst staleness
of each price feed (``"feeds"``) is one: at 100,000 symbols, gathered at once, it was an event-loop
iteration of 17-25 ms every 10 s (issue 14). A series missing from a sample gets ``None`` (a gap
in the line, never a made-up value).

What the snapshot carries (``to_json``)::

    {"interval": 10.0, "end": 1700000000.0,
     "feeds": {"stocks": [0.4, 0.3, null, ...]}, "accounts": {"main": [10012.5, ...]}}

the last value belonging to ``end`` and each earlier one ``interval`` seconds before the next.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from operator import attrgetter
from typing import Callable, Generator, Optional

from exporter.book import Book
from exporter.slices import run_all

log = logging.getLogger(__name__)

_last_update_of = attrgetter("last_update")

Values = dict[str, Optional[float]]
Sampler = Callable[[float], Values]
# A sampler run in slices: ``now ->`` a generator yielding between chunks, returning the values.
Pass = Callable[[float], Generator[None, None, Values]]

# Symbols per step of the feed staleness pass: ~1 ms of the loop at 100k on a slow machine.
CHUNK = 4096


class History:
    def __init__(self, interval: float = 10.0, span: float = 3600.0) -> None:
        self.interval = interval
        self.size = max(2, int(round(span / interval)))
        self.passes: dict[str, Pass] = {}
        self.series: dict[str, dict[str, deque]] = {}
        self.end = 0.0
        self.samples = 0

    def add(self, group: str, sampler: Sampler) -> None:
        """A sampler that is quick at any size (a value per account): called at once."""
        def at_once(now: float) -> Generator[None, None, Values]:
            return sampler(now)
            yield   # unreachable: makes this a generator, a pass of one step

        self.add_pass(group, at_once)

    def add_pass(self, group: str, steps: Pass) -> None:
        """A sampler that walks every symbol: run in slices (``sample_steps``)."""
        self.passes[group] = steps
        self.series.setdefault(group, {})

    def sample(self, now: float) -> None:
        """Take one sample at once (tests, tools)."""
        run_all(self.sample_steps(now))

    def sample_steps(self, now: float) -> Generator[None, None, None]:
        """Take one sample as a pass (``exporter/slices.py``): every value is for ``now``, the
        lines are appended when every group is sampled, so they always end together."""
        taken: dict[str, Values] = {}
        for group, steps in list(self.passes.items()):
            try:
                taken[group] = yield from steps(now)
            except Exception:  # one broken sampler leaves a gap in its lines, not in the others
                log.exception("history sampler %s failed", group)
                taken[group] = {}
        for group, values in taken.items():
            series = self.series[group]
            for name in values.keys() - series.keys():
                # A series appearing late starts with gaps, so every line ends at the same time.
                series[name] = deque([None] * self.samples, maxlen=self.size)
            for name, line in series.items():
                line.append(values.get(name))
        self.samples = min(self.samples + 1, self.size)
        self.end = now

    def to_json(self) -> dict:
        out: dict = {"interval": self.interval, "end": self.end or None}
        for group, series in self.series.items():
            out[group] = {name: list(line) for name, line in series.items()}
        return out


def feed_staleness(book: Book) -> Pass:
    """The worst staleness among each price feed's symbols (None while its market is closed), as
    a pass yielding after every ``CHUNK`` symbols.

    It runs on the event loop every ``interval``: no Python call per symbol (100,000 symbols'
    ``classify`` and ``staleness`` stalled the loop ~70 ms). While the market is open no symbol
    is closed, and the worst is the age of the oldest reference time (``FeedBook.reference_time``:
    the last update, or the subscription for a symbol never updated, and never before the session
    open), found with ``min`` over the last-update times gathered in C. A symbol that updates
    after its chunk was read counts with its older time: the worst can only read high, by less
    than the pass took, never low."""

    def steps(now: float) -> Generator[None, None, Values]:
        values: Values = {}
        for feed in list(book.feeds.values()):
            if feed.config.kind == "trading" or not feed.symbols:
                continue
            if not feed.refresh_market(now):
                values[feed.name] = None
                continue
            states = list(feed.symbols.values())   # the feed may change between two steps
            oldest = math.inf
            for i in range(0, len(states), CHUNK):
                chunk = states[i:i + CHUNK]
                updated = list(map(_last_update_of, chunk))
                if 0.0 in updated:   # some never updated: their clocks run from the subscription
                    low = min([s.last_update or s.since for s in chunk])
                else:
                    low = min(updated)
                if low < oldest:
                    oldest = low
                yield
            values[feed.name] = round(max(0.0, now - max(oldest, feed.session_start)), 3)
        return values

    return steps

