"""Bybit v5 public streams (``kind: bybit``): ``publicTrade.{symbol}`` and ``tickers.{symbol}``.

Protocol (https://bybit-exchange.github.io/docs/v5/ws/connect, .../v5/websocket/public/trade,
.../v5/websocket/public/ticker), one URL per category (``wss://stream.bybit.com/v5/public/spot``,
``.../linear``, ``.../inverse``)::

    -> {"req_id":"0-1","op":"subscribe","args":["publicTrade.BTCUSDT","tickers.BTCUSDT"]}
    <- {"success":true,"ret_msg":"subscribe","conn_id":"...","req_id":"0-1","op":"subscribe"}
    <- {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,
        "data":[{"T":1672304486865,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50",
                 "L":"PlusTick","i":"20f43950-...","BT":false,"seq":1783284617}]}
    <- {"topic":"tickers.BTCUSDT","type":"snapshot","cs":24987956059,"ts":1673272861686,
        "data":{"symbol":"BTCUSDT","lastPrice":"17216.00","bid1Price":"17215.50","ask1Price":"17216.00",...}}
    <- {"topic":"tickers.BTCUSDT","type":"delta","ts":1673272861786,"data":{"symbol":"BTCUSDT","bid1Price":"17215.00"}}
    -> {"op":"ping"}
    <- {"success":true,"ret_msg":"pong","conn_id":"...","op":"ping"}           (spot)
    <- {"req_id":"","op":"pong","args":["1675418560633"],"conn_id":"..."}        (linear, inverse)

Trades: one frame holds up to 1024 trades, applied in order; ``T`` (the fill time) is the
exchange timestamp. Tickers: a snapshot, then deltas in which a missing field means *unchanged*,
so the adapter keeps each symbol's last ``lastPrice``/``bid1Price``/``ask1Price`` and merges. The
price is the bid/ask mid where both are known (linear and inverse tickers carry them), otherwise
the last price (spot tickers carry no book); the timestamp is the message's ``ts``.

Heartbeat: Bybit expects a client ``{"op":"ping"}`` every 20 s and drops a silent client, so
``ping_message()`` is sent every ``ping_interval`` (default 20 s) and its pong is the heartbeat.

Subscribe rules: spot takes at most 10 args per subscribe request (so 25 symbols on one channel
are three requests), and the args of one connection must stay under 21,000 characters, which
``capacity()`` turns into a symbol count (the runner shards above it). A ``"success": false``
reply is a ``subscribe`` error carrying the venue's ``ret_msg``; the request's other symbols are
still acknowledged when the message names only some of its topics.

Sequence gaps are not counted for Bybit: the trade's ``seq`` is the matching engine's *cross
sequence*, which advances with every order-book event, not only trades; it is not documented as
contiguous per symbol, so a jump in it is not a lost trade.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Sequence
from urllib.parse import urlsplit

import msgspec

from exporter.feeds.base import (
    DECODE_ERRORS,
    NOTHING,
    Acknowledged,
    Adapter,
    Heartbeat,
    Problem,
    Signal,
    Unsubscribed,
    decode_reason,
    preview,
    rejections,
)

CHANNELS = ("publicTrade", "tickers")
CATEGORIES = ("spot", "linear", "inverse")
# Args per subscribe request: spot's documented limit; the derivatives endpoints document none,
# so their requests stay a few kB.
ARGS_PER_REQUEST = {"spot": 10, "linear": 200, "inverse": 200}
# Documented limit of the args of one connection (public topics), in characters.
MAX_ARGS_CHARS = 21_000
# Symbols added at run time (the watchlist) may be longer than the configured ones.
SYMBOL_LENGTH_FLOOR = 16
PING = '{"op":"ping"}'

_NAN = math.nan


class Trade(msgspec.Struct, gc=False):
    is_quote: ClassVar[bool] = False
    symbol: str = msgspec.field(name="s")
    price: float = msgspec.field(name="p")
    ts: int = msgspec.field(name="T")       # fill time (ms)


class SizedTrade(Trade):
    """A trade with its quantity (a quoted decimal, as sent; cleaned by the sink), decoded only
    when the feed has a tick sink (``FeedBook.tape``)."""
    size: Any = msgspec.field(name="v", default=None)


class _TickerData(msgspec.Struct, gc=False):
    # Strings: Bybit sends "" for an empty book side, which is "no value", not an error.
    symbol: str
    lastPrice: str | None = None
    bid1Price: str | None = None
    ask1Price: str | None = None


class _Envelope(msgspec.Struct, gc=False):
    topic: str = ""
    type: str = ""
    ts: int = 0
    data: msgspec.Raw = msgspec.Raw(b"")
    op: str = ""
    success: bool | None = None
    ret_msg: str = ""
    req_id: str = ""


class _Quote(msgspec.Struct, gc=False):
    is_quote: ClassVar[bool] = True
    symbol: str
    bid: float
    ask: float
    ts: int


class _Last(msgspec.Struct, gc=False):
    is_quote: ClassVar[bool] = False
    symbol: str
    price: float
    ts: int


_envelope = msgspec.json.Decoder(_Envelope)
# strict=False reads Bybit's quoted decimals ("16578.50") as floats.
_trades = msgspec.json.Decoder(list[Trade], strict=False)
_sized_trades = msgspec.json.Decoder(list[SizedTrade], strict=False)
_ticker = msgspec.json.Decoder(_TickerData)
_encode = msgspec.json.encode


@dataclass(frozen=True)
class BybitOptions:
    # Topics per symbol: publicTrade (every trade), tickers (last price and best bid/ask).
    channels: tuple[str, ...] = ("publicTrade",)
    # The product the URL serves; sets the subscribe batch size (spot: 10 args per request).
    category: Literal["spot", "linear", "inverse"] = "spot"


@dataclass(frozen=True, slots=True)
class _Request:
    op: str
    args: tuple[str, ...]
    symbols: tuple[str, ...]


class BybitAdapter(Adapter):
    kind = "bybit"
    Options = BybitOptions
    description = "Bybit v5 public: publicTrade and tickers"

    def __init__(self, config, feed, connection: str = "0") -> None:
        super().__init__(config, feed, connection)
        self.channels: tuple[str, ...] = tuple(self.options.channels)
        self.args_per_request = ARGS_PER_REQUEST[self.options.category]
        self._ids = itertools.count(1)
        self._requests: dict[str, _Request] = {}
        # symbol -> [last, bid, ask] merged from ticker snapshots and deltas (NaN = unknown).
        self._tickers: dict[str, list[float]] = {}

    # --- limits the runner enforces -----------------------------------------------------------

    def capacity(self) -> int:
        longest = max([SYMBOL_LENGTH_FLOOR, *map(len, self.config.symbols)])
        # Each arg counts with its quotes and comma: '"publicTrade.BTCUSDT",'.
        per_symbol = sum(len(channel) + 1 + longest + 3 for channel in self.channels) or 1
        return max(1, (MAX_ARGS_CHARS - 1) // per_symbol)

    # --- messages to send ---------------------------------------------------------------------

    def topics(self, symbol: str) -> list[str]:
        return [f"{channel}.{symbol}" for channel in self.channels]

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        return self._requests_for("subscribe", symbols)

    def unsubscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        for symbol in symbols:
            self._tickers.pop(symbol, None)
        return self._requests_for("unsubscribe", symbols)

    def ping_message(self) -> str:
        return PING

    def _requests_for(self, op: str, symbols: Sequence[str]) -> list[str]:
        per_request = self.args_per_request
        args = [(topic, symbol) for symbol in symbols for topic in self.topics(symbol)]
        out = []
        for i in range(0, len(args), per_request):
            chunk = args[i:i + per_request]
            req_id = f"{self.connection}-{next(self._ids)}"
            topics = tuple(t for t, _ in chunk)
            self._requests[req_id] = _Request(op, topics, tuple(dict.fromkeys(s for _, s in chunk)))
            out.append(_encode({"req_id": req_id, "op": op, "args": topics}).decode())
        return out

    # --- frames in ----------------------------------------------------------------------------

    def handle(self, data: str | bytes, now: float) -> Sequence[Signal]:
        try:
            envelope = _envelope.decode(data)
        except DECODE_ERRORS as exc:
            return (Problem("decode", f"undecodable frame ({decode_reason(exc)}): {preview(data)}"),)
        topic = envelope.topic
        if topic.startswith("publicTrade."):
            try:
                trades = (_trades if self.feed.tape is None else _sized_trades).decode(envelope.data)
            except DECODE_ERRORS as exc:
                self.feed.messages["other"] += 1
                return (Problem("decode", f"malformed publicTrade data ({decode_reason(exc)}): {preview(data)}"),)
            if trades:
                feed = self.feed
                feed.apply(trades, now)
                if feed.notes:
                    return rejections(feed, data)
            else:  # no trades in it: a message all the same
                self.feed.messages["other"] += 1
            return NOTHING
        if topic.startswith("tickers."):
            return self._ticker(envelope, data, now)
        if envelope.op:
            return self._control(envelope, data)
        self.feed.messages["other"] += 1
        return (Problem("protocol", f"unexpected message: {preview(data)}"),)

    def _ticker(self, envelope: _Envelope, data: str | bytes, now: float) -> Sequence[Signal]:
        try:
            ticker = _ticker.decode(envelope.data)
        except DECODE_ERRORS as exc:
            self.feed.messages["other"] += 1
            return (Problem("decode", f"malformed tickers data ({decode_reason(exc)}): {preview(data)}"),)
        merged = self._tickers.get(ticker.symbol)
        if merged is None or envelope.type == "snapshot":
            merged = [_NAN, _NAN, _NAN]
            # Only watched symbols are remembered: a venue naming others must not grow this map
            # (their update still goes to the book, which counts it as unknown_symbol).
            if ticker.symbol in self.feed.symbols:
                self._tickers[ticker.symbol] = merged
        for i, value in enumerate((ticker.lastPrice, ticker.bid1Price, ticker.ask1Price)):
            if value is not None:  # absent in a delta: unchanged
                merged[i] = _number(value)
        last, bid, ask = merged
        feed = self.feed
        if bid == bid and ask == ask:
            feed.apply_one(_Quote(ticker.symbol, bid, ask, envelope.ts), now)
        elif last == last:
            feed.apply_one(_Last(ticker.symbol, last, envelope.ts), now)
        else:
            feed.messages["other"] += 1
        return rejections(feed, data) if feed.notes else NOTHING

    def _control(self, envelope: _Envelope, data: str | bytes) -> Sequence[Signal]:
        op = envelope.op
        if op == "pong" or (op == "ping" and envelope.ret_msg == "pong"):
            return (Heartbeat(),)
        self.feed.messages["control"] += 1
        request = self._requests.pop(envelope.req_id, None)
        if request is None and op in ("subscribe", "unsubscribe"):
            # A reply without our req_id: the oldest request of that kind is the one answered.
            for req_id, pending in self._requests.items():
                if pending.op == op:
                    request = self._requests.pop(req_id)
                    break
        if envelope.success is False:
            message = envelope.ret_msg or "no message"
            signals: list[Signal] = [Problem("subscribe" if op in ("subscribe", "unsubscribe") else "protocol",
                                             f"Bybit refused {op}: {message}")]
            if request is not None and request.op == "subscribe":
                # Topics the venue did not name in its refusal are live.
                refused = {s for t, s in zip(request.args, _symbols_of(request)) if t in message}
                accepted = tuple(s for s in request.symbols if s not in refused)
                if refused and accepted:
                    signals.append(Acknowledged(accepted))
            return signals
        if request is None:
            return NOTHING if op in ("subscribe", "unsubscribe") else (
                Problem("protocol", f"unexpected {op!r} reply: {preview(data)}"),)
        if request.op == "subscribe":
            return (Acknowledged(request.symbols),)
        return (Unsubscribed(request.symbols),)

    @classmethod
    def check_config(cls, config) -> list[str]:
        problems = []
        options = config.options
        if not options.channels:
            problems.append("channels: at least one of publicTrade, tickers is required")
        for i, channel in enumerate(options.channels):
            if channel not in CHANNELS:
                problems.append(f"channels[{i}]: unknown channel {channel!r} (use publicTrade or tickers)")
        if len(set(options.channels)) != len(options.channels):
            problems.append("channels: each channel may be listed once")
        for i, symbol in enumerate(config.symbols):
            if symbol and not (symbol.isalnum() and symbol == symbol.upper()):
                problems.append(f"symbols[{i}]: Bybit symbols are upper-case letters and digits "
                                f"like BTCUSDT, got {symbol!r}")
        if not config.url:
            problems.append("url: required for bybit feeds (for example wss://stream.bybit.com/v5/public/spot)")
        else:
            path = urlsplit(config.url).path.rstrip("/")
            if "/v5/public/" in path:
                served = path.rsplit("/", 1)[-1]
                if served in CATEGORIES and served != options.category:
                    problems.append(f"category: the url serves {served!r} but category is {options.category!r}; "
                                    f"set category: {served}")
        return problems


def _symbols_of(request: _Request) -> list[str]:
    """The symbol of each arg of a request (args are "<channel>.<symbol>")."""
    return [topic.partition(".")[2] for topic in request.args]


def _number(text: str) -> float:
    try:
        return float(text) if text else _NAN
    except ValueError:
        return _NAN
