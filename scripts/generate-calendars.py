#!/usr/bin/env python3
"""Generate feedwatch's market calendars from exchange_calendars (a dev-time tool: ``make calendars``).

Writes, from the maintained ``exchange_calendars`` package (pandas-based; installed by the
``calendars`` and ``test`` extras, never needed at run time):

1. ``exporter/markets.json``: the built-in calendars' sessions, holidays and early closes through
   ``END``, read by ``exporter/markets.py``;
2. the generated block of ``alertmanager/alertmanager.yml`` (between its BEGIN/END GENERATED
   markers): one ``<market>-closed`` time interval per calendar, rendered from the calendars
   of step 1 by ``exporter/alerting/mutes.py``, so Alertmanager mutes exactly when the exporter
   says closed. The rest of that file is left byte for byte.

    python scripts/generate-calendars.py           # rewrite both
    python scripts/generate-calendars.py --check   # regenerate in memory; exit 1 with a diff if the committed files differ

Which exchange_calendars calendar feeds which market, and what we take from it:

- ``us-equities``, ``us-equities-extended`` <- ``XNYS`` (NYSE): full-day holidays (weekdays
  without a session) and early closes (sessions closing before 16:00; at that time for the
  regular session, at 17:00 for the extended one, when post-market trading ends those days).
- ``cme-globex`` <- ``CMES`` (CME): holidays and early closes as above, the close converted from
  Chicago to New York time. exchange_calendars runs a CME session from 17:00 Chicago the day
  before to 17:00 Chicago, without the daily maintenance halt; we keep its dates and use Globex's
  real hours (18:00 the evening before to 17:00 New York, the 17:00-18:00 break). Its limits:
  one calendar for every CME product (it takes the most conservative hours, so a July 4th early
  close for equity futures also mutes grain futures, which are closed all day), and it does not
  list Juneteenth (CME halts early on it since 2022): on those days the exporter expects data.

A source whose shape changes (a late open, an odd weekday, a session not opening where we
expect) stops the generator with a message, rather than writing a table that would lie.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import json
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter import markets  # noqa: E402  (the repository's, not an installed copy)
from exporter.alerting import mutes  # noqa: E402

DATA_PATH = ROOT / "exporter" / markets.DATA_FILE
ALERTMANAGER_PATH = ROOT / "alertmanager" / "alertmanager.yml"
FIRST = dt.date(2025, 1, 1)
END = dt.date(2036, 12, 31)
NEW_YORK = "America/New_York"

# Our markets: their hours (local to NEW_YORK), the exchange_calendars code for their dates, how
# an early close of the source maps to ours, and the comment above their Alertmanager interval.
MARKETS: dict[str, dict[str, Any]] = {
    "us-equities": {
        "source": "XNYS",
        "sessions": [{"days": ["monday:friday"], "open": "09:30", "close": "16:00"}],
        "early_close": None,  # the source's own close time
        "comment": "When the regular US equities session (09:30-16:00 America/New_York, Monday to Friday)\n"
                   "is closed: nights, weekends, NYSE holidays and the afternoon of early-close days.",
    },
    "us-equities-extended": {
        "source": "XNYS",
        "sessions": [{"days": ["monday:friday"], "open": "04:00", "close": "20:00"}],
        "early_close": "17:00",  # post-market ends at 17:00 when the regular session closes early
        "comment": "When US equities trade neither in the regular session nor pre- or post-market\n"
                   "(04:00-20:00 America/New_York, Monday to Friday; until 17:00 on early-close days).",
    },
    "cme-globex": {
        "source": "CMES",
        "sessions": [{"days": ["monday:friday"], "open": "18:00", "opens_day_before": True, "close": "17:00"}],
        "early_close": None,
        "comment": "When CME Globex is closed: the daily 17:00-18:00 America/New_York maintenance break, Friday\n"
                   "17:00 to Sunday 18:00, CME holidays (from 18:00 the evening before) and early closes (until\n"
                   "18:00, when the next trading day opens).",
    },
}


def _source_dates(code: str, sessions: list[dict[str, Any]]) -> tuple[list[str], dict[str, str], str]:
    """(holidays, early closes as {date: "HH:MM" New York}, version) of an exchange_calendars calendar."""
    import exchange_calendars
    import pandas as pd

    cal = exchange_calendars.get_calendar(code, start=FIRST.isoformat(), end=END.isoformat())
    if cal.last_session.date() < END:
        raise SystemExit(f"{code}: exchange_calendars covers only to {cal.last_session.date()}, not {END}")
    days = markets.parse_days(sessions[0]["days"])
    weekdays = {d.date() for d in pd.date_range(FIRST, END, freq="D") if d.weekday() in days}
    schedule = cal.schedule
    traded = {d.date() for d in schedule.index}
    if not traded <= weekdays:
        raise SystemExit(f"{code}: sessions on days our calendar does not trade: {sorted(traded - weekdays)[:5]}")
    holidays = sorted(d.isoformat() for d in weekdays - traded)
    ny = ZoneInfo(NEW_YORK)
    source_tz = ZoneInfo(str(cal.tz))
    regular_open = cal.open_times[-1][1]
    regular_close = cal.close_times[-1][1]
    early: dict[str, str] = {}
    for label, row in schedule.iterrows():
        day = label.date()
        opened = row["open"].to_pydatetime().astimezone(source_tz)
        closed = row["close"].to_pydatetime().astimezone(source_tz)
        expected_open_day = day - dt.timedelta(days=1) if cal.open_offset == -1 else day
        if opened.time() != regular_open or opened.date() != expected_open_day:
            raise SystemExit(f"{code}: session {day} opens at {opened}, not {regular_open} on {expected_open_day}: "
                             "the calendar model has no late opens; extend it before regenerating")
        if closed.date() != day:
            raise SystemExit(f"{code}: session {day} closes on {closed.date()}")
        if closed.time() < regular_close:
            early[day.isoformat()] = closed.astimezone(ny).strftime("%H:%M")
        elif closed.time() > regular_close:
            raise SystemExit(f"{code}: session {day} closes late ({closed}); the model has no late closes")
    return holidays, early, exchange_calendars.__version__


def generate() -> tuple[dict[str, Any], str]:
    """(the markets.json data, the exchange_calendars version used)."""
    out: dict[str, Any] = {}
    version = ""
    cache: dict[str, tuple[list[str], dict[str, str], str]] = {}
    for name, spec in MARKETS.items():
        if spec["source"] not in cache:
            cache[spec["source"]] = _source_dates(spec["source"], spec["sessions"])
        holidays, early, version = cache[spec["source"]]
        if spec["early_close"] is not None:
            early = {day: spec["early_close"] for day in early}
        out[name] = {
            "source": f"exchange_calendars {spec['source']}",
            "timezone": NEW_YORK,
            "sessions": spec["sessions"],
            "holidays": holidays,
            "early_closes": early,
            "end": END.isoformat(),
        }
    return {
        "generated_by": "scripts/generate-calendars.py (make calendars) from exchange_calendars "
                        f"{version}, {FIRST} to {END}: do not edit by hand",
        "markets": out,
    }, version


def render(data: dict[str, Any], alertmanager_text: str) -> tuple[str, str]:
    """(markets.json text, alertmanager.yml text) for ``data``."""
    json_text = json.dumps(data, indent=2) + "\n"
    calendars = markets.load_builtin(json_text)
    block = mutes.render_block(
        (calendars[name], f"{spec['comment']}\nDates: {data['markets'][name]['source']}, to "
                          f"{data['markets'][name]['end']}.") for name, spec in MARKETS.items())
    return json_text, mutes.replace_block(alertmanager_text, block)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="regenerate in memory and exit 1 (with a diff) if the committed files differ")
    args = parser.parse_args(argv)
    data, _ = generate()
    json_text, am_text = render(data, ALERTMANAGER_PATH.read_text())
    stale = []
    for path, text in ((DATA_PATH, json_text), (ALERTMANAGER_PATH, am_text)):
        old = path.read_text() if path.exists() else ""
        if old == text:
            continue
        stale.append(path)
        if args.check:
            rel = str(path.relative_to(ROOT))
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                                       f"{rel} (committed)", f"{rel} (generated)", n=1))
        else:
            path.write_text(text)
    if args.check and stale:
        print(f"\n{len(stale)} generated file(s) differ from exchange_calendars: run `make calendars` "
              "(python scripts/generate-calendars.py) and commit the result", file=sys.stderr)
        return 1
    if not args.check:
        print("up to date" if not stale else "wrote " + ", ".join(str(p.relative_to(ROOT)) for p in stale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
