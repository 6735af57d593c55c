"""Binance spot market streams (``kind: binance``): ``trade``, ``aggTrade`` and ``bookTicker``.

Protocol (https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams): one
socket to the combined-stream endpoint ``<url>/stream``; streams are named ``<symbol>@<type>``
with the symbol in lowercase, subscribed with numbered control requests, and every data event
arrives wrapped with the name of its stream::

    -> {"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade"],"id":1}
    <- {"result":null,"id":1}
    <- {"stream":"btcusdt@trade","data":{"e":"trade","E":1672515782136,"s":"BTCUSDT",
        "t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}}
    <- {"stream":"btcusdt@bookTicker","data":{"u":400900217,"s":"BTCUSDT","b":"25.35190000",
        "B":"31.21000000","a":"25.36520000","A":"40.66000000"}}
    -> {"method":"LIST_SUBSCRIPTIONS","id":2}
    <- {"result":["btcusdt@trade","ethusdt@trade"],"id":2}
    <- {"event":{"e":"serverShutdown","E":1770123456789}}

Times: a trade carries two, kept apart on purpose. ``T`` is when the trade happened, ``E``
when Binance's stream server emitted the event; latency is measured from ``T`` (the venue's
real delay to us) and ``E`` is not used. ``bookTicker`` has no timestamp at all, so a quote
updates the symbol's staleness but never observes latency.

Why SUBSCRIBE requests rather than streams in the URL: a connection may carry 1024 streams, and
a URL naming them all is ~20 kB, longer than many HTTP stacks accept; numbered requests are also
acknowledged one by one, so the runner knows exactly which symbols are live (it waits for these
acknowledgements before closing the old connection on a rollover). Every batch of SUBSCRIBE
requests ends with a ``LIST_SUBSCRIPTIONS`` (paced like the rest, answered after them): the
venue's list is compared with what was requested; streams missing from it are reported
(``subscribe`` error) and requested again (a few times per connection at most), streams nobody
asked for are reported as a ``protocol`` error.

Rules the runner enforces from the hooks below: at most 1024 streams per connection (so
``capacity()`` = 1024 // stream types per symbol, and large lists are sharded over several
connections), control messages under 5 per second (``control_rate`` 4: the venue counts pings and
pongs in the same budget), pongs echoing the server's pings (``server_pings``), a make-before-break
rollover before the 24-hour cut (``max_connection_age``). ``serverShutdown`` becomes a planned
reconnect (disconnect reason ``server_shutdown``).

Sequence gaps: trade ids (``t``) are contiguous per symbol, so a skipped id is a lost trade,
counted per symbol. aggTrade ids (``a``) are contiguous too and are checked when ``trade`` is not
subscribed (the two id spaces differ, and the trade stream already sees every trade). An id at or
below the last one seen is a duplicate delivered by the overlapping connection during a rollover
and is dropped; an id far below it means the venue restarted its ids, and counting resumes there.

Hot path: the stream name's type is read from the frame (the first ``@``), and one typed msgspec
decoder turns the frame into the struct the book applies. Anything else (replies, errors, events,
raw payloads) takes the slow path. Measured end to end (``bench/transport.py``): ~430,000
single-event frames/s through the runner on one core.

Known limit of the duplicate rule: during a rollover's overlap, if the new connection's reader
got a full trade ahead of the old one's, the old connection's earlier trades are dropped as
duplicates and counted as a gap. The venue sends every trade to both in the same order, so this
needs the event loop to fall a whole trade behind on one socket; it was not seen in tests.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import msgspec

from exporter.config import Duration
from exporter.feeds.base import (
    DECODE_ERRORS,
    NOTHING,
    Acknowledged,
    Adapter,
    Close,
    Problem,
    Reply,
    Signal,
    Unsubscribed,
    decode_reason,
    excerpt,
    preview,
    rejections,
)

if TYPE_CHECKING:
    from exporter.book import SymbolState

STREAM_TYPES = ("trade", "aggTrade", "bookTicker")
# The venue's limit of streams on one connection.
MAX_STREAMS = 1024
# Streams named in one SUBSCRIBE. Users report the venue silently ignoring a SUBSCRIBE of ~430
# streams (a frame-size limit, undocumented); 200 keeps each request a few kB.
SUBSCRIBE_BATCH = 200
# The venue cuts every connection at 24 h; rolling over 10 minutes early leaves time to confirm.
DEFAULT_MAX_AGE = 24 * 3600.0 - 600.0
# A trade id this far below the last one is not a duplicate but a venue that restarted its ids.
ID_RESTART = 1_000_000
# Audits that may re-request missing streams on one connection before it only reports them
# (a venue that keeps dropping a stream must not make us loop on control messages).
AUDIT_RETRIES = 3


# --- decoded payloads (the book applies these directly) --------------------------------------

class Trade(msgspec.Struct, gc=False):
    is_quote: ClassVar[bool] = False
    symbol: str = msgspec.field(name="s")
    price: float = msgspec.field(name="p")
    ts: int = msgspec.field(name="T")        # trade time; the event time "E" is not used
    seq: int = msgspec.field(name="t")       # trade id, contiguous per symbol


class AggTrade(msgspec.Struct, gc=False):
    is_quote: ClassVar[bool] = False
    symbol: str = msgspec.field(name="s")
    price: float = msgspec.field(name="p")
    ts: int = msgspec.field(name="T")
    seq: int = msgspec.field(name="a")       # aggregate trade id, contiguous per symbol


# With a tick sink (``FeedBook.tape``) trades are decoded with their quantity, as sent (a quoted
# decimal; cleaned by the sink, so a bad one never costs the price); without one, not at all.
class SizedTrade(Trade):
    size: Any = msgspec.field(name="q", default=None)


class SizedAggTrade(AggTrade):
    size: Any = msgspec.field(name="q", default=None)


class BookTicker(msgspec.Struct, gc=False):
    is_quote: ClassVar[bool] = True
    symbol: str = msgspec.field(name="s")
    bid: float = msgspec.field(name="b")
    ask: float = msgspec.field(name="a")
    # Spot bookTicker carries no time: 0 updates staleness and skips latency.
    ts: int = msgspec.field(name="T", default=0)


class _TradeFrame(msgspec.Struct, gc=False):
    data: Trade


class _AggTradeFrame(msgspec.Struct, gc=False):
    data: AggTrade


class _BookTickerFrame(msgspec.Struct, gc=False):
    data: BookTicker


class _SizedTradeFrame(msgspec.Struct, gc=False):
    data: SizedTrade


class _SizedAggTradeFrame(msgspec.Struct, gc=False):
    data: SizedAggTrade


# The character after the stream name's "@" picks the decoder: indexing a str frame gives a
# one-character str, a bytes frame an int, so both are keys (no slice allocated per frame).
# strict=False lets msgspec read Binance's quoted decimals ("0.001") as floats.
_FAST: dict[Any, msgspec.json.Decoder] = {}
_FAST_SIZED: dict[Any, msgspec.json.Decoder] = {}   # with a tick sink: trades with their quantity
for _key, _frame, _sized in (("t", _TradeFrame, _SizedTradeFrame), ("a", _AggTradeFrame, _SizedAggTradeFrame),
                             ("b", _BookTickerFrame, _BookTickerFrame)):
    _FAST[_key] = _FAST[ord(_key)] = msgspec.json.Decoder(_frame, strict=False)
    _FAST_SIZED[_key] = _FAST_SIZED[ord(_key)] = msgspec.json.Decoder(_sized, strict=False)
_PAYLOAD_TYPES = {"trade": Trade, "aggTrade": AggTrade}
_SIZED_PAYLOAD_TYPES = {"trade": SizedTrade, "aggTrade": SizedAggTrade}
_encode = msgspec.json.encode


@dataclass(frozen=True)
class BinanceOptions:
    # Stream types per symbol: trade, aggTrade, bookTicker.
    streams: tuple[str, ...] = ("trade", "bookTicker")
    # Age at which a connection is replaced (make-before-break) ahead of the venue's 24 h cut.
    max_connection_age: Duration = DEFAULT_MAX_AGE


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    streams: tuple[str, ...]
    symbols: tuple[str, ...]


class BinanceAdapter(Adapter):
    kind = "binance"
    Options = BinanceOptions
    # Under the venue's 5 incoming messages per second, which pings and pongs share.
    control_rate = 4.0
    server_pings = True
    description = "Binance spot: trade, aggTrade and bookTicker combined streams"

    def __init__(self, config, feed, connection: str = "0") -> None:
        super().__init__(config, feed, connection)
        self.streams: tuple[str, ...] = tuple(self.options.streams)
        self._ids = itertools.count(1)
        self._requests: dict[int, _Request] = {}
        # stream name -> symbol, for every stream this connection asked for and still wants.
        self._wanted: dict[str, str] = {}
        self._audit_retries = 0
        # Only one id space is checked for gaps (see the module docstring).
        # With a tick sink (its tape is on the book before adapters are built: Service, and
        # Book.add_feed for feeds added later), trades are decoded with their quantity. Chosen
        # once here: a test per single-event frame measured ~0.4 % of its instructions.
        sized = getattr(feed, "tape", None) is not None
        self._fast = _FAST_SIZED if sized else _FAST
        self._payload_types = _SIZED_PAYLOAD_TYPES if sized else _PAYLOAD_TYPES
        self._sequenced: type | None = ((SizedTrade if sized else Trade) if "trade" in self.streams
                                        else (SizedAggTrade if sized else AggTrade) if "aggTrade" in self.streams
                                        else None)
        # Bound once for the hot path. (`feedwatch check-config` builds adapters without a book,
        # only to ask their capacity: hence the defaults.)
        self._symbols = getattr(feed, "symbols", {})
        self._apply_one = getattr(feed, "apply_one", None)
        self._notes = getattr(feed, "notes", [])  # rejections to report (emptied in place)

    # --- limits the runner enforces -----------------------------------------------------------

    def capacity(self) -> int:
        return MAX_STREAMS // max(1, len(self.streams))

    def max_connection_age(self) -> float:
        return self.options.max_connection_age

    # --- messages to send ---------------------------------------------------------------------

    def url(self, symbols: Sequence[str]) -> str:
        return base_url(self.config.url) + "/stream"

    def stream_names(self, symbol: str) -> list[str]:
        lower = symbol.lower()
        return [f"{lower}@{kind}" for kind in self.streams]

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        """SUBSCRIBE requests, then the LIST_SUBSCRIPTIONS audit (the venue answers in order)."""
        wanted = {name: s for s in symbols for name in self.stream_names(s)}
        self._wanted.update(wanted)
        return self._requests_for("SUBSCRIBE", wanted) + [self.list_message()]

    def unsubscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        gone = {name: s for s in symbols for name in self.stream_names(s)}
        for name in gone:
            self._wanted.pop(name, None)
        return self._requests_for("UNSUBSCRIBE", gone)

    def list_message(self) -> str:
        """A LIST_SUBSCRIPTIONS request (the audit); its reply is compared with what we asked for."""
        request_id = next(self._ids)
        self._requests[request_id] = _Request("LIST_SUBSCRIPTIONS", (), ())
        return _encode({"method": "LIST_SUBSCRIPTIONS", "id": request_id}).decode()

    def _requests_for(self, method: str, streams: dict[str, str]) -> list[str]:
        names = list(streams)
        out = []
        for i in range(0, len(names), SUBSCRIBE_BATCH):
            chunk = tuple(names[i:i + SUBSCRIBE_BATCH])
            request_id = next(self._ids)
            symbols = tuple(dict.fromkeys(streams[n] for n in chunk))
            self._requests[request_id] = _Request(method, chunk, symbols)
            out.append(_encode({"method": method, "params": chunk, "id": request_id}).decode())
        return out

    # --- frames in ----------------------------------------------------------------------------

    def handle(self, data: str | bytes, now: float) -> Sequence[Signal]:
        at = data.find(b"@" if data.__class__ is bytes else "@")  # type: ignore[arg-type]
        try:
            decoder = self._fast.get(data[at + 1])  # no "@" (at = -1): data[0], "{", is no key
        except IndexError:
            decoder = None
        if decoder is None:
            return self._handle_slow(data, now)
        try:
            item = decoder.decode(data).data
        except DECODE_ERRORS:
            return self._handle_slow(data, now)
        if type(item) is self._sequenced:
            state = self._symbols.get(item.symbol)
            if state is not None:
                seq = item.seq
                if seq == state.last_seq + 1:
                    state.last_seq = seq  # the next id, as nearly always: no call needed
                elif not self._in_sequence(state, seq):
                    return NOTHING
        self._apply_one(item, now)
        if self._notes:  # something was rejected (slow path)
            return rejections(self.feed, data)
        return NOTHING

    def _in_sequence(self, state: "SymbolState", seq: int) -> bool:
        """Count a gap if ids were skipped; False for a duplicate (already applied)."""
        last = state.last_seq
        if seq <= last:
            if seq > last - ID_RESTART:
                self.feed.messages["trade"] += 1  # received (and counted), not applied twice
                return False
            state.last_seq = seq  # the venue restarted its ids: resume counting from here
            return True
        self.feed.check_sequence(state, seq)
        return True

    def _handle_slow(self, data: str | bytes, now: float) -> Sequence[Signal]:
        try:
            message = msgspec.json.decode(data)
        except DECODE_ERRORS as exc:
            return (Problem("decode", f"undecodable frame ({decode_reason(exc)}): {preview(data)}"),)
        if not isinstance(message, dict):
            self.feed.messages["other"] += 1
            return (Problem("protocol", f"expected a JSON object: {preview(data)}"),)
        if "result" in message or ("code" in message and "msg" in message):
            return self._reply(message)
        payload = message.get("data", message.get("event", message))
        if not isinstance(payload, dict):
            self.feed.messages["other"] += 1
            return (Problem("protocol", f"unexpected payload: {preview(data)}"),)
        return self._payload(payload, data, now)

    def _payload(self, payload: dict, data: str | bytes, now: float) -> Sequence[Signal]:
        event = payload.get("e")
        if event is not None and not isinstance(event, str):
            self.feed.messages["other"] += 1
            return (Problem("protocol", f"event type \"e\" is not a string: {preview(data)}"),)
        if event == "serverShutdown":
            self.feed.messages["status"] += 1
            return (Close("server_shutdown", "Binance announced a server shutdown (serverShutdown event)"),)
        item_type = self._payload_types.get(event) if event else (
            BookTicker if "b" in payload and "a" in payload else None)
        if item_type is None:
            self.feed.messages["other"] += 1
            return (Problem("protocol", f"unexpected event {event!r}: {preview(data)}"),)
        try:
            item = msgspec.convert(payload, item_type, strict=False)
        except DECODE_ERRORS as exc:
            self.feed.messages["other"] += 1
            return (Problem("decode", f"malformed {event or 'bookTicker'} event ({decode_reason(exc)}): {preview(data)}"),)
        if type(item) is self._sequenced:
            state = self._symbols.get(item.symbol)
            if state is not None and not self._in_sequence(state, item.seq):
                return NOTHING
        self.feed.apply((item,), now)
        return rejections(self.feed, data) if self.feed.notes else NOTHING

    def _reply(self, message: dict) -> Sequence[Signal]:
        self.feed.messages["control"] += 1
        request_id = message.get("id")
        request = self._requests.pop(request_id, None) if isinstance(request_id, int) else None
        method = request.method if request else "request"
        if "code" in message and "result" not in message:
            kind = "subscribe" if method in ("SUBSCRIBE", "UNSUBSCRIBE") else "protocol"
            return (Problem(kind, f"Binance refused {method} id {excerpt(request_id, 40)}: "
                                  f"code {excerpt(message.get('code'), 40)}: {excerpt(message.get('msg', ''))}"),)
        if request is None:
            return (Problem("protocol", f"reply to an unknown request id {excerpt(request_id, 40)}: {excerpt(message)}"),)
        if method == "SUBSCRIBE":
            return (Acknowledged(request.symbols),)
        if method == "UNSUBSCRIBE":
            return (Unsubscribed(request.symbols),)
        return self._audit(message.get("result"))

    def _audit(self, result: Any) -> Sequence[Signal]:
        """Compare LIST_SUBSCRIPTIONS with what was requested; re-request what is missing."""
        if not isinstance(result, list) or not all(isinstance(name, str) for name in result):
            return (Problem("protocol", f"LIST_SUBSCRIPTIONS returned {excerpt(result)}, not a list of stream names"),)
        listed = set(result)
        missing = {name: symbol for name, symbol in self._wanted.items() if name not in listed}
        unexpected = sorted(listed.difference(self._wanted))
        signals: list[Signal] = []
        confirmed = tuple(dict.fromkeys(s for n, s in self._wanted.items() if n in listed))
        if confirmed:
            signals.append(Acknowledged(confirmed))
        if missing:
            retry = self._audit_retries < AUDIT_RETRIES
            signals.append(Problem("subscribe", (
                f"LIST_SUBSCRIPTIONS audit: {len(missing)} requested stream(s) not active on connection "
                f"{self.connection} ({_sample(missing)}); "
                + ("requesting them again" if retry else "not retrying again on this connection"))))
            if retry:
                self._audit_retries += 1
                again = self._requests_for("SUBSCRIBE", missing) + [self.list_message()]
                signals.extend(Reply(m) for m in again)
        if unexpected:
            signals.append(Problem("protocol", (
                f"LIST_SUBSCRIPTIONS audit: {len(unexpected)} stream(s) active that were never requested "
                f"on connection {self.connection} ({_sample(unexpected)})")))
        return signals

    @classmethod
    def check_config(cls, config) -> list[str]:
        problems = []
        options = config.options
        if not options.streams:
            problems.append("streams: at least one of trade, aggTrade, bookTicker is required")
        seen: set[str] = set()
        for i, stream in enumerate(options.streams):
            if stream not in STREAM_TYPES:
                problems.append(f"streams[{i}]: unknown stream type {stream!r} (use trade, aggTrade or bookTicker)")
            elif stream in seen:
                problems.append(f"streams[{i}]: duplicate stream type {stream!r}")
            seen.add(stream)
        for i, symbol in enumerate(config.symbols):
            if symbol and not (symbol.isalnum() and symbol == symbol.upper()):
                problems.append(f"symbols[{i}]: Binance symbols are upper-case letters and digits "
                                f"like BTCUSDT, got {symbol!r}")
        if not config.url:
            problems.append("url: required for binance feeds (for example wss://stream.binance.com:9443)")
        elif "?" in config.url:
            problems.append("url: give the base endpoint (wss://stream.binance.com:9443); "
                            "feedwatch builds the stream names itself")
        if not 0 < options.max_connection_age <= 24 * 3600:
            problems.append("max_connection_age: must be more than 0 and at most 24h "
                            "(Binance closes every connection at 24 hours)")
        return problems


def base_url(url: str) -> str:
    """The endpoint without a trailing ``/stream`` or ``/ws`` (either may be given)."""
    url = url.rstrip("/")
    for suffix in ("/stream", "/ws"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


def _sample(names: Any, limit: int = 5) -> str:
    names = list(names)
    more = f", ... {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
