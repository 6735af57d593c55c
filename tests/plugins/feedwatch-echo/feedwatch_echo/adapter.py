"""The echo venue's adapter: frames in, book updates and signals out (no I/O, like every venue)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar, Sequence

from exporter.feeds.base import NOTHING, Acknowledged, Adapter, Problem, Signal
from exporter.text import preview


@dataclass(frozen=True)
class EchoOptions:
    """The venue's own config keys, checked by feedwatch's strict loader like a built-in's."""

    greeting: str = "hello"


class EchoTrade:
    """One trade, shaped the way ``FeedBook.apply_one`` reads updates."""

    __slots__ = ("symbol", "price", "ts")
    is_quote: ClassVar[bool] = False

    def __init__(self, symbol: str, price: float, ts: float) -> None:
        self.symbol, self.price, self.ts = symbol, price, ts


class EchoAdapter(Adapter):
    kind = "echo"
    Options = EchoOptions
    description = "the echo JSON protocol (an example plugin venue)"

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        return [json.dumps({"op": "subscribe", "symbols": list(symbols), "greeting": self.options.greeting})]

    def handle(self, data: str | bytes, now: float) -> Sequence[Signal]:
        try:
            message = json.loads(data)
            if "subscribed" in message:
                return (Acknowledged(tuple(str(s) for s in message["subscribed"])),)
            trade = EchoTrade(str(message["s"]), float(message["p"]), int(message["t"]))
        except (ValueError, TypeError, KeyError) as exc:
            return (Problem("decode", f"{exc!r} in {preview(data)}"),)
        self.feed.apply_one(trade, now)
        return NOTHING

    @classmethod
    def check_config(cls, config) -> list[str]:
        if not config.options.greeting:
            return ["greeting: must not be empty"]
        return []
