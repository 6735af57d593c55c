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
import zlib
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar, Coroutine, Protocol, TypeVar

from exporter.plugins import Registry

# Faults accepted on the command line (``--fault NAME[:SYMBOL[:VALUE]]``) and by the control API
# (``POST /faults/NAME?symbol=...&value=...``), with what each does (``feedwatch simulate --help``
# lists them).
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
    "freeze": "one symbol's price stops changing while its updates keep flowing (same trade, bid and ask)",
    "skew": "one symbol's prices on this venue off by a ratio (VALUE, default 1.05: 5 % above the others)",
    "flood": "batches stamped when due at VALUE events/s (default 2000000), sent as fast as the client "
             "takes them: one that cannot keep up falls ever further behind (batching venues: polygon)",
}
FAULTS = tuple(FAULT_HELP)
# What a fault's VALUE means and its default, for the faults that take one.
FAULT_VALUES = {"skew": 1.05, "flood": 2_000_000.0}
# A fault that names a symbol.
SYMBOL_FAULTS = ("stall", "freeze", "skew")


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
    """Per-symbol prices that every simulator agrees on, each with its own small noise.

    A symbol's price follows a shared anchor, a function of the symbol and the wall clock only (a
    base between 20 and 500 from the symbol's name, drifting by up to 1 % over half an hour), times
    this simulator's own noise: a mean-reverting walk of about 0.07 % (deterministic for a seed).
    So two simulators quoting one symbol, like two venues, stay within a few hundredths of a percent
    of each other (cross-feed deviation is zero in a healthy market), while each price still moves
    at every tick. The ``freeze`` and ``skew`` faults (read from ``faults`` at every tick) stop a
    symbol's price and shift it.
    """

    def __init__(self, symbols: tuple[str, ...] = (), seed: int | None = None,
                 faults: "Faults | None" = None) -> None:
        self.rng = random.Random(seed)
        # Empty: any subscribed symbol streams. Otherwise only these do; others are acked but
        # stay silent, like an illiquid or delisted ticker on a real venue.
        self.symbols = frozenset(symbols)
        self.faults = faults if faults is not None else Faults()
        self.prices: dict[str, float] = {}
        self.noise: dict[str, float] = {}
        self.last: dict[str, Tick] = {}
        self.seqs: dict[str, int] = {}

    def trades(self, symbol: str) -> bool:
        return not self.symbols or symbol in self.symbols

    @staticmethod
    def anchor(symbol: str, now: float) -> float:
        """The price every simulator starts from for ``symbol`` at ``now``."""
        h = zlib.crc32(symbol.encode())
        base = 20.0 + (h % 48_000) / 100.0
        phase = (h >> 16) % 360 * math.pi / 180.0
        return base * math.exp(0.01 * math.sin(2.0 * math.pi * now / 1800.0 + phase))

    def tick(self, symbol: str, now: float, bad: bool = False) -> Tick:
        seq = self.seqs.get(symbol, 0) + 1
        self.seqs[symbol] = seq
        faults = self.faults
        last = self.last.get(symbol)
        if last is not None and symbol in faults.frozen:
            # Frozen: the very same trade, bid and ask again; only the time and sequence move.
            tick = Tick(symbol, last.price, last.bid, last.ask, last.size, int(now * 1000), seq)
            self.last[symbol] = tick
            return tick
        noise = 0.9 * self.noise.get(symbol, 0.0) + self.rng.gauss(0.0, 0.0003)
        self.noise[symbol] = noise
        price = max(0.01, self.anchor(symbol, now) * math.exp(noise) * faults.skewed.get(symbol, 1.0))
        self.prices[symbol] = price
        spread = max(0.01, price * 0.0002)
        bid, ask = round(price - spread / 2, 4), round(price + spread / 2, 4)
        trade = round(price, 4)
        if bad:  # a non-positive trade and a crossed quote: both must be rejected, counted
            trade, bid, ask = -trade, ask, bid
        tick = Tick(symbol, trade, bid, ask, self.rng.randint(1, 500), int(now * 1000), seq)
        if not bad:
            self.last[symbol] = tick
        return tick


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
    frozen: set[str] = field(default_factory=set)
    skewed: dict[str, float] = field(default_factory=dict)   # symbol -> price ratio
    flood: float = 0.0                                        # events per second; 0 = off

    def set(self, name: str, symbol: str | None = None, value: float | None = None) -> None:
        """Turn a fault on (``drop`` is an action, handled by the simulator)."""
        check_fault(name, symbol, value)
        if name == "stall":
            self.stalled.add(symbol)  # type: ignore[arg-type]
        elif name == "freeze":
            self.frozen.add(symbol)  # type: ignore[arg-type]
        elif name == "skew":
            self.skewed[symbol] = value or FAULT_VALUES["skew"]  # type: ignore[index]
        elif name == "flood":
            self.flood = value or FAULT_VALUES["flood"]
        elif name == "resume":
            if symbol:  # resume one symbol only
                self.stalled.discard(symbol)
                self.frozen.discard(symbol)
                self.skewed.pop(symbol, None)
            else:
                self.clear()
        elif name in ("stall_all", "reject_auth", "max_connections", "garbage", "bad_prices", "ignore_pings",
                      "accept_and_drop", "rest_error", "rest_rate_limit"):
            setattr(self, name, True)
        else:  # a fault the simulator acts on itself (drop)
            raise ValueError(f"{name!r} is not a switch")

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
            "frozen": sorted(self.frozen),
            "skewed": dict(sorted(self.skewed.items())),
            "flood": self.flood,
        }


def parse_fault(spec: str) -> tuple[str, str | None, float | None]:
    """``"stall:AAPL"`` -> ``("stall", "AAPL", None)``; ``"skew:BTCUSDT:1.02"`` -> ``("skew",
    "BTCUSDT", 1.02)``; ``"flood::3e6"`` or ``"flood:3e6"`` -> ``("flood", None, 3e6)``."""
    name, _, rest = spec.partition(":")
    name = name.strip().replace("-", "_")
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")
    symbol, _, value = rest.partition(":")
    if name in FAULT_VALUES and name not in SYMBOL_FAULTS and not value:
        symbol, value = "", symbol   # flood:RATE: a value where a symbol would be
    try:
        number = float(value) if value.strip() else None
    except ValueError:
        raise ValueError(f"the {name} fault's value must be a number, got {value!r}") from None
    check_fault(name, symbol.strip() or None, number)
    return name, symbol.strip() or None, number


def check_fault(name: str, symbol: str | None, value: float | None) -> None:
    """ValueError unless ``name`` is a fault and gets the symbol and value it needs."""
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")
    if name in SYMBOL_FAULTS and not symbol:
        raise ValueError(f"the {name} fault needs a symbol ({name}:AAPL)")
    if value is not None and name not in FAULT_VALUES:
        raise ValueError(f"the {name} fault takes no value")
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"the {name} fault's value must be a positive number, got {value!r}")


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
    # Snapshots answered per symbol (a batched request counts each symbol it answers).
    rest_symbols: dict[str, int] = field(default_factory=dict)
    flood_frames: int = 0       # frames sent by the flood fault
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
