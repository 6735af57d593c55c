"""``feedwatch incidents``: what happened, from the incident journal, as a table or JSON.

    feedwatch incidents                                  # ask the exporter on 127.0.0.1:10119
    feedwatch incidents --url http://exporter:10119 --since 1h --feed stocks
    feedwatch incidents -c feedwatch.yml --open          # read the journal database directly
    feedwatch incidents --json --symbol AAPL

Through ``--url`` it reads ``GET /api/v1/incidents`` (the exporter lays the rows it has not
written yet over the database's); with ``-c`` it opens the configured journal itself (SQLite
file or PostgreSQL), so it works while the exporter is down. Both take the same filters, with the
same meaning (``exporter.journal.api.query_from``)::

    OPENED (UTC)         DURATION  KIND     SUBJECT             LEVEL (WORST)        VALUE    REASON
    2024-05-01 14:03:07  4m 12s    symbol   stocks AAPL         stale (critical)     252.0s   no update for 180.4s; updated again
    2024-05-01 14:05:51  open      trading  main kill_switch    kill_switch                   operator stop

Exit status: 0 (also when nothing matched), 1 the exporter or database could not be read, 2 a bad filter.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import msgspec

from exporter.commands import common_flags


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "incidents", parents=[common_flags()], help="list incidents from the journal (table or JSON)",
        description="List incidents (stale symbols, feeds down, trading limits breached, kill switch, circuit "
                    "breaker) from the incident journal, newest first.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--url", default=os.environ.get("FEEDWATCH_URL", "http://127.0.0.1:10119"), metavar="URL",
                        help="the exporter to ask (default: $FEEDWATCH_URL or http://127.0.0.1:10119)")
    source.add_argument("-c", "--config.file", dest="config_file", default=None, metavar="FILE",
                        help="read the journal database of this configuration directly instead "
                             "(default: ask the exporter)")
    parser.add_argument("--feed", metavar="NAME", help="incidents of this feed only (default: every feed)")
    parser.add_argument("--symbol", metavar="SYMBOL", help="of this symbol only (default: every symbol)")
    parser.add_argument("--account", metavar="NAME", help="of this trading account only (default: every account)")
    parser.add_argument("--kind", choices=("symbol", "feed", "trading"), help="of this kind only (default: all)")
    parser.add_argument("--since", metavar="WHEN",
                        help="active since a Unix time or a duration back from now, e.g. 1h (default: any time)")
    state = parser.add_mutually_exclusive_group()
    state.add_argument("--open", dest="open", action="store_const", const="true",
                       help="open incidents only (default: open and resolved)")
    state.add_argument("--resolved", dest="open", action="store_const", const="false", help="resolved ones only")
    parser.add_argument("--limit", type=int, default=100, metavar="N",
                        help="at most this many, newest first (default: 100, at most 1000)")
    parser.add_argument("--json", action="store_true", help="print JSON (the API's shape) instead of a table")
    parser.set_defaults(func=main)


def filters(args: argparse.Namespace) -> dict[str, str]:
    params = {name: getattr(args, name) for name in ("feed", "symbol", "account", "kind", "since", "open")}
    params["limit"] = str(args.limit)
    return {k: v for k, v in params.items() if v is not None}


def main(args: argparse.Namespace) -> int:
    from exporter.journal.api import BadQuery, query_from

    params = filters(args)
    try:
        query_from(params, time.time())  # the same checks either way, before any I/O
    except BadQuery as exc:
        print(f"feedwatch incidents: {exc}", file=sys.stderr)
        return 2
    try:
        answer = read_direct(args.config_file, params) if args.config_file else read_http(args.url, params)
    except RuntimeError as exc:
        print(f"feedwatch incidents: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        if answer.get("partial"):
            print(f"warning: {answer.get('problem')}", file=sys.stderr)
        print(table(answer["incidents"], answer.get("now") or time.time()))
    return 0


def read_http(url: str, params: dict[str, str]) -> dict[str, Any]:
    target = f"{url.rstrip('/')}/api/v1/incidents?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(target, timeout=15) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error", "")
        except ValueError:
            detail = ""
        raise RuntimeError(f"{target}: HTTP {exc.code} {detail}".rstrip()) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read {target}: {exc}") from None


def read_direct(config_file: str, params: dict[str, str]) -> dict[str, Any]:
    from exporter.config import ConfigError, load_file
    from exporter.journal.api import query_from
    from exporter.journal.config import JournalConfig, open_sink, resolve_path

    try:
        config = load_file(config_file)
    except ConfigError as exc:
        raise RuntimeError(f"invalid configuration: {'; '.join(exc.errors)}") from None
    journal = config.journal or JournalConfig()
    path = resolve_path(journal, config.trading) if journal.sink == "sqlite" else None
    if journal.sink == "sqlite" and (not path or not os.path.exists(path)):
        raise RuntimeError(f"no journal database to read: {path or 'journal.path is not set (memory only)'}")
    sink = open_sink(journal, path)
    now = time.time()
    query = query_from(params, now)

    async def read() -> list:
        try:
            await sink.open()
            return await sink.incidents(query)
        finally:
            await sink.close()

    try:
        incidents = asyncio.run(read())
    except Exception as exc:
        raise RuntimeError(f"cannot read the {sink.name} journal: {type(exc).__name__}: {exc}") from None
    return {"now": now, "incidents": msgspec.to_builtins(incidents), "source": sink.name, "partial": False,
            "problem": ""}


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600:02d}h"


def _value(incident: dict[str, Any]) -> str:
    value = incident.get("worst_value")
    if value is None:
        return ""
    if incident["kind"] in ("symbol", "feed"):
        return f"{value:.1f}s"
    if str(incident.get("level", "")).startswith("drawdown"):
        return f"{value * 100:.2f}%"
    return f"{value:g}"


def table(incidents: list[dict[str, Any]], now: float) -> str:
    if not incidents:
        return "no incidents match"
    rows = [("OPENED (UTC)", "DURATION", "KIND", "SUBJECT", "LEVEL (WORST)", "VALUE", "REASON")]
    for i in incidents:
        subject = (f"{i['feed']} {i['symbol']}" if i["kind"] == "symbol" else i["feed"] if i["kind"] == "feed"
                   else f"{i['account']} {i['level']}")
        level = i["level"] if i["level"] == i["worst_level"] else f"{i['level']} ({i['worst_level']})"
        duration = "open" if i.get("resolved_at") is None else _duration(i["resolved_at"] - i["opened_at"])
        reason = i.get("reason", "") + (f" [recording {i['recording']}]" if i.get("recording") else "")
        rows.append((_when(i["opened_at"]), duration, i["kind"], subject, level, _value(i), reason))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows)
