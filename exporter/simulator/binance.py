"""Binance spot streams dialect for the simulator, as strict as the venue (server side of
``exporter/feeds/binance.py``).

    -> GET /stream                      (or /stream?streams=btcusdt@trade/..., or /ws for raw payloads)
    -> {"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}
    <- {"result":null,"id":1}
    <- {"stream":"btcusdt@trade","data":{"e":"trade","E":...,"s":"BTCUSDT","t":17,"p":"101.5",...}}
    -> {"method":"LIST_SUBSCRIPTIONS","id":2}
    <- {"result":["btcusdt@trade"],"id":2}
    <- {"event":{"e":"serverShutdown","E":1770123456789}}      (on command)

The venue's rules, enforced (each drop closes the socket with code 1008 and is counted in
``rules(sim).drops[reason]``):

- a WebSocket ping every ``ping_interval`` (20 s); a client that has not answered one with a pong
  carrying the same payload within ``pong_timeout`` (60 s) is dropped (``pong_timeout``);
- at most ``max_messages`` (5) incoming messages per second, counting JSON requests *and* ping
  and pong frames (``message_rate``);
- at most ``max_streams`` (1024) streams per connection: a SUBSCRIBE that would exceed it is
  refused with an error reply, a URL naming more is closed (``too_many_streams``);
- every connection is cut at ``max_age`` (24 h) (``max_age``); ``expire(sim)`` cuts them all now,
  as if their 24 hours were up;
- ``server_shutdown(sim)`` sends the ``serverShutdown`` event to every connection and closes
  them ``shutdown_grace`` (10 min) later.

Both commands are also scenarios of the control API: ``POST /scenarios/expire`` and
``POST /scenarios/server_shutdown?grace=5``. With ``feedwatch simulate --ping-interval`` the
framework sends the pings instead (and drops a client one interval after an unanswered ping).

Settings are read from ``sim.options`` (a dict; missing keys take the venue's values above), so a
test compresses time: ``sim.options = {"ping_interval": 0.5, "pong_timeout": 1.5}``.

Trades happen venue-wide, not per connection: one broadcaster ticks every symbol ever subscribed
(or the simulator's configured symbols) ``rate`` times a second, with contiguous trade ids per
symbol, and sends each trade to every connection subscribed to it. So two overlapping
connections see the same trade ids (a make-before-break rollover can be checked for loss), and
trades go on while a client is disconnected (a reconnect shows up as a trade-id gap).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed
from websockets.frames import Opcode

from exporter.simulator.base import StrictDialect, Tick, compact_json, option, per_simulator

if TYPE_CHECKING:
    from exporter.simulator.server import Session, Simulator

STREAM_TYPES = ("trade", "aggTrade", "bookTicker")
DEFAULTS: dict[str, float] = {
    "ping_interval": 20.0,
    "pong_timeout": 60.0,
    "max_messages": 5,
    "message_window": 1.0,
    "max_streams": 1024,
    "max_age": 24 * 3600.0,
    "shutdown_grace": 600.0,
}


def setting(sim: "Simulator", name: str) -> float:
    return option(sim, name, DEFAULTS[name])


@dataclass
class Rules:
    """Per-simulator venue state: rule enforcement counters and the trade broadcaster."""

    drops: Counter = field(default_factory=Counter)       # reason -> connections dropped
    refused: Counter = field(default_factory=Counter)     # reason -> requests refused
    shutdowns_sent: int = 0
    sessions: set = field(default_factory=set)            # live BinanceDialect instances
    known: dict = field(default_factory=dict)             # symbols that trade (ordered set)
    first_seq: dict = field(default_factory=dict)         # symbol -> first trade id broadcast
    broadcaster: asyncio.Task | None = None


rules = per_simulator(Rules)


def expire(sim: "Simulator") -> int:
    """Cut every open connection now, as the venue does at the 24-hour mark; returns how many."""
    count = 0
    for dialect in list(rules(sim).sessions):
        dialect.drop("max_age", "connection reached its maximum age")
        count += 1
    return count


def server_shutdown(sim: "Simulator", grace: float | None = None) -> int:
    """Send ``serverShutdown`` to every connection; close each ``grace`` seconds later."""
    state = rules(sim)
    grace = setting(sim, "shutdown_grace") if grace is None else grace
    count = 0
    for dialect in list(state.sessions):
        dialect.announce_shutdown(grace)
        count += 1
    state.shutdowns_sent += count
    return count


def parse_stream(name: str) -> tuple[str, str] | None:
    """``"btcusdt@trade"`` -> ``("BTCUSDT", "trade")``; None unless lowercase and a known type."""
    symbol, _, kind = name.partition("@")
    if not symbol or kind not in STREAM_TYPES or symbol != symbol.lower() or not symbol.isalnum():
        return None
    return symbol.upper(), kind


class BinanceDialect(StrictDialect):
    name = "binance"
    # Pings are sent by this dialect (with a pong deadline), not by the framework.
    ping_interval = None

    @classmethod
    def scenario(cls, sim: Any, name: str, params: dict[str, str]) -> dict[str, Any]:
        """``POST /scenarios/expire``: the 24-hour cut, now. ``POST /scenarios/server_shutdown
        [?grace=SECONDS]``: the maintenance notice, connections closed after the grace."""
        if name == "expire":
            return {"expired": expire(sim)}
        if name == "server_shutdown":
            grace = float(params["grace"]) if "grace" in params else None
            return {"notified": server_shutdown(sim, grace)}
        raise ValueError(f"unknown binance scenario {name!r} (known: expire, server_shutdown)")

    def __init__(self, session: "Session") -> None:
        super().__init__(session)
        self.rules = rules(self.sim)
        self.combined = not session.path.startswith("/ws")
        self.received_at: deque[float] = deque()
        self.opened_at = 0.0
        self._timers: list[asyncio.Task[None]] = []

    # --- the venue's rules ---------------------------------------------------------------------

    def count_message(self) -> None:
        """One incoming message (request, ping or pong): at most max_messages per window."""
        now = asyncio.get_running_loop().time()
        window = setting(self.sim, "message_window")
        received = self.received_at
        received.append(now)
        while received and received[0] <= now - window:
            received.popleft()
        limit = setting(self.sim, "max_messages")
        if len(received) > limit:
            self.drop("message_rate", f"more than {limit:g} messages in {window:g}s")

    def announce_shutdown(self, grace: float) -> None:
        event = {"event": {"e": "serverShutdown", "E": int(time.time() * 1000)}}
        self._timers.append(asyncio.create_task(self._shutdown(compact_json(event), grace)))

    async def _shutdown(self, frame: str, grace: float) -> None:
        await self.session.send(frame)
        await asyncio.sleep(grace)
        self.drop("server_shutdown", "server shutdown")

    # --- dialect hooks -------------------------------------------------------------------------

    async def opened(self) -> None:
        self.opened_at = asyncio.get_running_loop().time()
        self.rules.sessions.add(self)
        self._count_control_frames()
        names = [n for value in self.session.query.get("streams", []) for n in value.split("/") if n]
        if self.session.path.startswith("/ws/"):
            names.append(self.session.path[len("/ws/"):])
        if len(names) > setting(self.sim, "max_streams"):
            self.rules.refused["too_many_streams"] += 1
            self.drop("too_many_streams", f"more than {setting(self.sim, 'max_streams'):g} streams in the URL")
            return
        for name in names:
            parsed = parse_stream(name)
            if parsed is not None:
                self._subscribe(*parsed)

    async def received(self, message: str | bytes) -> None:
        self.count_message()
        if self.closing is not None:
            return
        try:
            request = json.loads(message)
            method = request["method"]
        except (ValueError, KeyError, TypeError) as exc:
            await self.send_json({"code": 3, "msg": f"Invalid JSON: {exc}"})
            return
        request_id = request.get("id")
        params = request.get("params", [])
        if method == "SUBSCRIBE":
            await self._subscribe_request(params, request_id)
        elif method == "UNSUBSCRIBE":
            for name in params if isinstance(params, list) else []:
                parsed = parse_stream(name) if isinstance(name, str) else None
                if parsed is not None:
                    self.session.unsubscribe(*parsed)
            await self.send_json({"result": None, "id": request_id})
        elif method == "LIST_SUBSCRIPTIONS":
            await self.send_json({"result": self.stream_names(), "id": request_id})
        else:
            await self.send_json({"code": 2, "msg": f"Invalid request: unknown variant `{method}`, expected one of "
                                                    "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`", "id": request_id})

    async def _subscribe_request(self, params: Any, request_id: Any) -> None:
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            await self.send_json({"code": 2, "msg": "Invalid request: params must be a list of stream names",
                                  "id": request_id})
            return
        parsed = [parse_stream(p) for p in params]
        bad = [p for p, ok in zip(params, parsed) if ok is None]
        if bad:
            await self.send_json({"code": 2, "msg": f"Invalid request: unknown stream(s) {bad[:5]}", "id": request_id})
            return
        current = set(self.stream_names())
        total = len(current | set(params))
        limit = setting(self.sim, "max_streams")
        if total > limit:
            self.rules.refused["too_many_streams"] += 1
            await self.send_json({"code": 2, "msg": f"Invalid request: a connection may carry at most {limit:g} "
                                                    f"streams ({total} requested)", "id": request_id})
            return
        for symbol, kind in parsed:  # type: ignore[misc]
            self._subscribe(symbol, kind)
        await self.send_json({"result": None, "id": request_id})

    def _subscribe(self, symbol: str, kind: str) -> None:
        self.session.subscribe(symbol, kind)
        self.rules.known.setdefault(symbol, None)

    def stream_names(self) -> list[str]:
        return [f"{symbol.lower()}@{kind}" for symbol, kinds in self.session.subscriptions.items()
                for kind in sorted(kinds)]

    def events(self, tick: Tick) -> list[Any]:
        kinds = self.session.subscriptions.get(tick.symbol, ())
        out: list[Any] = []
        lower = tick.symbol.lower()
        for kind in kinds:
            if kind == "trade":
                data = {"e": "trade", "E": tick.ts_ms + 1, "s": tick.symbol, "t": tick.seq, "p": f"{tick.price:.8f}",
                        "q": f"{tick.size}.00000000", "T": tick.ts_ms, "m": tick.seq % 2 == 0, "M": True}
            elif kind == "aggTrade":
                data = {"e": "aggTrade", "E": tick.ts_ms + 1, "s": tick.symbol, "a": tick.seq, "p": f"{tick.price:.8f}",
                        "q": f"{tick.size}.00000000", "f": tick.seq, "l": tick.seq, "T": tick.ts_ms,
                        "m": tick.seq % 2 == 0, "M": True}
            else:
                data = {"u": tick.seq, "s": tick.symbol, "b": f"{tick.bid:.8f}", "B": "3.00000000",
                        "a": f"{tick.ask:.8f}", "A": "2.00000000"}
            out.append({"stream": f"{lower}@{kind}", "data": data} if self.combined else data)
        return out

    async def stream(self) -> None:
        """Join the venue-wide broadcaster; ping, and enforce the pong deadline and the age limit."""
        state = self.rules
        if state.broadcaster is None or state.broadcaster.done():
            state.broadcaster = asyncio.create_task(_broadcast(self.sim, state), name="binance broadcaster")
        try:
            await self._keep_rules()
        finally:
            state.sessions.discard(self)
            for task in self._timers:
                task.cancel()
            # Trading goes on while clients reconnect; it stops with the simulator.
            if not state.sessions and not _serving(self.sim) and state.broadcaster is not None:
                state.broadcaster.cancel()
                await asyncio.gather(state.broadcaster, return_exceptions=True)
                state.broadcaster = None

    async def _keep_rules(self) -> None:
        loop = asyncio.get_running_loop()
        sim, ws = self.sim, self.session.ws
        # `feedwatch simulate --ping-interval` hands pings to the framework (deadline = interval).
        own_pings = getattr(sim, "ping_interval", None) is None
        interval = setting(sim, "ping_interval") if own_pings else math.inf
        timeout = setting(sim, "pong_timeout")
        max_age = setting(sim, "max_age")
        tick = max(0.01, min(interval, timeout, max_age) / 4)  # inf / 4 is fine: min() picks another
        pending: deque[tuple[float, asyncio.Future[float]]] = deque()
        numbers = itertools.count(1)
        next_ping = loop.time() + interval
        while self.closing is None:
            await asyncio.sleep(tick)
            now = loop.time()
            if now - self.opened_at >= max_age:
                self.drop("max_age", "connection reached its maximum age")
                break
            while pending and pending[0][1].done():
                pending.popleft()
            if pending and now - pending[0][0] > timeout:
                self.drop("pong_timeout", f"no pong within {timeout:g}s of a ping")
                break
            if now >= next_ping:
                next_ping = now + interval
                try:
                    waiter = await ws.ping(f"{int(time.time() * 1000)}-{next(numbers)}")
                except ConnectionClosed:
                    return
                waiter.add_done_callback(_quiet)
                pending.append((now, waiter))
        await ws.wait_closed()

    def _count_control_frames(self) -> None:
        """Pings and pongs from the client count against the message rate, as on the venue."""
        protocol = self.session.ws.protocol
        original = protocol.recv_frame

        def recv_frame(frame: Any) -> None:
            if frame.opcode is Opcode.PING or frame.opcode is Opcode.PONG:
                self.count_message()
            original(frame)

        protocol.recv_frame = recv_frame  # type: ignore[method-assign]


def _serving(sim: "Simulator") -> bool:
    server = getattr(sim, "_server", None)
    return server is not None and server.is_serving()


def _quiet(future: asyncio.Future[float]) -> None:
    if not future.cancelled():
        future.exception()  # a ping whose connection closed: nothing to report


async def _broadcast(sim: "Simulator", state: Rules) -> None:
    """Trade every known symbol ``rate`` times a second; send each trade to its subscribers."""
    if sim.rate <= 0:
        return
    loop = asyncio.get_running_loop()
    interval = 1.0 / sim.rate
    next_at = loop.time()
    stats = sim.stats
    while _serving(sim) or state.sessions:
        next_at += interval
        delay = next_at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            next_at = loop.time()  # fell behind: skip ticks rather than burst
        faults = sim.faults
        if faults.stall_all:
            continue
        sessions = [d for d in state.sessions if d.closing is None and d.session.subscriptions]
        if faults.garbage:
            for dialect in sessions:
                if await dialect.session.send(dialect.garbage_frame):
                    stats.garbage_sent += 1
        now = time.time()
        bad = faults.bad_prices
        symbols = list(sim.market.symbols) if sim.market.symbols else list(state.known)
        for symbol in symbols:
            if symbol in faults.stalled:
                continue
            tick = sim.market.tick(symbol, now, bad)
            state.first_seq.setdefault(symbol, tick.seq)
            for dialect in sessions:
                if symbol not in dialect.session.subscriptions:
                    continue
                for event in dialect.events(tick):
                    if not await dialect.session.send(compact_json(event)):
                        break
                    stats.sent[symbol] = stats.sent.get(symbol, 0) + 1
                    if bad:
                        stats.bad_prices_sent += 1
