"""One WebSocket to a venue: open, authenticate, subscribe, keep alive, read until it ends.

A ``Link`` lives exactly as long as its socket; reconnecting means a new ``Link`` (the shard in
``runner.py`` decides when, with backoff). Only the *primary* link of a shard writes connection
bookkeeping into the FeedBook (connected, disconnected, acknowledgements, heartbeats); a
replacement opened for a make-before-break rollover streams data into the same book but keeps its
acknowledgements to itself until it is promoted, so the exported state never shows a gap or a
double connection.

The socket itself is a *transport* (``transport.py``; ``transport: aiohttp | picows`` per feed):
it opens, sends text, pings, closes with a code, reports its backlog and hands over *batches*:
the data frames that arrived together, then maybe one event (a ping, a pong, the end). Everything
else (accounting, heartbeats, signals, pacing, reasons) is here, the same for both.

The hot path, per batch and per data frame, is::

    now = clock()                          # the injected clock (book time), once per batch
    frames, size = len(batch), sum(map(len, batch))   # the batch's accounting, in locals
    for data in batch:
        record((now, data))                # only with the frame recorder on (recorder.py): a deque append
        signals = adapter.handle(data, now)   # decode + book update, in the adapter
        if signals: slow path (acks, auth, replies, problems, rejected updates) else: ok = True

and once per batch, before a ``read()`` that may wait (``_count``): the bytes and the last
message time into the book (``frame_received``), the heartbeat (``beat.last_heartbeat``: a data
frame is a sign of life too), the arrivals for the keeper (``rx``), and ``frame_ok`` if a plain
data frame came. A batch is cut at ``STEP_SECONDS`` of work (``step`` frames): then the event loop gets a
turn, and the rest a clock reading of its own (``_read`` says why nothing else can see the locals
before they are written). All
with no logging and no metric library. ``beat`` is the connection's ``ConnectionState`` while
this link is the shard's primary (so ``feedwatch_feed_last_heartbeat_timestamp_seconds`` moves
with every frame, ping or pong, even with ``ping_interval: 0``), a private stand-in otherwise.
Only a plain data frame (no signals) ends a run of consecutive errors (``frame_ok``): acks,
pongs, pings and other control traffic prove the socket, not the data; a frame whose updates the
book rejected (``Rejected``: counted there, only logged here) does not either. WebSocket pings and pongs
are handled here, not by the WebSocket library (neither transport answers or sends them by
itself), so they count as heartbeats; a server ping is answered with a pong echoing its payload.

Liveness is a small keeper task on the event loop's clock, following ``keepalive.Keepalive``:
our pings every ``ping_interval`` (WebSocket or the adapter's application-level ping; to a venue
that pings us itself, only when it has gone quiet), and a close with ``heartbeat_timeout`` when
nothing has arrived for ``heartbeat_timeout``. The keeper also asks the shard for a rollover when
the venue's connection age limit nears.

When the connection is *up* (``feedwatch_feed_up``) is the venue's word, not the socket's: an
opened socket is counted (``feedwatch_feed_connects_total``; its end is a disconnect with its
reason) but reads up only once the venue accepted the link (``accepted``): authenticated where
the venue authenticates (Polygon's ``auth_success``), and then its first subscription
acknowledged or, before any ack (venues that send none: subscriptions in the URL), its first data
frame (a frame the adapter read without a status, ack, error or refusal in it). A link without
symbols is accepted by the venue's authentication success where it authenticates, else (a
trading bot's stream) by its first frame, heartbeat, ping or pong. A loop of refused logins, or a
venue that closes each socket right after it opens, never reads up, so FeedDown holds and keeps
inhibiting the symbol alerts. Until accepted, each data frame takes a short slow path
(``_accepted_by``); after, one test of a local.

How a link ends is its disconnect reason: a close frame from the venue is ``server_closed`` (its
code and text go to the log); a TCP connection that ends without one (reset, EOF, a killed venue
process) is ``network_error``; the reasons we close for are our own (``heartbeat_timeout``,
``silent_stall``, ...). The connection is marked down the moment the link decides to close, not
after the close handshake (which a dead peer never answers).

``delivered`` tells the shard's backoff whether the venue really served this link (it
acknowledged a subscription, or a symbol of the link updated; for a feed without symbols, a data
frame arrived): such a connection resets the reconnect backoff however short it was.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any, Coroutine, Iterable, Protocol, Sequence

import aiohttp

from exporter.feeds.base import (
    NOTHING,
    Acknowledged,
    Adapter,
    Authenticated,
    AuthFailed,
    Close,
    Heartbeat,
    Problem,
    Rejected,
    Reply,
    Signal,
    Unsubscribed,
)
from exporter.feeds import transport_aiohttp
from exporter.feeds.keepalive import Keepalive
from exporter.feeds.transport import CLOSE_TIMEOUT, ConnectFailed, Event, Transport

__all__ = ["CLOSE_TIMEOUT", "ConnectFailed", "Link", "Owner", "RunnerView"]

if TYPE_CHECKING:
    from exporter.book import FeedBook
    from exporter.config import FeedConfig
    from exporter.feeds.recorder import FrameRing

log = logging.getLogger(__name__)

# Seconds of frames the read loop works through before it gives the event loop a turn, though
# more are queued: one socket read is up to 256 KiB of frames (more when reads queue up behind a
# slow step), 4 ms of book updates on a quiet core and several times that on a busy one; a
# scrape's render slice, the API and the other feeds wait for all of it (issue 14: the read loop
# was most of the loop iterations over 20 ms). Counted in frames, from how long the last part of
# a batch took (two ``perf_counter`` readings per part, nothing more per frame). By time, not
# bytes: a turn costs the read loop more than its ~10 us of scheduling (aiohttp's flow control
# pauses and resumes the socket around it), and a cut every 64 KiB of 100-quote Polygon frames
# (five frames, ~1 ms) cost a quarter of the ingest rate in ``bench scrape-load``.
STEP_SECONDS = 0.004


class Reporter(Protocol):
    def report(self, kind: str, message: str) -> None:
        """Log a problem of this kind once (then rate-limited), with context."""


class RunnerView(Protocol):
    """What a link uses of the feed's runner (``runner.FeedRunner``): shared by its shards."""

    feed: "FeedBook"
    config: "FeedConfig"
    clock: Any
    adapter_class: type[Adapter]
    session: aiohttp.ClientSession | None
    problems: Reporter
    recording: "FrameRing | None"     # the feed's frame recorder ring, if recording

    def tls_context(self) -> ssl.SSLContext:
        """How a wss:// venue is verified (``transport.tls_context``, made once per runner)."""

    def note_connected(self, now: float) -> None:
        """A primary link opened at book time ``now`` (the silent-stall reference)."""


class Owner(Protocol):
    """The shard a link serves (``runner.Shard``). Declared here so the link never imports the
    runner: ``runner.py`` builds links; a link only calls back through this interface."""

    name: str
    symbols: dict[str, None]          # the shard's symbols, an ordered set
    runner: RunnerView

    def replace_link(self, old: "Link", reason: str) -> None:
        """Start a make-before-break replacement of ``old``."""


class _Beat:
    """Where a link that is not (yet) its shard's primary writes its heartbeats: nowhere shared."""

    __slots__ = ("last_heartbeat",)

    def __init__(self) -> None:
        self.last_heartbeat = 0.0


class Link:
    """One socket of one shard (connection label ``shard.name``)."""

    def __init__(self, shard: Owner, primary: bool) -> None:
        runner = shard.runner
        self.shard = shard
        self.runner = runner
        self.name = shard.name
        self.feed = runner.feed
        self.config = runner.config
        self.clock = runner.clock
        self.adapter = runner.adapter_class(runner.config, runner.feed, shard.name)
        self.beat: Any = _Beat()              # see the module docstring; set by ``primary``
        self._primary = primary
        self.ws: Transport | None = None      # the open socket (transport.py), once connected
        # Why the link ended: a disconnect reason; ``cause`` is the exception, if one did it.
        self.reason: str | None = None
        self.cause: BaseException | None = None
        self.opened_at: float | None = None   # loop time the socket opened
        self.ended_at: float | None = None
        self.requested: set[str] = set()      # subscriptions sent
        self.acked: set[str] = set()          # subscriptions the venue confirmed
        self.live = False                     # setup reached the subscribe step
        self.rx = 0                           # frames/pings/pongs received (liveness)
        self.rx_control = 0                   # of which pings and pongs
        self.venue_acked = False              # the venue confirmed a subscription on this link
        self.accepted = False                 # the venue accepted the link: up (module docstring)
        self.close_detail = ""                # the venue's close code and text, for the log
        self._updates_at_open = 0             # the shard's symbols' update count when it opened
        self.authenticated = asyncio.Event()
        self.ready = asyncio.Event()          # accepted, and every requested symbol acked
        self._rollover_asked = False
        self._control_lock = asyncio.Lock()
        self._next_control = 0.0
        self._helpers: set[asyncio.Task[None]] = set()
        self._closer: asyncio.Task[None] | None = None
        self._url_symbols: list[str] = []
        self._held = 0                        # bytes of a cut batch not worked through yet (_read)
        self.task = asyncio.create_task(self._run(), name=f"feed {self.feed.name}[{self.name}]")

    # --- public --------------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return f"{self.feed.name}[{self.name}]"

    @property
    def fields(self) -> dict[str, str]:
        """This connection as log fields (``extra=``; exporter/commands/logformat.py)."""
        return {"feed": self.feed.name, "connection": self.name}

    @property
    def is_open(self) -> bool:
        return self.ws is not None and not self.ws.closed and self.reason is None

    @property
    def primary(self) -> bool:
        return self._primary

    @primary.setter
    def primary(self, value: bool) -> None:
        self._primary = value
        if value and self.opened_at is not None:
            self.beat = self.feed.connection(self.name)
        elif not value:
            self.beat = _Beat()

    @property
    def delivered(self) -> bool:
        """The venue really served this link (see the module docstring): resets the backoff."""
        if self.opened_at is None:
            return False
        if self.venue_acked or self._shard_updates() > self._updates_at_open:
            return True
        return not self.shard.symbols and self.rx > self.rx_control

    def receive_backlog(self) -> int:
        """Bytes that arrived on this socket and wait for the reader: what the kernel holds for
        it (``FIONREAD``) plus the frames the transport has parsed and not yet handed over
        (``Transport.backlog``) plus those of a batch the reader cut and has not worked through
        yet (``_read``: it gives the loop a turn every ``STEP_SECONDS``). Read once a second by the
        sweep, never per frame."""
        ws = self.ws
        if ws is None or ws.closed:
            return 0
        return ws.backlog() + self._held

    def _shard_updates(self) -> int:
        symbols = self.feed.symbols
        return sum(symbols[s].updates for s in self.shard.symbols if s in symbols)

    def uptime(self) -> float:
        if self.opened_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else asyncio.get_running_loop().time()
        return end - self.opened_at

    def close(self, reason: str) -> None:
        """End this link with ``reason`` (the first reason given wins). Returns at once.

        The connection counts as down from here: a peer that is gone never answers the close
        handshake, and the exported state must not wait for it.
        """
        if self.reason is None:
            self.reason = reason
        self._mark_down()
        if self.ws is not None:
            if not self.ws.closed and self._closer is None:
                # Not a helper: the reader returns as soon as close() starts, and the close
                # handshake must not be cancelled with the helpers then.
                self._closer = asyncio.create_task(self._close_socket())
        elif not self.task.done():
            self.task.cancel()  # still connecting: nothing to close politely

    async def subscribe(self, symbols: Sequence[str]) -> None:
        """Subscribe more symbols on the live socket (no reconnect)."""
        symbols = [s for s in symbols if s not in self.requested]
        if not symbols:
            return
        self.requested.update(symbols)
        self.ready.clear()
        await self.send_control(self.adapter.subscribe_messages(symbols))

    async def unsubscribe(self, symbols: Sequence[str]) -> None:
        symbols = [s for s in symbols if s in self.requested]
        if not symbols:
            return
        self.requested.difference_update(symbols)
        self.acked.difference_update(symbols)
        await self.send_control(self.adapter.unsubscribe_messages(symbols))
        self._check_ready()

    async def resubscribe(self, symbols: Sequence[str]) -> None:
        """Unsubscribe and subscribe again (a critical symbol's subscription may be dead)."""
        symbols = [s for s in symbols if s in self.requested]
        if not symbols:
            return
        self.acked.difference_update(symbols)
        if self.primary:
            self.feed.unacknowledge(symbols)
        self.ready.clear()
        adapter = self.adapter
        await self.send_control(adapter.unsubscribe_messages(symbols) + adapter.subscribe_messages(symbols))

    async def send_control(self, messages: Iterable[str]) -> None:
        """Send control messages, at most ``adapter.control_rate`` per second."""
        rate = self.adapter.control_rate
        async with self._control_lock:
            loop = asyncio.get_running_loop()
            for message in messages:
                if rate:
                    # A loop, not one sleep: a pong may take the slot meanwhile (_take_control_slot).
                    while (wait := self._next_control - loop.time()) > 0:
                        await asyncio.sleep(wait)
                    self._next_control = loop.time() + 1.0 / rate
                if not await self.send(message):
                    return

    def _take_control_slot(self) -> None:
        """A pong is sent at once but uses a control slot: Binance counts pongs in the same
        5-per-second budget as subscribe requests, so the next request waits its turn."""
        rate = self.adapter.control_rate
        if rate:
            now = asyncio.get_running_loop().time()
            self._next_control = max(now, self._next_control) + 1.0 / rate

    async def send(self, text: str) -> bool:
        ws = self.ws
        if ws is None or ws.closed:
            return False
        try:
            await ws.send(text)
        except ConnectionError as exc:
            self.feed.error("send", f"{self.label}: {exc}")
            self.runner.problems.report("send", f"could not send on {self.label}: {exc!r}", connection=self.name)
            self.close("network_error")
            return False
        return True

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until ready or ended; True when ready (and still open)."""
        ready = asyncio.ensure_future(self.ready.wait())
        try:
            await asyncio.wait({ready, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        return self.ready.is_set() and self.is_open

    def promote(self, now: float) -> None:
        """Become the shard's primary link: take over the connection bookkeeping."""
        feed = self.feed
        feed.opened(self.name, now)
        self.primary = True
        feed.connection(self.name).symbols = tuple(self.shard.symbols)
        feed.acknowledge([s for s in self.acked if s in self.shard.symbols], now)
        if self.accepted:
            feed.connected(self.name, now)
        self.runner.note_connected(now)

    # --- the life of the socket ----------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._open()
            self._spawn(self._setup())
            self._spawn(self._keep_alive())
            await self._read()
        except asyncio.CancelledError:
            if self.reason is None:
                self.reason = "shutdown"
            # Cancellation is how a connecting link is stopped; the shard awaits us with
            # asyncio.wait, so swallowing it here cannot hide a cancel meant for someone else.
        except ConnectFailed as exc:
            self.cause = exc.__cause__ or exc
        except Exception as exc:  # anything else is a bug or an odd transport error: survive it
            self.cause = exc
            if self.reason is None:
                self.reason = "protocol_error" if self.opened_at is not None else None
            log.warning("%s: connection failed unexpectedly: %r", self.label, exc, exc_info=True,
                        extra={**self.fields, "reason": self.reason})
        finally:
            self.ended_at = loop.time()
            for task in list(self._helpers):
                task.cancel()
            if self.opened_at is not None and self.reason is None:
                # Every way the reader ends names its reason; should one ever not, it is not the
                # venue's word that it closed (that is a close frame): call it a network error.
                self.reason = "network_error"
            self._mark_down()
            if self.ws is not None and self._closer is None:
                self._closer = asyncio.create_task(self._close_socket())
            if self._closer is not None:
                # Bounded by the closer's own wait_for; awaited to the end so that how the close
                # went (close_detail) is known before the shard logs the reconnect.
                await asyncio.wait({self._closer})

    def _mark_down(self) -> None:
        """Count this (primary, opened) link's disconnect once, with its reason (and when: the
        status page says since when a feed is down)."""
        if self.primary and self.opened_at is not None and self.reason is not None:
            self.feed.disconnected(self.name, self.reason, self.clock.time())  # a no-op once down

    async def _open(self) -> None:
        symbols = self._url_symbols = list(self.shard.symbols)
        url = self.adapter.url(symbols)
        config = self.config
        tls = self.runner.tls_context() if url.startswith("wss:") else None
        try:
            if config.transport == "picows":
                from exporter.feeds import transport_picows  # only where configured: an optional library
                ws: Transport = await transport_picows.connect(url, config.connect_timeout, tls)
            else:
                assert self.runner.session is not None
                ws = await transport_aiohttp.connect(self.runner.session, url, config.connect_timeout, tls)
        except ConnectFailed as exc:
            self.feed.error("connect", f"{self.label}: {exc}")
            raise
        self.ws = ws
        if self.reason is not None:  # closed while connecting
            await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT + 0.25)
            raise asyncio.CancelledError
        self.opened_at = asyncio.get_running_loop().time()
        self._updates_at_open = self._shard_updates()
        if self.primary:
            now = self.clock.time()
            self.feed.opened(self.name, now)   # counted; up only once accepted (_accept)
            self.feed.connection(self.name).symbols = tuple(self.shard.symbols)
            self.beat = self.feed.connection(self.name)
            self.runner.note_connected(now)

    async def _setup(self) -> None:
        """Authenticate, then subscribe everything this shard carries."""
        adapter = self.adapter
        await self.send_control(adapter.open_messages())
        if adapter.requires_auth:
            try:
                await asyncio.wait_for(self.authenticated.wait(), self.config.connect_timeout)
            except asyncio.TimeoutError:
                self.feed.error("auth", f"{self.label}: no answer to authentication")
                self.runner.problems.report("auth", f"{self.label}: no answer to authentication within "
                                                    f"{self.config.connect_timeout}s", connection=self.name)
                self.close("protocol_error")
                return
        else:
            self.authenticated.set()
        self.live = True
        if adapter.subscribed_in_url():
            # The URL subscribed exactly what it was built with; later additions need a new URL.
            self.requested.update(self._url_symbols)
            self._acknowledged(self._url_symbols, self.clock.time(), from_venue=False)
            return
        symbols = list(self.shard.symbols)
        if symbols:
            self.requested.update(symbols)
            await self.send_control(adapter.subscribe_messages(symbols))
        self._check_ready()

    async def _read(self) -> None:
        """Read until the socket ends: the hot path (module docstring), batched.

        The transport hands over a *batch*: the data frames that arrived together and wait for
        the reader (``transport.py``), then maybe one event (a ping, a pong, the end). All of a
        batch arrived before the clock is read, so one reading is the time of every frame of it.
        Its frames and bytes are counted (with the heartbeat and the last message time) before
        the next ``read()`` that may wait, or before the first frame that takes the slow path:
        nothing else runs in between, so every other task (the keeper, a scrape, the sweep) sees
        them exact, and so do the slow paths (a frame with signals, the venue's acceptance, a
        control frame, the end of the socket). Measured in bench/README.md ("Transport").

        A batch is cut at ``step`` frames (as many as the previous part did in ``STEP_SECONDS``):
        written, then the loop gets a turn (``sleep(0)``) and the rest a clock reading of its
        own: one socket read's frames held the loop for 20-44 ms under load (issue 14's stalls).
        """
        ws = self.ws
        assert ws is not None
        read = ws.read
        handle = self.adapter.handle
        frame_ok = self.feed.frame_ok
        clock = self.clock.time
        ring = self.runner.recording
        record = ring.frames.append if ring is not None else None
        waiting = True   # not accepted by the venue yet: each frame asks _accepted_by
        step = 64        # frames per turn of the event loop (STEP_SECONDS at the last part's pace)
        perf = time.perf_counter
        while True:
            batch, event = await read()
            start, count = 0, len(batch)
            held = part_bytes = 0   # of a cut batch: the bytes still to work through, the last part's
            while start < count:
                if start:  # cut at ``step`` frames: the loop's turn, then the rest
                    # What waits for the next part is still backlog (receive_backlog): summed at
                    # the first cut, then less each part's bytes (not summed again per turn).
                    held = held - part_bytes if held else sum(map(len, batch[start:]))
                    self._held = held
                    await asyncio.sleep(0)
                    self._held = 0
                part = batch if not start and count <= step else batch[start:start + step]
                start += len(part)
                now = clock()
                began = perf()
                frames, size = len(part), sum(map(len, part))   # of the part, not yet written
                part_bytes = size
                ok = False       # a plain data frame in the part, not yet written (``frame_ok``)
                for data in part:
                    if record is not None:
                        record((now, data))
                    try:
                        signals = handle(data, now)
                    except Exception as exc:  # an adapter bug must cost one frame, not the feed
                        signals = (Problem("decode", f"adapter raised {exc!r}"),)
                    if signals or waiting:
                        # The slow path: the batch's accounting (and the data frames before this
                        # one ending a run of errors) written first, then this frame's signals.
                        if frames or ok:
                            self._count(frames, size, now, ok)
                            frames = size = 0
                            ok = False
                        if signals:
                            self._on_signals(signals, now)
                        else:
                            frame_ok()
                        if waiting:
                            waiting = not self._accepted_by(signals, now)
                    else:
                        ok = True
                if frames or ok:
                    self._count(frames, size, now, ok)
                took = perf() - began
                if took > 0.0:   # the next part: as many frames as this pace fits in STEP_SECONDS
                    step = int(len(part) * STEP_SECONDS / took) or 1
            if event is not None and not await self._on_event(event):
                return

    def _count(self, frames: int, size: int, now: float, ok: bool) -> None:
        """Write a batch's accounting (``_read``): ``frames`` frames of ``size`` bytes read at
        book time ``now``; ``ok``: one of them was a plain data frame, ending a run of errors."""
        self.feed.frame_received(size, now)
        self.beat.last_heartbeat = now
        self.rx += frames
        if ok:
            self.feed.frame_ok()

    async def _on_event(self, event: Event) -> bool:
        """A ping, a pong or the end of the socket (``transport.Event``); False when it ended."""
        kind = event.kind
        if kind is Event.PING or kind is Event.PONG:
            self.rx += 1
            self.rx_control += 1
            now = self.clock.time()
            if self.primary:
                self.feed.heartbeat(self.name, now)
            if not self.accepted:
                self._accepted_by(NOTHING, now, control=True)
            if kind is Event.PING:
                self._take_control_slot()
                await self.ws.pong(event.data)  # type: ignore[union-attr,arg-type]
            return True
        if self.reason is None:
            if kind is Event.CLOSE:
                self.reason = "server_closed"  # the venue sent a close frame: its decision
                self.close_detail = f"close code {event.code}" + (f" {event.text!r}" if event.text else "")
            elif kind is Event.ERROR:
                exc = event.data
                self.cause = exc if isinstance(exc, BaseException) else None
                # A frame that breaks the protocol is the venue's fault; a transport error is not.
                self.reason = "protocol_error" if event.protocol else "network_error"
            else:
                # ENDED: we closed it (reason already set), or the TCP connection went away
                # without a close frame.
                self.reason = "network_error"
        return False

    # --- the slow path: what the adapter's signals ask for -------------------------------------

    def _on_signals(self, signals: Sequence[Signal], now: float) -> None:
        """Act on a frame's signals. Such a frame never ends a run of consecutive errors: it is
        control traffic (acks, pongs, auth, replies) or trouble, not data (``frame_ok``)."""
        for signal in signals:
            kind = type(signal)
            if kind is Acknowledged:
                self._acknowledged(signal.symbols, now)  # type: ignore[attr-defined]
            elif kind is Unsubscribed:
                self.acked.difference_update(signal.symbols)  # type: ignore[attr-defined]
            elif kind is Heartbeat:
                if self.primary:
                    self.feed.heartbeat(self.name, now)
            elif kind is Reply:
                self._spawn(self.send_control([signal.text]))  # type: ignore[attr-defined]
            elif kind is Authenticated:
                self.authenticated.set()
                if not self.shard.symbols:
                    self._accept(now)  # nothing to subscribe: the venue's yes is all there is
            elif kind is AuthFailed:
                self.feed.error("auth", signal.message)  # type: ignore[attr-defined]
                self.runner.problems.report(
                    "auth", f"{self.label}: venue refused us ({signal.reason}): {signal.message}",  # type: ignore[attr-defined]
                    connection=self.name, reason=signal.reason)  # type: ignore[attr-defined]
                self.close(signal.reason)  # type: ignore[attr-defined]
            elif kind is Close:
                reason, message = signal.reason, signal.message  # type: ignore[attr-defined]
                log.info("%s: venue asked to reconnect (%s): %s", self.label, reason, message,
                         extra={**self.fields, "reason": reason})
                if reason == "server_shutdown":
                    self.shard.replace_link(self, reason)   # planned: make-before-break
                else:
                    self.close(reason)
            elif kind is Problem:
                self.feed.error(signal.kind, signal.message)  # type: ignore[attr-defined]
                self.runner.problems.report(signal.kind, f"{self.label}: {signal.message}",  # type: ignore[attr-defined]
                                            connection=self.name)
            elif kind is Rejected:  # counted by the book already: only logged, not an error
                self.runner.problems.report(signal.reason, f"{self.label}: {signal.message}",  # type: ignore[attr-defined]
                                            what="rejected update", connection=self.name)

    def _acknowledged(self, symbols: Iterable[str], now: float, from_venue: bool = True) -> None:
        symbols = [s for s in symbols if s in self.requested]
        if symbols and from_venue:
            self.venue_acked = True
        self.acked.update(symbols)
        if self.primary:
            self.feed.acknowledge(symbols, now)
        if symbols and from_venue and self.authenticated.is_set():
            self._accept(now)
        self._check_ready()

    def _accepted_by(self, signals: Sequence[Signal], now: float, control: bool = False) -> bool:
        """Whether this frame (its ``signals``; ``control`` for a ping or pong) shows the venue
        accepted the link where no acknowledgement has said so yet: a data frame (one that
        carried no signal: no status, ack, error or refusal) after authentication; for a link
        without symbols, also the bot's heartbeat, a ping or a pong. Called until it returns
        True: the slow path."""
        if self.accepted:
            return True
        if not self.live or self.reason is not None:   # live: authenticated, subscribing
            return False
        if control or signals:
            if self.shard.symbols or any(type(signal) is not Heartbeat for signal in signals):
                return False
        self._accept(now)
        return True

    def _accept(self, now: float) -> None:
        """The venue accepted this link: the connection is up from here (primary links)."""
        if self.accepted or self.reason is not None:
            return
        self.accepted = True
        if self.primary:
            self.feed.connected(self.name, now)
        self._check_ready()

    def _check_ready(self) -> None:
        if self.live and self.accepted and self.requested <= self.acked:
            self.ready.set()

    # --- helpers -------------------------------------------------------------------------------

    async def _keep_alive(self) -> None:
        """Our pings, the liveness deadline (``keepalive.Keepalive``) and the age-limit rollover."""
        loop = asyncio.get_running_loop()
        adapter = self.adapter
        config = self.runner.config
        keeper = Keepalive(config.ping_interval, config.heartbeat_timeout, adapter.server_pings, loop.time())
        max_age = adapter.max_connection_age()
        # Roll over a little before the venue would cut us: 10 % of the age, at most 10 minutes.
        rollover_at = (self.opened_at + max_age - min(0.1 * max_age, 600.0)) if max_age else None  # type: ignore[operator]
        while True:
            now = loop.time()
            wake = keeper.next_wake(now)
            if rollover_at is not None and self.primary and not self._rollover_asked:
                wake = min(wake, max(rollover_at, now + 0.005))
            await asyncio.sleep(wake - now)
            now = loop.time()
            if self.runner.config is not config:  # reloaded: new ping and deadline settings
                config = self.runner.config
                keeper.retune(config.ping_interval, config.heartbeat_timeout, now)
            ping, dead = keeper.step(now, self.rx)
            if dead:
                log.info("%s: no frame, ping or pong for %.1fs: reconnecting", self.label, now - keeper.alive_at,
                         extra={**self.fields, "reason": "heartbeat_timeout", "silence": round(now - keeper.alive_at, 3)})
                self.close("heartbeat_timeout")
                return
            if ping:
                await self._ping()
            if rollover_at is not None and now >= rollover_at and self.primary and not self._rollover_asked:
                self._rollover_asked = True
                self.shard.replace_link(self, "rollover")

    async def _ping(self) -> None:
        """One ping: the adapter's application-level message, else a WebSocket ping."""
        self._take_control_slot()  # Binance counts our pings in its 5-per-second budget too
        message = self.adapter.ping_message()
        if message is not None:
            await self.send(message)
        elif self.ws is not None and not self.ws.closed:
            await self.ws.ping(b"feedwatch")  # a socket going away: the reader sees it go

    async def _close_socket(self) -> None:
        """Close the socket with a handshake, and say so when it fails instead of hiding it.

        A peer that never answers the close (a dead or black-holed venue: the usual end of a
        ``heartbeat_timeout``) costs nothing, the TCP connection is dropped anyway; it is noted
        in ``close_detail``, which the shard's reconnect line prints after the reason. Any other
        failure is unexpected: noted there too and logged once (rate-limited, kind ``close``).
        """
        ws = self.ws
        if ws is None or ws.closed:
            return
        error: BaseException | None = None
        try:
            # The transport gives up on the handshake after CLOSE_TIMEOUT and drops the
            # connection; this bound only guards against a close that hangs before that.
            error = await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT + 0.25)
        except asyncio.TimeoutError as exc:
            error = exc
        except Exception as exc:  # the close path must end the link whatever the transport does
            error = exc
        if error is None:
            return
        if isinstance(error, asyncio.TimeoutError):
            note = f"close handshake unanswered within {CLOSE_TIMEOUT:g}s"
        else:
            note = f"close failed: {error!r}"
            self.runner.problems.report("close", f"{self.label}: closing the socket failed ({self.reason}): {error!r}",
                                        connection=self.name, reason=self.reason)
        self.close_detail = f"{self.close_detail}; {note}" if self.close_detail else note

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._helpers.add(task)
        task.add_done_callback(self._helper_done)

    def _helper_done(self, task: asyncio.Task[None]) -> None:
        self._helpers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.warning("%s: helper task failed: %r", self.label, exc, exc_info=exc, extra=self.fields)
            self.close("protocol_error")
