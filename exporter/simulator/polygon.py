"""Polygon.io stocks dialect for the simulator (the server side of ``exporter/feeds/polygon.py``).

    -> (connect)
    <- [{"ev":"status","status":"connected","message":"Connected Successfully"}]
    -> {"action":"auth","params":"KEY"}
    <- [{"ev":"status","status":"auth_success","message":"authenticated"}]
       or [{"ev":"status","status":"auth_failed","message":"authentication failed"}] and a close
       or [{"ev":"status","status":"max_connections","message":"Maximum number of ..."}] and a close
    -> {"action":"subscribe","params":"T.AAPL,Q.AAPL"}
    <- [{"ev":"status","status":"success","message":"subscribed to: T.AAPL"},
        {"ev":"status","status":"success","message":"subscribed to: Q.AAPL"}]
    <- [{"ev":"T","sym":"AAPL","i":"12","x":4,"p":189.5,"s":100,"c":[],"t":1700000000123,"q":12,"z":3},
        {"ev":"Q","sym":"AAPL","bx":4,"bp":189.49,"bs":3,"ax":7,"ap":189.51,"as":2,"c":0,"t":1700000000123,"q":12,"z":3}]

Every tick of every subscribed symbol goes into one JSON array per stream tick, as Polygon
batches events. ``t`` is Unix milliseconds. A wrong key (when the simulator has one), the
``reject_auth`` fault or the ``max_connections`` fault refuse the login and close the socket.
"""

from __future__ import annotations

import json
from typing import Any

from exporter.simulator.base import Dialect, Tick, compact_json

CHANNELS = ("T", "Q")


def _status(status: str, message: str) -> dict[str, str]:
    return {"ev": "status", "status": status, "message": message}


def _frame(events: list[Any]) -> str:
    """Polygon sends every message as a JSON array of events."""
    return compact_json(events)


class PolygonDialect(Dialect):
    name = "polygon"
    requires_auth = True

    async def opened(self) -> None:
        await self.session.send(_frame([_status("connected", "Connected Successfully")]))

    async def received(self, message: str | bytes) -> None:
        try:
            request = json.loads(message)
            action = request["action"]
            params = request.get("params", "")
            if not isinstance(params, str):
                raise TypeError("params must be a string")
        except (ValueError, KeyError, TypeError) as exc:
            await self.session.send(_frame([_status("error", f"invalid message: {exc}")]))
            return
        if action == "auth":
            await self._auth(params)
        elif action in ("subscribe", "unsubscribe"):
            await self._subscription(action, params)
        else:
            await self.session.send(_frame([_status("error", f"unknown action {action!r}")]))

    async def _auth(self, key: str) -> None:
        sim, session = self.sim, self.session
        if sim.faults.max_connections:
            sim.stats.auth_rejected += 1
            await session.send(_frame([_status(
                "max_connections",
                "Maximum number of websocket connections exceeded. You have reached the connection "
                "limit for your account.")]))
            await session.close(1008, "max connections")
        elif sim.faults.reject_auth or (sim.api_key is not None and key != sim.api_key):
            sim.stats.auth_rejected += 1
            await session.send(_frame([_status("auth_failed", "authentication failed")]))
            await session.close(1008, "authentication failed")
        else:
            sim.stats.auth_ok += 1
            session.authenticated = True
            await session.send(_frame([_status("auth_success", "authenticated")]))

    async def _subscription(self, action: str, params: str) -> None:
        session = self.session
        if not session.authenticated:
            await session.send(_frame([_status("error", "not authorized")]))
            return
        replies = []
        for param in filter(None, (p.strip() for p in params.split(","))):
            channel, _, symbol = param.partition(".")
            if channel not in CHANNELS or not symbol:
                replies.append(_status("error", f"invalid subscription param {param!r}"))
            elif action == "subscribe":
                session.subscribe(symbol, channel)
                replies.append(_status("success", f"subscribed to: {param}"))
            else:
                session.unsubscribe(symbol, channel)
                replies.append(_status("success", f"unsubscribed to: {param}"))
        if replies:
            await session.send(_frame(replies))

    def events(self, tick: Tick) -> list[Any]:
        channels = self.session.subscriptions.get(tick.symbol, ())
        out: list[Any] = []
        if "T" in channels:
            out.append({"ev": "T", "sym": tick.symbol, "i": str(tick.seq), "x": 4, "p": tick.price,
                        "s": tick.size, "c": [], "t": tick.ts_ms, "q": tick.seq, "z": 3})
        if "Q" in channels:
            out.append({"ev": "Q", "sym": tick.symbol, "bx": 4, "bp": tick.bid, "bs": 3, "ax": 7,
                        "ap": tick.ask, "as": 2, "c": 0, "t": tick.ts_ms, "q": tick.seq, "z": 3})
        return out

    def pack(self, events: list[Any]) -> list[str]:
        return [_frame(events)]
