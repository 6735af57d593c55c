"""A JSON feed of nobody's in particular, for the generic adapter (``exporter/feeds/generic.py``).

It speaks a Coinbase-like protocol that no built-in adapter knows, so only a YAML-configured
generic feed can read it::

    -> {"type":"subscribe","channels":["ticker"],"product_ids":["BTC-USD","ETH-USD"]}
    <- {"type":"subscriptions","channels":[{"name":"ticker","product_ids":["BTC-USD","ETH-USD"]}]}
    <- {"type":"ticker","product_id":"BTC-USD","price":"101.5","best_bid":"101.49","best_ask":"101.51",
        "time":"2024-05-01T12:00:00.123000Z","trade_id":17}
    -> {"type":"ping"}
    <- {"type":"pong"}

Symbols in the URL (``?product_ids=BTC-USD,ETH-USD``) subscribe on connect. With
``sim.options["ping_timeout"]`` set, a client that sends no ``{"type":"ping"}`` for that long is
dropped (close 1008, ``rules(sim).drops["no_ping"]``): the application-level heartbeat the
generic adapter's ``ping_message`` is for. Off by default (``0``).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from exporter.simulator.base import StrictDialect, Tick, option, per_simulator

if TYPE_CHECKING:
    from exporter.simulator.server import Session


@dataclass
class Rules:
    drops: Counter = field(default_factory=Counter)
    pings: int = 0


rules = per_simulator(Rules)


class GenericDialect(StrictDialect):
    name = "generic"

    def __init__(self, session: "Session") -> None:
        super().__init__(session)
        self.rules = rules(self.sim)

    async def opened(self) -> None:
        self.last_ping = asyncio.get_running_loop().time()
        for value in self.session.query.get("product_ids", []):
            for symbol in filter(None, value.split(",")):
                self.session.subscribe(symbol)

    async def received(self, message: str | bytes) -> None:
        try:
            request = json.loads(message)
            kind = request["type"]
        except (ValueError, KeyError, TypeError) as exc:
            await self.send_json({"type": "error", "message": f"malformed request: {exc}"})
            return
        if kind == "ping":
            self.last_ping = asyncio.get_running_loop().time()
            self.rules.pings += 1
            await self.send_json({"type": "pong"})
        elif kind in ("subscribe", "unsubscribe"):
            products = request.get("product_ids", [])
            if not isinstance(products, list):
                await self.send_json({"type": "error", "message": "product_ids must be a list"})
                return
            for symbol in products:
                if kind == "subscribe":
                    self.session.subscribe(str(symbol))
                else:
                    self.session.unsubscribe(str(symbol))
            await self.send_json({"type": "subscriptions",
                                  "channels": [{"name": "ticker", "product_ids": sorted(self.session.subscriptions)}]})
        else:
            await self.send_json({"type": "error", "message": f"unknown type {kind!r}"})

    def events(self, tick: Tick) -> list[Any]:
        if tick.symbol not in self.session.subscriptions:
            return []
        when = datetime.fromtimestamp(tick.ts_ms / 1000, timezone.utc).isoformat(timespec="microseconds")
        return [{"type": "ticker", "product_id": tick.symbol, "price": f"{tick.price:.4f}",
                 "best_bid": f"{tick.bid:.4f}", "best_ask": f"{tick.ask:.4f}",
                 "time": when.replace("+00:00", "Z"), "trade_id": tick.seq}]

    async def stream(self) -> None:
        timeout = option(self.sim, "ping_timeout", 0.0)
        if timeout <= 0:  # the default: no heartbeat required
            await self.session.stream_ticks()
        else:
            await self.stream_while_pinged(timeout)
