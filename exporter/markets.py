"""Market session calendars: is this venue open right now?

A feed with ``market: us-equities`` reports its symbols as ``closed`` (state -1) outside the
regular NYSE/Nasdaq session, so a quiet overnight book raises no alert. Crypto venues omit
``market`` and are always open.

Built-in calendars (hours in America/New_York):

- ``us-equities``: 09:30-16:00 Monday to Friday, minus full-day NYSE holidays, closing at 13:00
  on early-close days.
- ``us-equities-extended``: 04:00-20:00 on the same days (pre- and post-market, which Polygon
  streams too), closing at 17:00 on early-close days.
- ``cme-globex``: CME Globex futures, Sunday 18:00 to Friday 17:00 with the daily 17:00-18:00
  maintenance break; each trading day opens at 18:00 the evening before. On a CME holiday the
  whole trading day is closed (from 18:00 the evening before); on an early-close day (13:00,
  which is 12:00 in Chicago) the market stays closed until the next trading day opens at 18:00.
- ``always``: open 24/7 (the same as omitting ``market``; handy for tests).

Holidays and early closes are *generated*, not typed in: ``scripts/generate-calendars.py``
(``make calendars``) reads them from the ``exchange_calendars`` package (``XNYS`` for the US
equities calendars, ``CMES`` for CME Globex) and writes ``exporter/markets.json``, which this
module reads. The runtime needs neither that package nor pandas. Each calendar's table ends on a
known date (``Calendar.end``); after it, holidays read as trading days. Feedwatch warns at
start-up when a calendar in use ends within a year, and exports the end as
``feedwatch_market_calendar_end_timestamp_seconds{market}``; the remedy is a newer feedwatch
(or ``make calendars`` with a newer exchange_calendars).

Users define calendars of their own under ``markets:`` in the config (``exporter/config.py``
builds them with ``Calendar``); they have the same shape: weekly sessions, holidays, early
closes, an end.

The model: a *trading day* is a calendar date in the market's timezone. Each ``Session``
belongs to the trading days of the weekdays it lists and runs from ``open`` to ``close`` on that
date, or from ``open`` on the evening before when ``opens_day_before`` is set (CME's 18:00
Sunday open belongs to Monday). A holiday removes every session of its trading day; an early
close cuts the trading day's sessions at that time. Times are whole minutes after local
midnight, so a session boundary is exact to the second.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")

MINUTES_PER_DAY = 1440
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_INDEX = {**{name: i for i, name in enumerate(WEEKDAYS)}, **{name[:3]: i for i, name in enumerate(WEEKDAYS)}}
_TIME = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")

# The generated table of the built-in calendars (see the module docstring).
DATA_FILE = "markets.json"


# --- parsing (shared with the config loader and the generator) ----------------------------------

def parse_time(text: str) -> int:
    """``"09:30"`` -> 570 minutes after midnight; ``"24:00"`` (end of day) is allowed."""
    match = _TIME.match(text.strip()) if isinstance(text, str) else None
    if match is None or int(match.group(1)) * 60 + int(match.group(2)) > MINUTES_PER_DAY:
        raise ValueError(f"expected a time of day like \"09:30\" (00:00 to 24:00), got {text!r}")
    return int(match.group(1)) * 60 + int(match.group(2))


def format_time(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_days(specs: Iterable[str]) -> frozenset[int]:
    """Weekday names (``monday``, ``mon``) and ranges (``mon-fri``, ``monday:friday``) -> {0..6}.

    A range wraps around the week (``fri-mon`` is Friday to Monday). Raises ValueError naming
    the first unknown day.
    """
    days: set[int] = set()
    for spec in specs:
        if not isinstance(spec, str):
            raise ValueError(f"expected a day name like monday or a range like mon-fri, got {spec!r}")
        first, sep, last = _split_range(spec)
        for name in (first, last) if sep else (first,):
            if name not in _DAY_INDEX:
                raise ValueError(f"unknown day {name!r} in {spec!r} (use monday..sunday, mon..sun, "
                                 f"or a range like mon-fri)")
        a = _DAY_INDEX[first]
        b = _DAY_INDEX[last] if sep else a
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days)


def _split_range(spec: str) -> tuple[str, str, str]:
    text = spec.strip().lower()
    for sep in ("-", ":"):
        if sep in text:
            first, _, last = text.partition(sep)
            return first.strip(), sep, last.strip()
    return text, "", ""


# --- the model ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Session:
    """One weekly session: on each trading day in ``days`` (0 = Monday), ``open`` to ``close``."""

    days: frozenset[int]
    open: int                       # minutes after midnight
    close: int                      # minutes after midnight, up to 1440; > open unless opens_day_before
    opens_day_before: bool = False  # ``open`` is on the evening before the trading day

    def __post_init__(self) -> None:
        if not (0 <= self.open < MINUTES_PER_DAY and 0 < self.close <= MINUTES_PER_DAY):
            raise ValueError(f"session times out of range: {self.open}-{self.close}")
        if not self.opens_day_before and self.open >= self.close:
            raise ValueError(f"a session must open before it closes (open {format_time(self.open)}, "
                             f"close {format_time(self.close)})")


Interval = tuple[int, int]  # [start, end) in minutes of one calendar date


@dataclass(frozen=True)
class Calendar:
    """A market's sessions, holidays and early closes in its timezone; ``is_open(now)``.

    No sessions means open around the clock (``always``). ``end`` is the last date the holiday
    table covers (None: it has none, or never runs out).
    """

    name: str
    timezone: ZoneInfo | None = None
    sessions: tuple[Session, ...] = ()
    holidays: frozenset[dt.date] = frozenset()
    early_closes: Mapping[dt.date, int] = field(default_factory=dict)   # date -> close, minutes
    end: dt.date | None = None
    source: str = ""                # where the dates come from, for messages and docs
    # The open intervals of the last date asked for: is_open runs every scrape and every sweep.
    _cache: list[Any] = field(default_factory=lambda: [None, ()], compare=False, repr=False)

    @property
    def always_open(self) -> bool:
        return not self.sessions

    def is_open(self, now: float) -> bool:
        if not self.sessions:
            return True
        local = dt.datetime.fromtimestamp(now, self.timezone)
        day = local.date()
        cache = self._cache
        if cache[0] != day:
            cache[1] = self.open_intervals(day)
            cache[0] = day
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in cache[1])

    def open_intervals(self, day: dt.date) -> tuple[Interval, ...]:
        """When the market is open on this calendar date, holidays and early closes applied."""
        return self._intervals(day, special=True)

    def regular_intervals(self, day: dt.date) -> tuple[Interval, ...]:
        """When the market is open on a date of this weekday, ignoring holidays and early closes."""
        return self._intervals(day, special=False)

    def _intervals(self, day: dt.date, special: bool) -> tuple[Interval, ...]:
        if not self.sessions:
            return ((0, MINUTES_PER_DAY),)
        found: list[Interval] = []
        tomorrow = day + dt.timedelta(days=1)
        trades_today = not (special and day in self.holidays)
        trades_tomorrow = not (special and tomorrow in self.holidays)
        cut = self.early_closes.get(day, MINUTES_PER_DAY) if special else MINUTES_PER_DAY
        for s in self.sessions:
            if trades_today and day.weekday() in s.days:
                start = 0 if s.opens_day_before else s.open
                close = min(s.close, cut)
                if start < close:
                    found.append((start, close))
            if s.opens_day_before and trades_tomorrow and tomorrow.weekday() in s.days:
                found.append((s.open, MINUTES_PER_DAY))
        return merge(found)

    @property
    def end_timestamp(self) -> float | None:
        """Unix time the table stops covering (midnight after ``end``, local); None without an end."""
        if self.end is None:
            return None
        after = dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time(0), self.timezone or dt.timezone.utc)
        return after.timestamp()

    def special_days(self) -> list[dt.date]:
        """Dates whose hours differ from their weekday's regular hours, sorted."""
        candidates = set(self.holidays) | set(self.early_closes)
        # A holiday also takes the evening before, when the trading day opens then.
        if any(s.opens_day_before for s in self.sessions):
            candidates |= {d - dt.timedelta(days=1) for d in self.holidays}
        return sorted(d for d in candidates if self.open_intervals(d) != self.regular_intervals(d))


def merge(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    """Sorted, overlapping or touching intervals joined."""
    out: list[list[int]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return tuple((a, b) for a, b in out)


def complement(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    """The minutes of a day not in ``intervals`` (which must be merged)."""
    out: list[Interval] = []
    pos = 0
    for start, end in intervals:
        if start > pos:
            out.append((pos, start))
        pos = max(pos, end)
    if pos < MINUTES_PER_DAY:
        out.append((pos, MINUTES_PER_DAY))
    return tuple(out)


def calendar_from_data(name: str, data: Mapping[str, Any]) -> Calendar:
    """A Calendar from the JSON shape of ``markets.json`` (what the generator writes)."""
    sessions = tuple(Session(parse_days(s["days"]), parse_time(s["open"]), parse_time(s["close"]),
                             bool(s.get("opens_day_before", False))) for s in data["sessions"])
    return Calendar(
        name=name,
        timezone=ZoneInfo(data["timezone"]),
        sessions=sessions,
        holidays=frozenset(dt.date.fromisoformat(d) for d in data.get("holidays", ())),
        early_closes={dt.date.fromisoformat(d): parse_time(t) for d, t in data.get("early_closes", {}).items()},
        end=dt.date.fromisoformat(data["end"]) if data.get("end") else None,
        source=data.get("source", ""),
    )


def load_builtin(text: str | None = None) -> dict[str, Calendar]:
    """The built-in calendars: ``always`` plus every one in ``markets.json`` (or ``text``)."""
    if text is None:
        text = resources.files(__package__).joinpath(DATA_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    found = {"always": Calendar("always")}
    for name, spec in data["markets"].items():
        found[name] = calendar_from_data(name, spec)
    return found


CALENDARS: dict[str, Calendar] = load_builtin()


def calendar(name: str | None) -> Calendar:
    """A built-in calendar by name (``None``: ``always``); KeyError for an unknown name."""
    return CALENDARS["always" if name is None else name]


def ending_within(calendars: Iterable[Calendar], now: float, horizon: float) -> list[Calendar]:
    """The calendars whose table ends less than ``horizon`` seconds after ``now`` (or has ended)."""
    seen: dict[str, Calendar] = {}
    for cal in calendars:
        end = cal.end_timestamp
        if end is not None and end - now < horizon:
            seen.setdefault(cal.name, cal)
    return list(seen.values())
