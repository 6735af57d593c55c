"""The echo venue's simulator dialect: ``feedwatch simulate --venue echo`` once installed."""

from __future__ import annotations

import json
from typing import Any

from exporter.simulator.base import Dialect, Tick


class EchoDialect(Dialect):
    name = "echo"

    async def received(self, message: str | bytes) -> None:
        request = json.loads(message)
        if request.get("op") == "subscribe":
            for symbol in request["symbols"]:
                self.session.subscribe(symbol)
            await self.send_json({"subscribed": request["symbols"]})

    def events(self, tick: Tick) -> list[Any]:
        return [{"s": tick.symbol, "p": tick.price, "t": tick.ts_ms}]
