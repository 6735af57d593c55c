"""The live trading view over HTTP: ``GET /api/v1/trading[/{account}]`` and the status page's panels.

``install(app)`` is a ``feedwatch.web`` extension of ``exporter.web.app.create_app``; it does
nothing without a ``trading:`` section. It finds the shared ``Tracker`` (the same object the
``kind: trading`` feed and ``POST /api/v1/events`` write to) and adds:

- ``GET /api/v1/trading``: every account's view (``view.AccountView``), for bots and scripts;
- ``GET /api/v1/trading/{account}``: one account's (404 naming the known ones otherwise);
- the ``trading`` part of the status page's snapshot: the accounts' views and the trading feeds'
  names (the page shows those as the accounts' event streams, not as empty price feeds);
- a push of that part on every tracker change (``web.app.push``): the page shows a kill switch,
  a trade or a breach within ``push_min_interval`` (0.1 s) plus the network, not at the next
  1-second snapshot;
- the ``accounts`` sparkline series: each account's equity over the last hour.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from exporter.trading.api import TRACKER
from exporter.trading.tracker import Tracker, attach
from exporter.trading.view import account_view
from exporter.web.app import CLOCK, CONFIG, HISTORY, SNAPSHOT_PARTS, json_problem, json_response, push

PART = "trading"


def install(app: web.Application) -> None:
    config = app[CONFIG]
    if config.trading is None:
        return
    tracker = app.get(TRACKER) or attach(config, app[CLOCK].time())
    if tracker is None:
        return
    app[TRACKER] = tracker
    trading_feeds = [f.name for f in config.feeds if f.kind == "trading"]

    def part(now: float) -> dict[str, Any]:
        return {"feeds": trading_feeds,
                "accounts": [account_view(account, now) for account in tracker.accounts.values()]}

    app[SNAPSHOT_PARTS][PART] = part
    app[HISTORY].add("accounts", lambda now: {name: account.equity for name, account in tracker.accounts.items()})

    def changed(_tracker: Tracker, _accounts: frozenset[str]) -> None:
        push(app, PART)

    tracker.listeners.append(changed)

    async def forget(_app: web.Application) -> None:
        if changed in tracker.listeners:
            tracker.listeners.remove(changed)

    app.on_cleanup.append(forget)
    app.router.add_get("/api/v1/trading", all_accounts)
    app.router.add_get("/api/v1/trading/{account}", one_account)


async def all_accounts(request: web.Request) -> web.Response:
    tracker = request.app[TRACKER]
    now = request.app[CLOCK].time()
    return json_response({"now": now, "accounts": [account_view(a, now) for a in tracker.accounts.values()]})


async def one_account(request: web.Request) -> web.Response:
    tracker = request.app[TRACKER]
    name = request.match_info["account"]
    account = tracker.accounts.get(name)
    if account is None:
        return json_problem(f"unknown account {name!r} (configured: {', '.join(tracker.accounts) or 'none'})", 404)
    return json_response(account_view(account, request.app[CLOCK].time()))
