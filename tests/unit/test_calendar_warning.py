"""The start-up warning for a market calendar that runs out (exporter/service.py): once per
market in use whose holiday table ends within a year, naming the date and the remedy; silent for
calendars far from their end and for 24/7 feeds."""

from __future__ import annotations

import logging

import pytest

from exporter.clock import FakeClock
from exporter.config import load_data
from exporter.markets import calendar
from exporter.service import Service
from tests.waiting import free_port

DAY = 86400.0


def config(*markets_: str | None, custom: dict | None = None):
    url = f"ws://127.0.0.1:{free_port()}/nobody"  # refused: the feeds never connect
    return load_data({"markets": custom or {}, "feeds": [
        {"name": f"f{i}", "kind": "polygon", "url": url, "symbols": ["X"], **({"market": m} if m else {})}
        for i, m in enumerate(markets_)]}, {})


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "exporter.service"]


async def test_warns_once_per_market_ending_within_a_year(caplog: pytest.LogCaptureFixture) -> None:
    end = calendar("us-equities").end_timestamp
    clock = FakeClock(end - 100 * DAY)
    service = Service(config("us-equities", "us-equities", "cme-globex", None), clock)
    caplog.set_level(logging.INFO)
    await service.start()
    try:
        lines = warnings(caplog)
        assert len(lines) == 2, lines  # us-equities once (two feeds), cme-globex once, none for 24/7
        us = next(line for line in lines if line.startswith("market calendar us-equities "))
        assert f"up to {calendar('us-equities').end} (100 day(s) left)" in us
        assert "upgrade feedwatch" in us
    finally:
        await service.stop()


async def test_silent_far_from_the_end(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(calendar("us-equities").end_timestamp - 400 * DAY)
    service = Service(config("us-equities", "cme-globex"), clock)
    caplog.set_level(logging.INFO)
    await service.start()
    await service.stop()
    assert warnings(caplog) == []


def test_a_custom_market_past_its_end_says_so(caplog: pytest.LogCaptureFixture) -> None:
    lse = {"lse": {"timezone": "Europe/London", "holidays": ["2026-12-25"],
                   "sessions": [{"days": ["mon-fri"], "open": "08:00", "close": "16:30"}]}}
    cfg = config("lse", custom=lse)
    service = Service(cfg, FakeClock(cfg.feeds[0].resolved_calendar.end_timestamp + DAY))
    caplog.set_level(logging.INFO)
    service.warn_calendars_ending()
    assert warnings(caplog) == [
        "market calendar lse knows holidays only up to 2026-12-31 (already past): after that its holidays "
        "and early closes read as trading days; extend its holidays and holidays_until in the config"]
