"""The closed-market mute in a real Alertmanager (the installed 0.25), not just on paper.

1. ``location`` is honoured: two routes muted by intervals written in America/New_York, one
   around the current New York time (muted), one around the current UTC wall-clock time
   (4-5 hours away in New York: not muted). If the binary ignored ``location`` and read the times
   as UTC, the outcome would be reversed.
2. The committed routing mutes by the alert's ``market`` label (which the rules copy from the
   exporter's feedwatch_feed_info), not by the feed's name: FeedSymbolStale on feeds whose market
   is us-equities, us-equities-extended or cme-globex is muted exactly when exporter/markets.py
   says that market is closed right now, while the same alert on a feed named "stocks" with
   market="always" (a simulator, say) is delivered either way.

"Muted" is read from Alertmanager's own debug log line ("route is within mute time"), logged at
the moment the group would have notified; "delivered" from a webhook on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from exporter.alerting import receivers as alerting, stack as alertstack
from exporter.markets import NEW_YORK, calendar
from tests.waiting import async_wait_for, free_port

MUTED_LOG = "route is within mute time"


@pytest.fixture
async def webhook() -> AsyncIterator[alertstack.WebhookReceiver]:
    receiver = alertstack.WebhookReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


def _start(config: dict[str, Any], workdir: Path) -> alertstack.Process:
    if alertstack.find_binary(alertstack.ALERTMANAGER_BINARIES) is None:
        pytest.fail(f"prometheus-alertmanager is not installed ({alertstack.INSTALL_HINT})")
    # Debug logs: the mute stage says "route is within mute time" when it drops a notification.
    return alertstack.start_alertmanager(config, workdir, free_port(), extra_args=("--log.level=debug",))


def _post(url: str, labels_list: list[dict[str, str]]) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    body = [{"labels": labels, "startsAt": now.isoformat(),
             "endsAt": (now + dt.timedelta(minutes=5)).isoformat()} for labels in labels_list]
    req = urllib.request.Request(f"{url}/api/v2/alerts", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def _muted_lines(process: alertstack.Process) -> int:
    return process.log_path.read_text(errors="replace").count(MUTED_LOG)


def _window(minute: int) -> list[dict[str, str]]:
    """[minute-20, minute+20) of a day as Alertmanager time ranges (split at midnight)."""
    def hhmm(m: int) -> str:
        return f"{m // 60:02d}:{m % 60:02d}"

    start, end = minute - 20, minute + 20
    if start < 0:
        return [{"start_time": "00:00", "end_time": hhmm(end)}, {"start_time": hhmm(start + 1440), "end_time": "24:00"}]
    if end > 1440:
        return [{"start_time": hhmm(start), "end_time": "24:00"}, {"start_time": "00:00", "end_time": hhmm(end - 1440)}]
    return [{"start_time": hhmm(start), "end_time": hhmm(end)}]


async def test_location_is_honoured(webhook: alertstack.WebhookReceiver, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    ny = now.astimezone(NEW_YORK)
    config = {
        "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "1h", "routes": [
                      {"matchers": ['alertname="NewYorkNow"'], "mute_time_intervals": ["new-york-now"]},
                      {"matchers": ['alertname="UtcClockNow"'], "mute_time_intervals": ["utc-clock-now"]},
                  ]},
        "time_intervals": [
            {"name": "new-york-now", "time_intervals": [
                {"times": _window(ny.hour * 60 + ny.minute), "location": "America/New_York"}]},
            {"name": "utc-clock-now", "time_intervals": [
                {"times": _window(now.hour * 60 + now.minute), "location": "America/New_York"}]},
        ],
        "receivers": [{"name": "hook", "webhook_configs": [{"url": webhook.url, "send_resolved": False}]}],
    }
    am = _start(config, tmp_path)
    try:
        await async_wait_for(lambda: alertstack.is_ready(am), timeout=20, what="Alertmanager ready")
        _post(am.url, [{"alertname": "NewYorkNow"}, {"alertname": "UtcClockNow"}])
        await async_wait_for(lambda: webhook.received, timeout=20, what="the UtcClockNow notification")
        await async_wait_for(lambda: _muted_lines(am) >= 1, timeout=20, what="NewYorkNow muted")
        names = {a["labels"]["alertname"] for n in webhook.received for a in n["alerts"]}
        assert names == {"UtcClockNow"}
    finally:
        am.stop()


async def test_staleness_is_muted_when_the_feeds_market_is_closed(
        webhook: alertstack.WebhookReceiver, tmp_path: Path) -> None:
    base = alertstack.ALERTMANAGER_CONFIG
    config, _ = alerting.render(base.read_text(), {"FEEDWATCH_WEBHOOK_URL": webhook.url}, base.parent)
    alertstack.speed_up_routes(config, 30.0)  # group_wait 1s: the verdict comes quickly
    am = _start(config, tmp_path)
    # feed name -> market label; the names say nothing about the market on purpose.
    feeds = {"equities": "us-equities", "premarket": "us-equities-extended", "futures": "cme-globex",
             "stocks": "always", "binance": "always"}

    def closed_now() -> set[str]:
        now = time.time()
        return {feed for feed, market in feeds.items() if not calendar(market).is_open(now)}

    try:
        await async_wait_for(lambda: alertstack.is_ready(am), timeout=20, what="Alertmanager ready")
        closed_before = closed_now()
        common = {"alertname": "FeedSymbolStale", "severity": "critical", "team": "data",
                  "job": "feedwatch", "instance": "feedwatch:10119", "symbol": "X"}
        # One group per feed (group_by alertname, feed): each is muted or delivered on its own.
        _post(am.url, [{**common, "feed": feed, "market": market} for feed, market in feeds.items()])

        def delivered() -> set[str]:
            return {a["labels"]["feed"] for n in webhook.received for a in n["alerts"]}

        open_feeds = set(feeds) - closed_before
        await async_wait_for(lambda: open_feeds <= delivered(), timeout=20,
                             what=f"the notifications of the feeds whose market is open ({sorted(open_feeds)})")
        await async_wait_for(lambda: _muted_lines(am) >= len(closed_before), timeout=20,
                             what=f"the alerts of the closed markets muted ({sorted(closed_before)})")
        if closed_now() != closed_before:  # a session opened or closed meanwhile: no verdict
            pytest.fail("a market session changed state during the test; run it again")
        assert {"stocks", "binance"} <= open_feeds  # market="always" is never muted
        assert delivered() == open_feeds
        assert _muted_lines(am) == len(closed_before)
    finally:
        am.stop()
