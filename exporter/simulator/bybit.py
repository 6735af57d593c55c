"""Bybit v5 public dialect for the simulator, as strict as the venue (server side of
``exporter/feeds/bybit.py``).

    -> GET /v5/public/spot              (or /v5/public/linear, /v5/public/inverse)
    -> {"req_id":"0-1","op":"subscribe","args":["publicTrade.BTCUSDT","tickers.BTCUSDT"]}
    <- {"success":true,"ret_msg":"subscribe","conn_id":"sim-1","req_id":"0-1","op":"subscribe"}
    <- {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":...,"data":[{"T":...,"s":"BTCUSDT","S":"Buy",
        "v":"0.120","p":"101.5000","L":"PlusTick","i":"...","BT":false,"RPI":false,"seq":17}]}
    <- {"topic":"tickers.BTCUSDT","type":"snapshot","ts":...,"cs":17,"data":{"symbol":"BTCUSDT","lastPrice":...}}
    -> {"op":"ping"}
    <- {"success":true,"ret_msg":"pong","conn_id":"sim-1","req_id":"","op":"ping"}        (spot)
    <- {"req_id":"","op":"pong","args":["1700000000000"],"conn_id":"sim-1"}                (linear, inverse)

The venue's rules, enforced:

- a client that has not sent ``{"op":"ping"}`` for ``ping_timeout`` seconds is dropped (close
  1008, ``rules(sim).drops["no_ping"]``). Bybit's documentation asks for a ping every 20 s and
  cuts idle connections; the simulator's default (60 s) is deliberately the strict reading, so a
  client that forgot its heartbeat is caught within a minute;
- spot subscribe requests carry at most ``max_args`` (10) args, and the args of one connection
  stay under ``max_args_chars`` (21,000 characters): a request over either limit is refused with
  ``"success": false`` and subscribes nothing (``rules(sim).refused``);
- unknown topics and duplicate subscriptions are refused the way the venue words it.

Tickers: spot sends snapshots only (last price, no book); linear and inverse send a snapshot
with ``bid1Price``/``ask1Price``, then deltas holding only the fields that changed. Settings come
from ``sim.options`` like the Binance dialect's (``ping_timeout``, ``max_args``, ``max_args_chars``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from exporter.simulator.base import StrictDialect, Tick, option, per_simulator

if TYPE_CHECKING:
    from exporter.simulator.server import Session, Simulator

CHANNELS = ("publicTrade", "tickers")
DEFAULTS: dict[str, float] = {
    "ping_timeout": 60.0,
    "max_args": 10,          # per subscribe request, spot only
    "max_args_chars": 21_000,
}


def setting(sim: "Simulator", name: str) -> float:
    return option(sim, name, DEFAULTS[name])


@dataclass
class Rules:
    drops: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    pings: int = 0
    subscribe_args: list = field(default_factory=list)    # args per subscribe request, in order


rules = per_simulator(Rules)


class BybitDialect(StrictDialect):
    name = "bybit"

    def __init__(self, session: "Session") -> None:
        super().__init__(session)
        self.rules = rules(self.sim)
        path = session.path.rstrip("/")
        self.category = path.rsplit("/", 1)[-1] if "/v5/public/" in path else "spot"
        self.conn_id = f"sim-{session.number}"
        self.ticker_sent: dict[str, dict[str, str]] = {}  # symbol -> the book last sent (linear)

    async def opened(self) -> None:
        self.last_ping = asyncio.get_running_loop().time()

    async def received(self, message: str | bytes) -> None:
        if self.closing is not None:
            return
        try:
            request = json.loads(message)
            op = request["op"]
        except (ValueError, KeyError, TypeError) as exc:
            await self.send_json({"success": False, "ret_msg": f"error:invalid request: {exc}",
                                  "conn_id": self.conn_id, "op": ""})
            return
        req_id = str(request.get("req_id", ""))
        if op == "ping":
            self.last_ping = asyncio.get_running_loop().time()
            self.rules.pings += 1
            if self.category == "spot":
                await self.send_json({"success": True, "ret_msg": "pong", "conn_id": self.conn_id,
                                      "req_id": req_id, "op": "ping"})
            else:
                await self.send_json({"req_id": req_id, "op": "pong", "args": [str(int(time.time() * 1000))],
                                      "conn_id": self.conn_id})
        elif op in ("subscribe", "unsubscribe"):
            args = request.get("args", [])
            if op == "subscribe":
                self.rules.subscribe_args.append(len(args) if isinstance(args, list) else 0)
            error = self._check(op, args)
            if error is None:
                for topic in args:
                    channel, _, symbol = topic.partition(".")
                    if op == "subscribe":
                        self.session.subscribe(symbol, channel)
                    else:
                        self.session.unsubscribe(symbol, channel)
                        self.ticker_sent.pop(symbol, None)
            ret_msg = error or ("subscribe" if op == "subscribe" and self.category == "spot" else "")
            await self.send_json({"success": error is None, "ret_msg": ret_msg, "conn_id": self.conn_id,
                                  "req_id": req_id, "op": op})
        else:
            await self.send_json({"success": False, "ret_msg": f"error:unknown op {op}", "conn_id": self.conn_id,
                                  "req_id": req_id, "op": op})

    def _check(self, op: str, args: Any) -> str | None:
        """The venue's refusal message for this request, or None when it is acceptable."""
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            return "error:args must be a list of topics"
        if op == "unsubscribe":
            return None
        limit = int(setting(self.sim, "max_args"))
        if self.category == "spot" and len(args) > limit:
            self.rules.refused["too_many_args"] += 1
            return f"error:args size {len(args)} exceeds the limit of {limit} per request for spot"
        current = [f"{c}.{s}" for s, channels in self.session.subscriptions.items() for c in channels]
        chars = sum(map(len, current)) + sum(map(len, args))
        max_chars = int(setting(self.sim, "max_args_chars"))
        if chars > max_chars:
            self.rules.refused["args_too_long"] += 1
            return f"error:args length {chars} exceeds {max_chars} characters for this connection"
        for topic in args:
            channel, _, symbol = topic.partition(".")
            if channel not in CHANNELS or not symbol or not symbol.isalnum() or symbol != symbol.upper():
                self.rules.refused["unknown_topic"] += 1
                return f"error:handler not found,topic:{topic}"
            if channel in self.session.subscriptions.get(symbol, ()):
                self.rules.refused["duplicate"] += 1
                return f"error:already subscribed,topic:{topic}"
        return None

    def events(self, tick: Tick) -> list[Any]:
        channels = self.session.subscriptions.get(tick.symbol, ())
        out: list[Any] = []
        if "publicTrade" in channels:
            out.append({"topic": f"publicTrade.{tick.symbol}", "type": "snapshot", "ts": tick.ts_ms + 1,
                        "data": [{"T": tick.ts_ms, "s": tick.symbol, "S": "Buy" if tick.seq % 2 else "Sell",
                                  "v": f"{tick.size / 1000:.3f}", "p": f"{tick.price:.4f}", "L": "PlusTick",
                                  "i": f"{tick.symbol}-{tick.seq}", "BT": False, "RPI": False,
                                  "seq": tick.seq * 7}]})
        if "tickers" in channels:
            out.append(self._ticker(tick))
        return out

    def _ticker(self, tick: Tick) -> dict[str, Any]:
        symbol = tick.symbol
        if self.category == "spot":
            data: dict[str, Any] = {"symbol": symbol, "lastPrice": f"{tick.price:.4f}",
                                    "highPrice24h": f"{tick.price * 1.01:.4f}", "lowPrice24h": f"{tick.price * 0.99:.4f}",
                                    "prevPrice24h": f"{tick.price:.4f}", "volume24h": "1000", "turnover24h": "100000",
                                    "price24hPcnt": "0.0001"}
            return {"topic": f"tickers.{symbol}", "ts": tick.ts_ms, "type": "snapshot", "cs": tick.seq, "data": data}
        book = {"bid1Price": f"{tick.bid:.4f}", "ask1Price": f"{tick.ask:.4f}"}
        last = self.ticker_sent.get(symbol)
        if last is None:
            data = {"symbol": symbol, "lastPrice": f"{tick.price:.4f}", "markPrice": f"{tick.price:.4f}",
                    "bid1Size": "1.0", "ask1Size": "1.0", **book}
            kind = "snapshot"
        else:
            # A delta carries only what changed: a side that did not move is left out, and the
            # last price comes every other update, so a client must merge to keep a full book.
            data = {"symbol": symbol, **{k: v for k, v in book.items() if last.get(k) != v}}
            if tick.seq % 2 == 0:
                data["lastPrice"] = f"{tick.price:.4f}"
            kind = "delta"
        self.ticker_sent[symbol] = book
        return {"topic": f"tickers.{symbol}", "type": kind, "data": data, "cs": tick.seq, "ts": tick.ts_ms}

    async def stream(self) -> None:
        """Stream ticks while dropping a client that stopped pinging."""
        await self.stream_while_pinged(setting(self.sim, "ping_timeout"))
