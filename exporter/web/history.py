"""The last hour in memory, for the status page's sparklines: bounded, sampled, no I/O.

``History`` keeps, per series, the last ``span / interval`` samples (360 for an hour at 10 s) in
fixed-size deques, so memory is bounded whatever runs for how long. Samplers are functions
``now -> {series name: value or None}`` registered per group: the app registers the worst
staleness of each price feed (``"feeds"``); the trading extension adds each account's equity
(``"accounts"``). A series missing from a sample gets ``None`` (a gap in the line, never a
made-up value).

What the snapshot carries (``to_json``)::

    {"interval": 10.0, "end": 1700000000.0,
     "feeds": {"stocks": [0.4, 0.3, null, ...]}, "accounts": {"main": [10012.5, ...]}}

the last value belonging to ``end`` and each earlier one ``interval`` seconds before the next.
"""

from __future__ import annotations

import logging
from collections import deque
from operator import attrgetter
from typing import Callable, Optional

from exporter.book import Book

log = logging.getLogger(__name__)

_last_update_of = attrgetter("last_update")

Sampler = Callable[[float], dict[str, Optional[float]]]


class History:
    def __init__(self, interval: float = 10.0, span: float = 3600.0) -> None:
        self.interval = interval
        self.size = max(2, int(round(span / interval)))
        self.samplers: dict[str, Sampler] = {}
        self.series: dict[str, dict[str, deque]] = {}
        self.end = 0.0
        self.samples = 0

    def add(self, group: str, sampler: Sampler) -> None:
        self.samplers[group] = sampler
        self.series.setdefault(group, {})

    def sample(self, now: float) -> None:
        for group, sampler in self.samplers.items():
            try:
                values = sampler(now)
            except Exception:  # one broken sampler leaves a gap in its lines, not in the others
                log.exception("history sampler %s failed", group)
                values = {}
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


def feed_staleness(book: Book) -> Sampler:
    """The worst staleness among each price feed's symbols (None while its market is closed).

    It runs on the event loop every ``interval``: no Python call per symbol (100,000 symbols'
    ``classify`` and ``staleness`` stalled the loop ~70 ms). While the market is open no symbol
    is closed, and the worst is the age of the oldest reference time (``FeedBook.reference_time``:
    the last update, or the subscription for a symbol never updated, and never before the session
    open), found with ``min`` over the last-update times gathered in C."""

    def sample(now: float) -> dict[str, Optional[float]]:
        values: dict[str, Optional[float]] = {}
        for feed in book.feeds.values():
            if feed.config.kind == "trading" or not feed.symbols:
                continue
            if not feed.refresh_market(now):
                values[feed.name] = None
                continue
            states = list(feed.symbols.values())
            updated = list(map(_last_update_of, states))
            if 0.0 in updated:   # some never updated: their clocks run from the subscription
                oldest = min([s.last_update or s.since for s in states])
            else:
                oldest = min(updated)
            values[feed.name] = round(max(0.0, now - max(oldest, feed.session_start)), 3)
        return values

    return sample
