"""Market session calendars: is this venue open right now?

A feed with ``market: us-equities`` reports its symbols as ``closed`` (state -1) outside the
regular NYSE/Nasdaq session, so a quiet overnight book raises no alert. Crypto venues omit
``market`` and are always open.

Calendars:

- ``us-equities``: 09:30-16:00 America/New_York, Monday to Friday, minus full-day NYSE holidays
  (and 13:00 closes on the early-close days).
- ``us-equities-extended``: 04:00-20:00 America/New_York on the same days (pre- and post-market,
  which Polygon streams too).
- ``always``: open 24/7 (the same as omitting ``market``; handy for tests).

The holiday table covers 2025-2028 (published by NYSE); extend it when a new year is announced.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")

# NYSE full-day closures.
US_HOLIDAYS = frozenset(dt.date.fromisoformat(d) for d in (
    "2025-01-01", "2025-01-09", "2025-01-20", "2025-02-17", "2025-04-18", "2025-05-26", "2025-06-19",
    "2025-07-04", "2025-09-01", "2025-11-27", "2025-12-25",
    "2026-01-01", "2026-01-19", "2026-02-16", "2026-04-03", "2026-05-25", "2026-06-19", "2026-07-03",
    "2026-09-07", "2026-11-26", "2026-12-25",
    "2027-01-01", "2027-01-18", "2027-02-15", "2027-03-26", "2027-05-31", "2027-06-18", "2027-07-05",
    "2027-09-06", "2027-11-25", "2027-12-24",
    "2028-01-17", "2028-02-21", "2028-04-14", "2028-05-29", "2028-06-19", "2028-07-04", "2028-09-04",
    "2028-11-23", "2028-12-25",
))
# NYSE 13:00 early closes.
US_EARLY_CLOSES = frozenset(dt.date.fromisoformat(d) for d in (
    "2025-07-03", "2025-11-28", "2025-12-24",
    "2026-11-27", "2026-12-24",
    "2027-11-26",
    "2028-07-03", "2028-11-24",
))


@dataclass(frozen=True)
class Calendar:
    name: str
    open_time: dt.time | None   # None: always open
    close_time: dt.time | None
    early_close: dt.time | None = None

    def is_open(self, now: float) -> bool:
        if self.open_time is None:
            return True
        local = dt.datetime.fromtimestamp(now, NEW_YORK)
        day = local.date()
        if local.weekday() >= 5 or day in US_HOLIDAYS:
            return False
        close = self.close_time
        if self.early_close is not None and day in US_EARLY_CLOSES:
            close = self.early_close
        return self.open_time <= local.time() < close


CALENDARS: dict[str, Calendar] = {
    "always": Calendar("always", None, None),
    "us-equities": Calendar("us-equities", dt.time(9, 30), dt.time(16, 0), dt.time(13, 0)),
    "us-equities-extended": Calendar("us-equities-extended", dt.time(4, 0), dt.time(20, 0), dt.time(17, 0)),
}


def calendar(name: str | None) -> Calendar:
    return CALENDARS["always" if name is None else name]
