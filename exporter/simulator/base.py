"""The simulator's building blocks: prices, faults, counters, and the ``Dialect`` base class.

A *dialect* is how one venue speaks on the wire. The framework (``server.py``) owns the socket,
the clock and the fault switches; a dialect only says what to send when a client connects, how
to answer what the client sends, and how one price tick looks on the wire. Writing a dialect::

    from exporter.simulator.base import Dialect, Tick

    class EchoDialect(Dialect):
        name = "echo"                       # selected with `feedwatch simulate --venue echo`

        async def opened(self) -> None:     # greeting; URL subscriptions from self.session.query
            await self.session.send('{"hello": true}')

        async def received(self, message: str | bytes) -> None:
            self.session.subscribe("AAPL")  # streaming starts for subscribed symbols
            await self.session.send('{"subscribed": "AAPL"}')

        def events(self, tick: Tick) -> list:   # wire events for one tick (counted per symbol)
            return [{"s": tick.symbol, "p": tick.price, "t": tick.ts_ms}]

        # pack(events) -> frames: default one JSON text frame per event; override to batch.
        # stream(): default sends ticks at `rate` per symbol per second; override for event
        # streams that are not price ticks (the trading bot dialect).

and declare it in the ``feedwatch.dialects`` entry-point group (``pyproject.toml``; a plugin
package declares its own the same way): ``echo = "exporter.simulator.echo:EchoDialect"``. The fault switches (``session.sim.faults``) the
framework applies for every dialect: stalls, garbage frames, bad prices, ignored pings, drops.
Two are for the dialect to express in its own words, because venues refuse differently:
``reject_auth`` and ``max_connections`` (see ``polygon.py``).

A dialect that enforces a venue's own rules (message rates, ping deadlines, limits) derives from
``StrictDialect`` instead: ``drop(reason, message)`` closes the socket once and counts the drop,
``stream_while_pinged(timeout)`` drops a client that stopped sending application pings, and
``per_simulator`` / ``option`` keep the per-simulator counters and settings tests read and set
(``rules(sim).drops``, ``sim.options``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import weakref
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar, Coroutine, Protocol, TypeVar

from exporter.plugins import Registry

# Faults accepted on the command line (``--fault NAME[:SYMBOL]``) and by the control API
# (``POST /faults/NAME?symbol=...``), with what each does (``feedwatch simulate --help`` lists them).
FAULT_HELP = {
    "stall": "stop sending updates for one symbol (socket stays open)",
    "stall_all": "stop sending every update (socket stays open, pings still answered)",
    "resume": "clear every fault",
    "drop": "abort every open connection (no close frame), once",
    "reject_auth": "refuse credentials (the dialect says it its way), then close",
    "max_connections": "refuse the connection as over the venue's connection limit",
    "garbage": "interleave undecodable frames with the data",
    "bad_prices": "send non-positive trade prices and crossed quotes",
    "ignore_pings": "stop answering WebSocket pings (with stall_all: a half-open socket)",
    "accept_and_drop": "accept each new connection, then cut it at once (before any frame)",
    "rest_error": "answer every REST snapshot request with HTTP 500",
    "rest_rate_limit": "answer every REST snapshot request as rate limited (429 with Retry-After: 1; "
                       "Binance: 418 from the 4th refused request on)",
}
FAULTS = tuple(FAULT_HELP)


class Session(Protocol):
    """One client connection as a dialect sees it (implemented by ``server.Session``).

    Declared here, not imported from the server, so the building blocks never depend on the
    framework built from them: ``server.py`` imports this module, never the other way round.
    """

    sim: Any                                 # the Simulator: faults, market, stats, options, ...
    number: int                              # connection number, for log lines
    path: str                                # the URL path the client connected to
    query: dict[str, list[str]]              # the URL query (subscriptions in the URL)
    subscriptions: dict[str, set[str]]       # symbol -> channels
    authenticated: bool
    ws: Any                                  # the websockets connection (pings, close state)

    @property
    def ready(self) -> bool: ...
    def subscribe(self, symbol: str, channel: str = "") -> None: ...
    def unsubscribe(self, symbol: str, channel: str = "") -> bool: ...
    async def send(self, frame: str | bytes) -> bool: ...
    async def close(self, code: int = 1000, reason: str = "") -> None: ...
    async def stream_ticks(self) -> None: ...


@dataclass(slots=True)
class Tick:
    """One price update for one symbol, before a dialect puts it on the wire."""

    symbol: str
    price: float
    bid: float
    ask: float
    size: int
    ts_ms: int      # Unix milliseconds (the exchange timestamp)
    seq: int        # per-symbol, contiguous (venues with trade ids)


class Market:
    """Per-symbol random-walk prices. Deterministic for a given seed."""

    def __init__(self, symbols: tuple[str, ...] = (), seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        # Empty: any subscribed symbol streams. Otherwise only these do; others are acked but
        # stay silent, like an illiquid or delisted ticker on a real venue.
        self.symbols = frozenset(symbols)
        self.prices: dict[str, float] = {}
        self.seqs: dict[str, int] = {}

    def trades(self, symbol: str) -> bool:
        return not self.symbols or symbol in self.symbols

    def tick(self, symbol: str, now: float, bad: bool = False) -> Tick:
        price = self.prices.get(symbol)
        if price is None:
            price = self.rng.uniform(20.0, 500.0)
        price = max(0.01, price * math.exp(self.rng.gauss(0.0, 0.0005)))
        self.prices[symbol] = price
        seq = self.seqs.get(symbol, 0) + 1
        self.seqs[symbol] = seq
        spread = max(0.01, price * 0.0002)
        bid, ask = round(price - spread / 2, 4), round(price + spread / 2, 4)
        trade = round(price, 4)
        if bad:  # a non-positive trade and a crossed quote: both must be rejected, counted
            trade, bid, ask = -trade, ask, bid
        return Tick(symbol, trade, bid, ask, self.rng.randint(1, 500), int(now * 1000), seq)


@dataclass
class Faults:
    """The fault switches. Read by the streaming loop and the dialects on every tick."""

    stalled: set[str] = field(default_factory=set)
    stall_all: bool = False
    reject_auth: bool = False
    max_connections: bool = False
    garbage: bool = False
    bad_prices: bool = False
    ignore_pings: bool = False
    accept_and_drop: bool = False
    rest_error: bool = False
    rest_rate_limit: bool = False

    def set(self, name: str, symbol: str | None = None) -> None:
        """Turn a fault on (``drop`` is an action, handled by the simulator)."""
        if name == "stall":
            if not symbol:
                raise ValueError("the stall fault needs a symbol (stall:AAPL)")
            self.stalled.add(symbol)
        elif name == "resume":
            if symbol:  # resume one symbol only
                self.stalled.discard(symbol)
            else:
                self.clear()
        elif name in ("stall_all", "reject_auth", "max_connections", "garbage", "bad_prices", "ignore_pings",
                      "accept_and_drop", "rest_error", "rest_rate_limit"):
            setattr(self, name, True)
        else:
            raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")

    def clear(self) -> None:
        """Every switch back to its default."""
        fresh = Faults()
        for f in fields(self):
            setattr(self, f.name, getattr(fresh, f.name))

    def snapshot(self) -> dict[str, Any]:
        return {
            "stalled": sorted(self.stalled),
            "stall_all": self.stall_all,
            "reject_auth": self.reject_auth,
            "max_connections": self.max_connections,
            "garbage": self.garbage,
            "bad_prices": self.bad_prices,
            "ignore_pings": self.ignore_pings,
            "accept_and_drop": self.accept_and_drop,
            "rest_error": self.rest_error,
            "rest_rate_limit": self.rest_rate_limit,
        }


def parse_fault(spec: str) -> tuple[str, str | None]:
    """``"stall:AAPL"`` -> ``("stall", "AAPL")``; ``"garbage"`` -> ``("garbage", None)``."""
    name, _, symbol = spec.partition(":")
    name = name.strip().replace("-", "_")
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")
    return name, symbol.strip() or None


@dataclass
class Stats:
    """Counters the control API returns (``GET /state``); tests wait on these."""

    connections_total: int = 0
    connections_open: int = 0
    auth_ok: int = 0
    auth_rejected: int = 0
    frames_sent: int = 0
    control_received: int = 0
    pings_received: int = 0
    pings_ignored: int = 0
    pongs_received: int = 0     # answers to the simulator's own pings
    garbage_sent: int = 0
    bad_prices_sent: int = 0
    drops: int = 0              # connections cut by the drop and accept_and_drop faults
    rest_requests: int = 0      # REST snapshot requests received (simulator/rest.py)
    rest_refused: int = 0       # of those, answered with an error or a rate limit
    # (loop time, status) of the latest REST answers, oldest first: tests check the pacing.
    rest_log: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=1000))
    replayed: int = 0           # recorded frames sent (replay mode)
    replays_completed: int = 0  # connections that received the whole recording
    # Wire events sent per symbol (a Polygon tick with T and Q channels is two events).
    sent: dict[str, int] = field(default_factory=dict)
    # (loop time, first 200 characters) of the latest client messages, oldest first.
    control_log: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=1000))


class Dialect:
    """How one venue speaks. One instance per client connection (``self.session``)."""

    name: ClassVar[str]
    # Streaming starts only once ``session.authenticated`` is set (by the dialect).
    requires_auth: ClassVar[bool] = False
    # Server-initiated WebSocket pings every this many seconds (Binance does); None = none.
    ping_interval: ClassVar[float | None] = None
    # Undecodable bytes sent under the ``garbage`` fault.
    garbage_frame: ClassVar[str] = "\x00\x01 this is not a frame {"
    # Names ``scenario`` accepts (listed by the control API and checked by ``--scenario``).
    scenarios: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def scenario(cls, sim: Any, name: str, params: dict[str, str]) -> dict[str, Any]:
        """A scripted behaviour beyond the faults (the trading bot's drawdown, kill switch, ...),
        triggered by ``POST /scenarios/NAME`` on the control API. Returns a summary for the
        caller; ValueError for an unknown name."""
        cls.check_scenario(name)
        raise NotImplementedError(f"the {cls.name} dialect lists scenarios but does not play them")

    @classmethod
    def check_scenario(cls, name: str) -> None:
        """ValueError naming the known scenarios unless ``name`` is one of them."""
        if not cls.scenarios:
            raise ValueError(f"the {cls.name} dialect has no scenarios")
        if name not in cls.scenarios:
            raise ValueError(f"unknown {cls.name} scenario {name!r} (known: {', '.join(cls.scenarios)})")

    def __init__(self, session: "Session") -> None:
        self.session = session
        self.sim = session.sim

    async def opened(self) -> None:
        """The client connected: send a greeting, read URL subscriptions from session.query."""

    async def received(self, message: str | bytes) -> None:
        """A frame from the client (auth, subscribe, ping, ...)."""

    def events(self, tick: Tick) -> list[Any]:
        """Wire events for one tick, given this session's subscriptions (empty = nothing)."""
        return []

    def pack(self, events: list[Any]) -> list[str]:
        """Frames for a batch of events: by default one compact JSON text frame per event."""
        return [compact_json(e) for e in events]

    async def stream(self) -> None:
        """Push data to the client; by default price ticks for the subscribed symbols."""
        await self.session.stream_ticks()

    def replay_ready(self) -> bool:
        """Replay mode: may the recorded frames start? By default once the client is authenticated
        and has subscribed something (a venue sends data only then)."""
        return self.session.ready and bool(self.session.subscriptions)

    async def send_json(self, message: Any) -> None:
        """Send one message as a compact JSON text frame (replies, errors, acknowledgements)."""
        await self.session.send(compact_json(message))


def compact_json(value: Any) -> str:
    """JSON without spaces, as venues send it."""
    return json.dumps(value, separators=(",", ":"))


# --- for dialects that enforce a venue's rules ---------------------------------------------------

S = TypeVar("S")


def per_simulator(factory: Callable[[], S]) -> Callable[[Any], S]:
    """An accessor for venue state kept per simulator (``rules(sim)``), made on first use and
    forgotten with the simulator, so tests running several simulators never share counters."""
    states: "weakref.WeakKeyDictionary[Any, S]" = weakref.WeakKeyDictionary()

    def state_of(sim: Any) -> S:
        found = states.get(sim)
        if found is None:
            found = states[sim] = factory()
        return found

    return state_of


def option(sim: Any, name: str, default: float) -> float:
    """A venue setting from ``sim.options`` (a dict a test sets to compress time), else ``default``."""
    options = getattr(sim, "options", None) or {}
    return float(options.get(name, default))


_BACKGROUND: set[asyncio.Task[Any]] = set()


def in_background(coro: Coroutine[Any, Any, Any]) -> None:
    """Run ``coro`` to completion even after the session's own tasks are cancelled (a close
    handshake started by the dialect that is about to end the session)."""
    task = asyncio.create_task(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


class StrictDialect(Dialect):
    """A dialect that enforces its venue's rules by dropping connections that break them.

    Subclasses set ``self.rules`` (per-simulator state with a ``drops`` Counter) and, when
    they watch application pings, refresh ``self.last_ping`` (loop time) on each one.
    """

    rules: Any

    def __init__(self, session: "Session") -> None:
        super().__init__(session)
        self.closing: str | None = None       # the rule this connection was dropped for
        self.last_ping = 0.0

    def drop(self, reason: str, message: str) -> None:
        """Close this connection (code 1008) for breaking, or reaching, a venue rule; once."""
        if self.closing is not None:
            return
        self.closing = reason
        self.rules.drops[reason] += 1
        # Logged under the venue's module, as the dialect's own lines are.
        logging.getLogger(type(self).__module__).info(
            "%s simulator: dropping connection %d: %s", self.name, self.session.number, message)
        in_background(self.session.close(1008, message[:120]))

    async def stream_while_pinged(self, timeout: float) -> None:
        """Stream ticks; drop the client (``no_ping``) once ``last_ping`` is ``timeout`` seconds old."""
        streamer = asyncio.create_task(self.session.stream_ticks())
        try:
            loop = asyncio.get_running_loop()
            tick = max(0.01, timeout / 4)
            while self.closing is None and not streamer.done():
                await asyncio.sleep(tick)
                if loop.time() - self.last_ping > timeout:
                    self.drop("no_ping", f"no ping for {timeout:g}s")
            await self.session.ws.wait_closed()
        finally:
            streamer.cancel()
            await asyncio.gather(streamer, return_exceptions=True)


# Dialects are found through the ``feedwatch.dialects`` entry points (exporter/plugins.py).
_DIALECTS: Registry[type[Dialect]] = Registry("feedwatch.dialects", "simulator venue", key="name")
D = TypeVar("D", bound=type[Dialect])


def register(cls: D) -> D:
    """Class decorator: make ``cls`` selectable as ``--venue <cls.name>`` without an entry point."""
    return _DIALECTS.register(cls)


def get(name: str) -> type[Dialect]:
    dialect = _DIALECTS.get(name)
    if dialect is None:
        raise ValueError(f"unknown simulator venue {name!r} (known: {', '.join(names())})")
    return dialect


def names() -> list[str]:
    """Every dialect's name, plugins' included, without importing any."""
    return _DIALECTS.names()


def describe(name: str) -> tuple[str, tuple[str, ...]]:
    """(one line about the dialect, its scenarios), importing it; a broken plugin says why."""
    try:
        dialect = get(name)
    except Exception as exc:  # a plugin's import can raise anything: show it, do not die in --help
        return f"cannot be loaded: {exc}", ()
    import sys

    doc = dialect.__dict__.get("__doc__") or getattr(sys.modules.get(dialect.__module__), "__doc__", None) or ""
    line = doc.strip().splitlines()[0] if doc.strip() else ""
    line = line.replace("``", "").split(" (", 1)[0].rstrip(".")
    return line, tuple(dialect.scenarios)
