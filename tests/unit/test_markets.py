"""Session calendars (exporter/markets.py) and the Alertmanager intervals rendered from them
(exporter/alerting/mutes.py): the US equities and CME Globex hours at their edges, holidays and
early closes from the generated table through 2036, the table's end, day-name parsing, and the
interval rendering used for the committed file and for custom markets."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from exporter import markets
from exporter.alerting import mutes
from exporter.markets import NEW_YORK, Calendar, Session, calendar, parse_days

ROOT = Path(__file__).resolve().parents[2]


def ny(*args: int) -> float:
    return dt.datetime(*args, tzinfo=NEW_YORK).timestamp()


def test_holidays_after_2028_are_known() -> None:
    """The hand-written table ended with 2028: 2029-01-01 read as a trading day."""
    us = calendar("us-equities")
    assert not us.is_open(ny(2029, 1, 1, 10, 0))     # New Year's Day 2029 (a Monday)
    assert not us.is_open(ny(2035, 11, 22, 10, 0))   # Thanksgiving 2035
    assert us.is_open(ny(2035, 11, 23, 12, 59)) and not us.is_open(ny(2035, 11, 23, 13, 0))  # early close
    assert us.end is not None and us.end >= dt.date(2035, 12, 31)


def test_us_equities_session_edges() -> None:
    us, ext = calendar("us-equities"), calendar("us-equities-extended")
    assert not us.is_open(ny(2026, 3, 10, 9, 29)) and us.is_open(ny(2026, 3, 10, 9, 30))
    assert us.is_open(ny(2026, 3, 10, 15, 59)) and not us.is_open(ny(2026, 3, 10, 16, 0))
    assert ext.is_open(ny(2026, 3, 10, 4, 0)) and not ext.is_open(ny(2026, 3, 10, 20, 0))
    assert ext.is_open(ny(2026, 11, 27, 16, 59)) and not ext.is_open(ny(2026, 11, 27, 17, 0))  # early close
    assert not us.is_open(ny(2026, 3, 14, 12, 0))  # Saturday


@pytest.mark.parametrize("when, is_open", [
    ((2026, 3, 1, 17, 59), False),   # Sunday before the open
    ((2026, 3, 1, 18, 0), True),     # Sunday 18:00: Monday's trading day opens
    ((2026, 3, 2, 16, 59), True),
    ((2026, 3, 2, 17, 0), False),    # daily maintenance break
    ((2026, 3, 2, 17, 59), False),
    ((2026, 3, 2, 18, 0), True),
    ((2026, 3, 6, 16, 59), True),    # Friday
    ((2026, 3, 6, 17, 0), False),    # weekend from Friday 17:00
    ((2026, 3, 7, 12, 0), False),    # Saturday
    ((2026, 3, 8, 18, 0), True),     # Sunday of the DST change, in New York time
    ((2026, 4, 2, 17, 30), False),   # Good Friday (holiday): closed from Thursday 17:00 ...
    ((2026, 4, 2, 18, 0), False),    # ... including Thursday evening, which belongs to Friday
    ((2026, 4, 5, 18, 0), True),     # ... until Sunday 18:00
    ((2026, 1, 19, 12, 59), True),   # Martin Luther King Jr. Day: early close at 13:00 ...
    ((2026, 1, 19, 13, 0), False),
    ((2026, 1, 19, 18, 0), True),    # ... and Tuesday's trading day opens as usual
    ((2025, 12, 24, 12, 59), True),  # Christmas Eve: early close ...
    ((2025, 12, 24, 18, 0), False),  # ... and the evening belongs to Christmas, a holiday
    ((2025, 12, 25, 12, 0), False),
    ((2025, 12, 25, 18, 0), True),   # Christmas evening opens the 26th
])
def test_cme_globex_hours(when: tuple[int, ...], is_open: bool) -> None:
    assert calendar("cme-globex").is_open(ny(*when)) is is_open


def test_after_the_table_ends_the_weekly_hours_apply_and_the_end_is_reported() -> None:
    us = calendar("us-equities")
    last = us.end
    assert last is not None
    after = dt.date(last.year + 1, 1, 1)
    while after.weekday() >= 5:
        after += dt.timedelta(days=1)
    # A holiday past the table reads as a trading day (loud: stale alerts, never silence) ...
    assert us.is_open(dt.datetime.combine(after, dt.time(10), NEW_YORK).timestamp())
    # ... which is why the end is exported and warned about a year ahead.
    end_ts = us.end_timestamp
    assert end_ts == dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), NEW_YORK).timestamp()
    year = 365 * 86400
    assert markets.ending_within([us, us, calendar("always")], end_ts - year + 1, year) == [us]
    assert markets.ending_within([us], end_ts - year - 1, year) == []
    assert markets.ending_within([us], end_ts + 1, year) == [us]
    assert calendar("always").end_timestamp is None


@pytest.mark.parametrize("specs, days", [
    (["mon-fri"], {0, 1, 2, 3, 4}),
    (["monday:friday"], {0, 1, 2, 3, 4}),
    (["Sat", "sunday"], {5, 6}),
    (["fri-mon"], {4, 5, 6, 0}),
    (["wed"], {2}),
])
def test_parse_days(specs: list[str], days: set[int]) -> None:
    assert parse_days(specs) == days


@pytest.mark.parametrize("bad", [["fry"], ["mon-fry"], ["weekdays"], [""]])
def test_parse_days_refuses_unknown_names(bad: list[str]) -> None:
    with pytest.raises(ValueError, match="unknown day"):
        parse_days(bad)


def test_times_and_sessions_are_checked() -> None:
    assert markets.parse_time("24:00") == 1440 and markets.parse_time("9:30") == 570
    for bad in ("24:01", "9.30", "25:00", "", "noon"):
        with pytest.raises(ValueError):
            markets.parse_time(bad)
    with pytest.raises(ValueError, match="open before it closes"):
        Session(frozenset({0}), 600, 600)
    Session(frozenset({0}), 1080, 1020, opens_day_before=True)  # 18:00 the evening before to 17:00


def test_the_cache_follows_the_date() -> None:
    """is_open caches one date's intervals; asking about another date must not reuse them."""
    us = calendar("us-equities")
    assert not us.is_open(ny(2026, 12, 25, 10, 0))
    assert us.is_open(ny(2026, 12, 23, 10, 0))
    assert not us.is_open(ny(2026, 12, 25, 10, 0))


# --- Alertmanager intervals ---------------------------------------------------------------------

def test_closed_entries_of_a_custom_market() -> None:
    cal = Calendar("lse", NEW_YORK, (Session(frozenset(range(5)), 480, 990),),
                   holidays=frozenset({dt.date(2026, 12, 25), dt.date(2026, 12, 26)}),
                   early_closes={dt.date(2026, 12, 24): 750})
    entries = [entry for entry, _ in mutes.closed_entries(cal)]
    assert entries == [
        {"weekdays": ["saturday", "sunday"], "location": "America/New_York"},
        {"weekdays": ["monday:friday"], "times": [{"start_time": "00:00", "end_time": "08:00"},
                                                  {"start_time": "16:30", "end_time": "24:00"}],
         "location": "America/New_York"},
        {"years": ["2026"], "months": ["12"], "days_of_month": ["24"],
         "times": [{"start_time": "12:30", "end_time": "16:30"}], "location": "America/New_York"},
        # The 26th is a Saturday: closed anyway, no entry.
        {"years": ["2026"], "months": ["12"], "days_of_month": ["25"], "location": "America/New_York"},
    ]


def test_always_open_has_no_interval() -> None:
    with pytest.raises(ValueError, match="always open"):
        mutes.closed_entries(calendar("always"))


def test_render_block_is_valid_yaml_and_replace_block_keeps_the_rest_byte_for_byte() -> None:
    text = ("# head\ntime_intervals:\n  # mine\n  " + mutes.BEGIN_MARKER + "\n  - name: old\n  "
            + mutes.END_MARKER + "\n\n# tail: 'quoted'  \nreceivers: []\n")
    block = mutes.render_block([(calendar("cme-globex"), "CME")])
    out = mutes.replace_block(text, block)
    assert out.startswith("# head\ntime_intervals:\n  # mine\n")
    assert out.endswith("  " + mutes.END_MARKER + "\n\n# tail: 'quoted'  \nreceivers: []\n")
    parsed = yaml.safe_load(out)
    assert parsed["time_intervals"] == [mutes.time_interval(calendar("cme-globex"))]
    with pytest.raises(ValueError, match="one generated block"):
        mutes.replace_block("time_intervals: []\n", block)


def test_add_market_mutes_copies_the_us_equities_routes() -> None:
    config = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    cal = Calendar("lse", NEW_YORK, (Session(frozenset(range(5)), 480, 990),))
    assert mutes.add_market_mutes(config, [cal]) == ["lse-closed"]
    assert config["time_intervals"][-1] == mutes.time_interval(cal)
    found = []

    def visit(route: dict, severity: str) -> None:
        for m in route.get("matchers", []):
            severity = m if m.startswith("severity=") else severity
        if route.get("mute_time_intervals") == ["lse-closed"]:
            assert 'market="lse"' in route["matchers"]
            found.append(severity)
        for child in route.get("routes", []):
            visit(child, severity)

    visit(config["route"], "")
    assert sorted(found) == ['severity="critical"', 'severity="warning"']
    with pytest.raises(ValueError, match="already exists"):
        mutes.add_market_mutes(config, [cal])
    with pytest.raises(ValueError, match="nothing to copy"):
        mutes.add_market_mutes({"route": {"receiver": "x"}}, [Calendar("x", NEW_YORK, (Session(frozenset({0}), 0, 60),))])


def test_the_runtime_needs_neither_pandas_nor_exchange_calendars() -> None:
    """exchange_calendars (and pandas under it) is a development tool: the exporter, its command
    line and its calendars load from the generated table without importing either."""
    import subprocess
    import sys

    code = ("import sys; from exporter.cli import build_parser; import exporter.service, exporter.alerting.mutes; "
            "from exporter.markets import calendar; build_parser().format_help(); calendar('cme-globex').is_open(0); "
            "bad = [m for m in ('pandas', 'exchange_calendars', 'numpy') if m in sys.modules]; "
            "sys.exit(f'imported: {bad}' if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
