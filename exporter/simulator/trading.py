"""A trading bot's event stream for the simulator (the server side of ``exporter/feeds/trading.py``).

``feedwatch simulate --venue trading`` plays a plausible bot session for one account (``demo``,
or ``?account=NAME`` in the URL): on the first connection a few days of closing equity (so the
Sharpe ratio is defined from the start), then, ``rate`` times a second, an equity snapshot and an
exchange API call, a closed trade every few ticks and the open positions (the first symbol is
always held, so a stalled price feed makes ``TradingStalePricePosition`` fire)::

    -> {"type":"auth","token":"KEY"}                   (only when the simulator has an api_key)
    <- [{"type":"equity","account":"demo","id":"demo-18c1f4a2b3d-1","ts":1699568000.0,"equity":10012.5},
        ... one closing equity per past day ...,
        {"type":"safety","account":"demo","id":"demo-18c1f4a2b3d-6","ts":1700000000.0,"kill_switch":false,
         "circuit_breaker":"closed","reason":"session start"}]
    <- [{"type":"api_call","account":"demo","id":"demo-18c1f4a2b3d-7","ts":1700000000.05,
         "endpoint":"POST /api/v3/order","ok":true,"latency":0.042,"status":200},
        {"type":"trade","account":"demo","id":"demo-18c1f4a2b3d-8","ts":1700000000.05,"symbol":"BTCUSDT",
         "side":"long","quantity":0.5,"entry_price":101.2,"exit_price":101.9,"pnl":0.35,"fees":0.01},
        {"type":"equity","account":"demo","id":"demo-18c1f4a2b3d-9","ts":1700000000.05,"equity":10012.8},
        {"type":"positions","account":"demo","id":"demo-18c1f4a2b3d-10","ts":1700000000.05,
         "positions":{"BTCUSDT":0.5},"limit":5}]

Frames are JSON arrays of up to 100 events. Ids are ``<account>-<run>-<n>``: ``run`` (the start
time in hex) keeps a restarted simulator from reusing ids an exporter has already stored.

Scenarios (``--scenario NAME[:ACCOUNT]`` on the command line, ``POST /scenarios/NAME[?account=A]``
on the control API, ``run_scenario`` in process) change what the bot does from then on, for every connection:

    drawdown         equity falls to 75 % of its peak (breaches the 5 % / 10 % / 20 % limits)
    circuit_breaker  the circuit breaker opens ("volatility halt"); no trades while open
    kill_switch      the kill switch is switched on ("operator stop"); no trades while on
    kill_switch_off  the kill switch is switched off again ("operator release"); nothing else
                     changes (a drawdown or an open breaker stays)
    api_errors       half of the API calls fail from now on (a burst, then a sustained rate)
    losing_streak    every trade loses from now on (the losing streak grows past 10)
    replay           the last 200 events are sent again (a bot replaying after a reconnect)
    recover          back to normal: breaker closed, kill switch off, API calls ok, equity
                     back at its peak, trades win and lose again

The bot's state (equity, trade numbers, the event log) belongs to the simulator, not to a
connection: a client that reconnects continues the same session and first receives the last 200
events again (as a bot that cannot know what the dropped connection delivered would resend them),
and ``replay`` resends them on demand. The exporter must count each event once.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import random
import time
import weakref
from typing import TYPE_CHECKING, Any

from exporter.simulator.base import Dialect, compact_json
from exporter.simulator.timeline import Step, Timeline

if TYPE_CHECKING:
    from exporter.simulator.server import Simulator

SCENARIOS = ("drawdown", "circuit_breaker", "kill_switch", "kill_switch_off", "api_errors", "losing_streak",
             "replay", "recover")
DEFAULT_ACCOUNT = "demo"
DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT")
HISTORY_DAYS = 5          # closing equity sent for this many past days on the first connection
REPLAY_EVENTS = 200
POSITION_LIMIT = 5
_ENDPOINTS = ("POST /api/v3/order", "GET /api/v3/account", "GET /api/v3/openOrders", "DELETE /api/v3/order")


class Bot:
    """One simulated account: its money, its modes, and the log of every event it sent."""

    def __init__(self, account: str, symbols: tuple[str, ...], rng: random.Random) -> None:
        self.account = account
        self.symbols = symbols or DEFAULT_SYMBOLS
        self.rng = rng
        self.number = 0
        # Part of every id: a restarted simulator must not reuse the ids of an earlier run, which
        # an exporter with a state file would rightly refuse as replays.
        self.run = f"{int(time.time() * 1000):x}"
        self.log: list[dict[str, Any]] = []
        self.started = False
        self.equity = 10_000.0
        self.peak = self.equity
        self.ticks = 0
        self.next_tick = 0.0
        self.prices = {s: rng.uniform(50.0, 500.0) for s in self.symbols}
        self.positions = {self.symbols[0]: 0.5}
        # modes set by scenarios
        self.breaker_open = False
        self.kill_switch = False
        self.api_failure_rate = 0.02
        self.losing = False

    def emit(self, kind: str, ts: float, **fields: Any) -> dict[str, Any]:
        self.number += 1
        event = {"type": kind, "account": self.account, "id": f"{self.account}-{self.run}-{self.number}",
                 "ts": round(ts, 6), **fields}
        self.log.append(event)
        return event

    # --- the plausible session ----------------------------------------------------------------

    def start(self, now: float) -> None:
        """History for the Sharpe ratio, then the safety state (once per simulator)."""
        self.started = True
        for days_ago in range(HISTORY_DAYS, 0, -1):
            self.equity *= math.exp(self.rng.gauss(0.001, 0.01))
            self.peak = max(self.peak, self.equity)
            self.emit("equity", now - days_ago * 86400.0, equity=round(self.equity, 2))
        self.emit("safety", now, kill_switch=False, circuit_breaker="closed", reason="session start")
        self.next_tick = now

    def advance(self, now: float, rate: float) -> None:
        """Generate the events of every tick due by ``now`` (shared by all connections)."""
        if not self.started:
            self.start(now)
        interval = 1.0 / rate if rate > 0 else math.inf
        due = 0
        while self.next_tick <= now and due < 50:  # after a long pause, catch up a little, not all
            self.tick(max(self.next_tick, now - 1.0))
            self.next_tick += interval
            due += 1
        if self.next_tick <= now:
            self.next_tick = now + interval

    def tick(self, ts: float) -> None:
        rng = self.rng
        self.ticks += 1
        ok = rng.random() >= self.api_failure_rate
        self.emit("api_call", ts, endpoint=rng.choice(_ENDPOINTS), ok=ok,
                  latency=round(rng.lognormvariate(math.log(0.04), 0.6), 4), status=200 if ok else 503)
        trading = not (self.breaker_open or self.kill_switch)
        if trading and self.ticks % 3 == 0:
            self.trade(ts)
        # Unrealised P&L wiggles around the realised equity.
        self.emit("equity", ts, equity=round(self.equity * (1 + rng.gauss(0.0, 0.0005)), 2))
        if self.ticks % 5 == 1:
            self.emit("positions", ts, positions=dict(self.positions), limit=POSITION_LIMIT)

    def trade(self, ts: float) -> None:
        rng = self.rng
        symbol = rng.choice(self.symbols)
        entry = self.prices[symbol]
        move = rng.gauss(0.0004, 0.004)
        if self.losing:
            move = -abs(move) - 0.001
        exit_price = entry * (1 + move)
        self.prices[symbol] = exit_price
        side = rng.choice(("long", "short"))
        quantity = round(rng.uniform(0.1, 2.0), 3)
        pnl = quantity * (exit_price - entry) * (1 if side == "long" else -1)
        if self.losing:
            pnl = -abs(pnl)
        fees = round(quantity * exit_price * 0.0002, 4)
        self.equity += pnl - fees
        self.peak = max(self.peak, self.equity)
        self.emit("trade", ts, symbol=symbol, side=side, quantity=quantity, entry_price=round(entry, 4),
                  exit_price=round(exit_price, 4), pnl=round(pnl, 4), fees=fees)
        # Positions change now and then; the first symbol stays open.
        other = self.symbols[-1]
        if len(self.symbols) > 1 and rng.random() < 0.3:
            if other in self.positions:
                del self.positions[other]
            else:
                self.positions[other] = round(rng.uniform(-1.0, 1.0) or 0.1, 3)

    # --- scenarios ----------------------------------------------------------------------------

    def scenario(self, name: str, now: float) -> None:
        if name == "drawdown":
            self.equity = self.peak * 0.75
            self.emit("equity", now, equity=round(self.equity, 2))
        elif name == "circuit_breaker":
            self.breaker_open = True
            self.emit("safety", now, circuit_breaker="open", reason="volatility halt")
        elif name == "kill_switch":
            self.kill_switch = True
            self.emit("safety", now, kill_switch=True, reason="operator stop")
        elif name == "kill_switch_off":
            self.kill_switch = False
            self.emit("safety", now, kill_switch=False, reason="operator release")
        elif name == "api_errors":
            self.api_failure_rate = 0.5
            for _ in range(10):
                self.emit("api_call", now, endpoint="POST /api/v3/order", ok=False,
                          latency=round(self.rng.uniform(1.0, 5.0), 3), status=503)
        elif name == "losing_streak":
            self.losing = True
            for _ in range(12):
                self.trade(now)
        elif name == "replay":
            self.log.extend(dict(e) for e in self.log[-REPLAY_EVENTS:])
        elif name == "recover":
            self.breaker_open = self.kill_switch = self.losing = False
            self.api_failure_rate = 0.02
            self.equity = self.peak
            self.emit("safety", now, kill_switch=False, circuit_breaker="closed", reason="recovered")
            self.emit("equity", now, equity=round(self.equity, 2))
        else:
            TradingDialect.check_scenario(name)  # raises, naming the known ones
            raise NotImplementedError(f"scenario {name!r} is listed but not played")


# One set of bots per simulator (weak: a stopped simulator takes its bots with it).
_BOTS: "weakref.WeakKeyDictionary[Simulator, dict[str, Bot]]" = weakref.WeakKeyDictionary()


def bot(sim: "Simulator", account: str = DEFAULT_ACCOUNT) -> Bot:
    bots = _BOTS.setdefault(sim, {})
    found = bots.get(account)
    if found is None:
        seed_rng = sim.market.rng
        found = bots[account] = Bot(account, tuple(sorted(sim.market.symbols)) or DEFAULT_SYMBOLS,
                                    random.Random(seed_rng.random()))
    return found


def run_scenario(sim: "Simulator", name: str, account: str | None = None) -> dict[str, Any]:
    """Apply a scenario to one account's bot (or every bot of this simulator); returns a summary."""
    TradingDialect.check_scenario(name)
    bots = [bot(sim, account)] if account else (list(_BOTS.get(sim, {}).values()) or [bot(sim)])
    now = time.time()
    for b in bots:
        if not b.started:
            b.start(now)
        b.scenario(name, now)
    return {"scenario": name, "accounts": [b.account for b in bots],
            "events_logged": {b.account: len(b.log) for b in bots}}


class TradingDialect(Dialect):
    name = "trading"
    requires_auth = True
    scenarios = SCENARIOS

    @classmethod
    def scenario(cls, sim: "Simulator", name: str, params: dict[str, str]) -> dict[str, Any]:
        return run_scenario(sim, name, params.get("account") or None)

    def __init__(self, session) -> None:
        super().__init__(session)
        account = (session.query.get("account") or [DEFAULT_ACCOUNT])[0]
        self.bot = bot(self.sim, account)
        # Like a real bot that cannot know what the last connection delivered, a new connection
        # starts with the most recent events again: the exporter must count them once.
        self.cursor = max(0, len(self.bot.log) - REPLAY_EVENTS)

    async def opened(self) -> None:
        if self.sim.api_key is None:
            self.session.authenticated = True  # no key configured: anyone may listen

    async def received(self, message: str | bytes) -> None:
        try:
            request = json.loads(message)
        except ValueError:
            return
        if isinstance(request, dict) and request.get("type") == "auth":
            sim = self.sim
            if sim.faults.reject_auth or (sim.api_key is not None and request.get("token") != sim.api_key):
                sim.stats.auth_rejected += 1
                await self.session.close(1008, "authentication failed")
            else:
                sim.stats.auth_ok += 1
                self.session.authenticated = True

    async def stream(self) -> None:
        """Send the bot's new events (live ticks and scenario events) as they are logged."""
        sim, session, b = self.sim, self.session, self.bot
        interval = 1.0 / sim.rate if sim.rate > 0 else 0.5
        while True:
            await asyncio.sleep(min(interval, 0.5))
            if not session.ready or sim.faults.stall_all:
                continue
            b.advance(time.time(), sim.rate)
            events = b.log[self.cursor:]
            self.cursor = len(b.log)
            if sim.faults.garbage:
                await session.send(self.garbage_frame)
                sim.stats.garbage_sent += 1
            if events:
                sim.stats.sent[b.account] = sim.stats.sent.get(b.account, 0) + len(events)
                for frame in self.pack(events):
                    if not await session.send(frame):
                        return

    def replay_ready(self) -> bool:
        return self.session.ready  # a bot streams as soon as the client is in: nothing to subscribe

    def pack(self, events: list[Any]) -> list[str]:
        # Batches of up to 100 events per frame: a replay arrives as a few arrays, like a real bot's.
        return [compact_json(events[i:i + 100]) for i in range(0, len(events), 100)]


# --- `feedwatch demo` ---------------------------------------------------------------------------
#
# Two demo components (exporter/commands/demo.py lists them): the bot's simulator, started before
# the exporter (examples/demo.yml reads its URL from DEMO_BOT_URL), and a scenario that walks the
# bot through every kind of trouble, so each Trading* alert fires in the demo too.

DEMO_SYMBOLS = ("AAPL", "MSFT")  # held by the bot, priced by the demo's stocks feed
# (seconds into each cycle, scenario, what the viewer should see)
DEMO_SCENARIO: list[tuple[float, str, str]] = [
    (8.0, "api_errors", "the bot's exchange API calls start failing: TradingApiErrors"),
    (12.0, "losing_streak", "the bot loses trade after trade: TradingConsecutiveLosses"),
    (16.0, "drawdown", "equity falls 25 % below its peak: TradingDrawdownDaily/Weekly/Total"),
    (20.0, "circuit_breaker", "the bot opens its circuit breaker: TradingCircuitBreakerOpen"),
    (24.0, "kill_switch", "an operator pulls the kill switch: TradingKillSwitchActive"),
    (38.0, "recover", "the bot recovers: breaker closed, kill switch off, equity back at its peak"),
]
DEMO_CYCLE = 45.0


class DemoBot:
    """The trading bot's simulator for ``feedwatch demo``."""

    name = "trading bot simulator"

    def __init__(self, ctx: Any) -> None:
        self.sim: Any = None

    async def start(self, ctx: Any) -> None:
        from exporter.simulator.server import Simulator

        self.sim = Simulator("trading", DEMO_SYMBOLS, rate=2.0)
        await self.sim.start()
        ctx.extras["trading_sim"] = self.sim
        ctx.extras.setdefault("environ", {})["DEMO_BOT_URL"] = self.sim.ws_url
        ctx.urls.append(("trading bot (ws)", self.sim.ws_url))

    async def stop(self) -> None:
        if self.sim is not None:
            await self.sim.stop()


class DemoTradingScenario(Timeline):
    """Plays ``DEMO_SCENARIO`` on the demo's bot, again every ``DEMO_CYCLE`` seconds."""

    name = "trading scenario"
    cycle = DEMO_CYCLE

    def steps(self, ctx: Any) -> list[Step]:
        sim = ctx.extras["trading_sim"]  # published by DemoBot, which starts before this
        return [(at, description, functools.partial(run_scenario, sim, scenario))
                for at, scenario, description in DEMO_SCENARIO]
