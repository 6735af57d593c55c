"""The simulator's WebSocket server: sessions, the price stream and the fault switches.

Built on the ``websockets`` library while the exporter's client uses aiohttp: two independent
implementations of the protocol keep each other honest (a ping the client forgets to answer, a
close frame it mishandles, shows up here as it would against a venue).

    sim = Simulator("polygon", symbols=("AAPL", "MSFT"), rate=20, api_key="K")
    await sim.start()                  # sim.ws_url -> "ws://127.0.0.1:<port>"
    sim.fault("stall", "AAPL")         # or over HTTP, see control.py
    sim.state()["sent"]["AAPL"]        # wire events sent per symbol
    await sim.stop()

Everything here is single-threaded asyncio; the fault switches are plain attributes read on
every tick, so a fault set from the control API takes effect at the next tick.

Replay (``Simulator(..., replay=frames, replay_speed=2.0)``, ``feedwatch simulate --replay FILE``):
the dialect still answers the client (auth, subscriptions, pings), but instead of generated
ticks each connection gets the recorded frames, from the first, with their original spacing
divided by the speed, once it is ready (``Dialect.replay_ready``: authenticated and subscribed).
After the last frame the connection stays open and silent, as the venue was when the recording
was saved. The frames are ``(time, text or bytes)``; reading them from a file is the caller's job
(``exporter.feeds.recorder.read_recording``), so the simulator knows no file format.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Sequence
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Opcode
from websockets.protocol import State

from exporter.simulator import base
from exporter.simulator.base import Faults, Market, Stats, Tick, parse_fault

log = logging.getLogger(__name__)
# websockets logs every open/close at INFO; the simulator reports its own counters instead.
logging.getLogger("exporter.simulator.websockets").setLevel(logging.WARNING)


class Session:
    """One client connection: its subscriptions, auth state and dialect instance."""

    def __init__(self, sim: "Simulator", ws: ServerConnection, number: int) -> None:
        self.sim = sim
        self.ws = ws
        self.number = number
        target = urlsplit(ws.request.path if ws.request is not None else "/")
        self.path = target.path
        self.query = parse_qs(target.query)
        # symbol -> channels ("" for venues without channels)
        self.subscriptions: dict[str, set[str]] = {}
        self.authenticated = False
        self.dialect = sim.dialect_class(self)

    @property
    def ready(self) -> bool:
        return self.authenticated or not self.dialect.requires_auth

    def subscribe(self, symbol: str, channel: str = "") -> None:
        self.subscriptions.setdefault(symbol, set()).add(channel)

    def unsubscribe(self, symbol: str, channel: str = "") -> bool:
        channels = self.subscriptions.get(symbol)
        if channels is None or channel not in channels:
            return False
        channels.discard(channel)
        if not channels:
            del self.subscriptions[symbol]
        return True

    async def send(self, frame: str | bytes) -> bool:
        """Send one frame; False once the connection is gone."""
        try:
            await self.ws.send(frame)
        except ConnectionClosed:
            return False
        self.sim.stats.frames_sent += 1
        return True

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason)

    async def play(self, frames: Sequence[tuple[float, str | bytes]], speed: float) -> None:
        """Send recorded frames with their original spacing (divided by ``speed``), then stay silent."""
        stats = self.sim.stats
        while not self.dialect.replay_ready():
            await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        if frames:
            start, first = loop.time(), frames[0][0]
            for at, data in frames:
                delay = start + (at - first) / speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if not await self.send(data):
                    return
                stats.replayed += 1
        stats.replays_completed += 1
        await self.ws.wait_closed()

    def abort(self) -> None:
        """Cut the TCP connection without a close frame (a crash, a network failure)."""
        self.ws.transport.abort()

    async def stream_ticks(self) -> None:
        """Send one tick per subscribed symbol ``rate`` times a second, honouring the faults."""
        sim = self.sim
        stats = sim.stats
        sent = stats.sent
        dialect = self.dialect
        if sim.rate <= 0:
            await self.ws.wait_closed()
            return
        loop = asyncio.get_running_loop()
        interval = 1.0 / sim.rate
        next_at = loop.time()
        while True:
            next_at += interval
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_at = loop.time()  # fell behind (busy machine): skip ticks rather than burst
            if not self.ready or not self.subscriptions:
                continue
            faults = sim.faults
            if faults.flood:
                await self.flood()
                next_at = loop.time()
                if self.ws.state is not State.OPEN:
                    return
                continue
            if faults.stall_all:
                continue
            if faults.garbage:
                if not await self.send(dialect.garbage_frame):
                    return
                stats.garbage_sent += 1
            now = time.time()
            bad = faults.bad_prices
            events: list[Any] = []
            for symbol in list(self.subscriptions):
                if symbol in faults.stalled or not sim.market.trades(symbol):
                    continue
                wire = dialect.events(sim.market.tick(symbol, now, bad))
                if wire:
                    events.extend(wire)
                    sent[symbol] = sent.get(symbol, 0) + len(wire)
                    if bad:
                        stats.bad_prices_sent += len(wire)
            if events:
                for frame in dialect.pack(events):
                    if not await self.send(frame):
                        return


    async def flood(self, batch: int = 500) -> None:
        """The ``flood`` fault: batches of ``batch`` events, sent as fast as the client takes
        them, each stamped with the time it was *due* at the fault's rate (events per second).

        Like a venue whose events happen whatever its client does: a client that keeps up sees
        them on time; one that cannot falls ever further behind (TCP holds the frames back here,
        and their stamps keep their due time), with no queue growing in this process. Every
        event of a batch is a copy of one template (the subscribed symbols' current prices, so
        they are accepted); only the stamp changes. Until the fault is cleared or the client goes.
        """
        sim = self.sim
        dialect = self.dialect
        symbols = [s for s in self.subscriptions if sim.market.trades(s)]
        if not symbols:
            await asyncio.sleep(0.05)
            return
        marker = 1_111_111_111_111   # a plausible ms stamp (2005) that no price or id contains
        events: list[Any] = []
        per_symbol: dict[str, int] = {}
        while len(events) < batch:
            for symbol in symbols:
                tick = sim.market.tick(symbol, time.time())
                wire = dialect.events(Tick(symbol, tick.price, tick.bid, tick.ask, tick.size, marker, tick.seq))
                events.extend(wire)
                per_symbol[symbol] = per_symbol.get(symbol, 0) + len(wire)
            if not events:
                await asyncio.sleep(0.05)
                return
        frames = dialect.pack(events)
        mark = str(marker)
        start = time.time()
        sent = 0
        stats = sim.stats
        while sim.faults.flood and self.ws.state is State.OPEN:
            due = start + sent / sim.faults.flood
            ahead = due - time.time()
            if ahead > 0:
                await asyncio.sleep(ahead)
            stamp = str(int(due * 1000))
            for frame in frames:
                if not await self.send(frame.replace(mark, stamp)):
                    return
            sent += len(events)
            stats.flood_frames += len(frames)
            for symbol, n in per_symbol.items():
                stats.sent[symbol] = stats.sent.get(symbol, 0) + n


class Simulator:
    """A venue on 127.0.0.1 speaking one dialect, with switchable faults."""

    def __init__(self, venue: str = "polygon", symbols: tuple[str, ...] | list[str] = (),
                 rate: float = 10.0, api_key: str | None = None, host: str = "127.0.0.1",
                 port: int = 0, seed: int | None = None, faults: tuple[str, ...] | list[str] = (),
                 ping_interval: float | None = None, replay: Sequence[tuple[float, str | bytes]] | None = None,
                 replay_speed: float = 1.0) -> None:
        self.venue = venue
        self.dialect_class = base.get(venue)
        # Server pings every this many seconds (default: the dialect's habit); a client that
        # does not answer one within the same interval is disconnected, as venues do.
        self.ping_interval = ping_interval if ping_interval is not None else self.dialect_class.ping_interval
        self.rate = rate
        # None accepts any key; otherwise the dialect rejects a different one.
        self.api_key = api_key
        self.host = host
        self.port = port
        self.faults = Faults()
        self.market = Market(tuple(symbols), seed, self.faults)
        self.stats = Stats()
        self.sessions: set[Session] = set()
        # Recorded frames played to every connection instead of generated ticks (see the module docs).
        self.replay = list(replay) if replay is not None else None
        if replay_speed <= 0:
            raise ValueError(f"replay speed must be positive, got {replay_speed}")
        self.replay_speed = replay_speed
        self._server: Server | None = None
        self._numbers = 0
        for spec in faults:
            self.fault(*parse_fault(spec))

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await serve(
            self._handle, self.host, self.port,
            create_connection=self._connection_factory,  # type: ignore[arg-type]
            compression=None,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_interval,
            close_timeout=2,
            logger=logging.getLogger("exporter.simulator.websockets"),
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        log.info("simulator (%s) listening on %s", self.venue, self.ws_url)

    async def stop(self, abort: bool = False) -> None:
        """Stop serving. ``abort=True`` cuts every connection like a crashed process would."""
        if self._server is None:
            return
        if abort:
            for session in list(self.sessions):
                session.abort()
        self._server.close(close_connections=not abort)
        await self._server.wait_closed()
        self._server = None

    def fault(self, name: str, symbol: str | None = None, value: float | None = None) -> None:
        """Apply a fault by name (see ``base.FAULTS``); ``drop`` aborts the open connections now."""
        if name == "drop":
            self.stats.drops += 1
            for session in list(self.sessions):
                session.abort()
            return
        self.faults.set(name, symbol, value)
        log.info("simulator fault %s%s%s", name, f" {symbol}" if symbol else "", f" {value:g}" if value else "")

    def state(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "venue": self.venue,
            "url": self.ws_url,
            "rate": self.rate,
            "connections_total": stats.connections_total,
            "connections_open": stats.connections_open,
            "auth_ok": stats.auth_ok,
            "auth_rejected": stats.auth_rejected,
            "frames_sent": stats.frames_sent,
            "control_received": stats.control_received,
            "pings_received": stats.pings_received,
            "pings_ignored": stats.pings_ignored,
            "pongs_received": stats.pongs_received,
            "garbage_sent": stats.garbage_sent,
            "bad_prices_sent": stats.bad_prices_sent,
            "drops": stats.drops,
            "rest_requests": stats.rest_requests,
            "rest_refused": stats.rest_refused,
            "rest_symbols": dict(stats.rest_symbols),
            "flood_frames": stats.flood_frames,
            "replay": None if self.replay is None else {"frames": len(self.replay), "speed": self.replay_speed,
                                                        "sent": stats.replayed,
                                                        "completed": stats.replays_completed},
            "sent": dict(stats.sent),
            "subscriptions": sorted({s for session in self.sessions for s in session.subscriptions}),
            # Per open connection, so a test can tell each client's share apart (sharded replicas).
            "sessions": [sorted(session.subscriptions) for session in self.sessions],
            "faults": self.faults.snapshot(),
        }

    # --- internals ----------------------------------------------------------------------------

    def _connection_factory(self, protocol: Any, server: Server, **kwargs: Any) -> ServerConnection:
        """A websockets connection whose ping handling obeys the ``ignore_pings`` fault."""
        connection = ServerConnection(protocol, server, **kwargs)
        original = protocol.recv_frame
        stats, faults = self.stats, self.faults

        def recv_frame(frame: Any) -> None:
            if frame.opcode is Opcode.PING:
                stats.pings_received += 1
                if faults.ignore_pings:
                    stats.pings_ignored += 1
                    return  # no pong: to the client this peer looks dead
            elif frame.opcode is Opcode.PONG:
                stats.pongs_received += 1
            original(frame)

        protocol.recv_frame = recv_frame
        return connection

    async def _handle(self, ws: ServerConnection) -> None:
        self._numbers += 1
        session = Session(self, ws, self._numbers)
        self.sessions.add(session)
        self.stats.connections_total += 1
        self.stats.connections_open += 1
        streamer: asyncio.Task[None] | None = None
        try:
            if self.faults.accept_and_drop:  # a venue that takes the handshake and falls over
                self.stats.drops += 1
                session.abort()
                return
            await session.dialect.opened()
            streamer = asyncio.create_task(self._stream(session))
            loop = asyncio.get_running_loop()
            async for message in ws:
                self.stats.control_received += 1
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                self.stats.control_log.append((loop.time(), text[:200]))
                await session.dialect.received(message)
        except ConnectionClosed:
            pass
        finally:
            if streamer is not None:
                streamer.cancel()
                await asyncio.gather(streamer, return_exceptions=True)
            self.sessions.discard(session)
            self.stats.connections_open -= 1

    async def _stream(self, session: Session) -> None:
        try:
            if self.replay is not None:
                await session.play(self.replay, self.replay_speed)
            else:
                await session.dialect.stream()
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # a dialect bug must show, not silently stop the data
            log.exception("simulator stream for connection %d failed", session.number)
