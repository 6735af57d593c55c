"""Polygon.io stocks WebSocket (``kind: polygon``): trades ``T`` and quotes ``Q``.

Protocol (https://polygon.io/docs/stocks/ws_getting-started), every frame a JSON array::

    <- [{"ev":"status","status":"connected","message":"Connected Successfully"}]
    -> {"action":"auth","params":"<API key>"}
    <- [{"ev":"status","status":"auth_success","message":"authenticated"}]
    -> {"action":"subscribe","params":"T.AAPL,Q.AAPL"}
    <- [{"ev":"status","status":"success","message":"subscribed to: T.AAPL"}, ...]
    <- [{"ev":"T","sym":"AAPL","p":189.5,"s":100,"t":1700000000123, ...},
        {"ev":"Q","sym":"AAPL","bp":189.49,"ap":189.51,"t":1700000000124, ...}]

``auth_failed`` and ``max_connections`` statuses become disconnect reasons. ``t`` is Unix
milliseconds (nanoseconds are tolerated: the book tells units apart by magnitude). A quote's price is the
bid/ask mid. Trades are checked by the book's garbage-first-print guard.

Decoding uses msgspec tagged-union structs keyed on ``ev`` in one pass; a frame with an event
type we do not model falls back to decoding element by element, so one unexpected ``ev`` does
not cost the rest of the frame.

Hostile input never raises (see ``exporter/feeds/base.py``): a frame that no decoder accepts is
a ``decode`` problem, a frame that is not a JSON array or object at all (a bare number, a
string) too; updates the book refuses come back as ``Rejected`` signals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence, Union

import msgspec

from exporter.feeds.base import (
    DECODE_ERRORS,
    NOTHING,
    Acknowledged,
    Adapter,
    Authenticated,
    AuthFailed,
    Close,
    Problem,
    Signal,
    Unsubscribed,
    decode_reason,
    preview,
    rejections,
)

CHANNELS = ("T", "Q")
# Symbols per subscribe message: keeps each control frame well under typical frame limits.
SUBSCRIBE_BATCH = 500


class Trade(msgspec.Struct, tag_field="ev", tag="T", gc=False):
    is_quote: ClassVar[bool] = False
    symbol: str = msgspec.field(name="sym")
    price: float = msgspec.field(name="p")
    ts: int = msgspec.field(name="t")


class SizedTrade(Trade, tag="T"):
    """A trade with its size, decoded only when the feed has a tick sink (``FeedBook.tape``): the
    book never reads it, so without a sink the hot path decodes what it needs and no more."""
    # As sent (any JSON), cleaned by the sink: a bad size never costs the price.
    size: Any = msgspec.field(name="s", default=None)


class Quote(msgspec.Struct, tag_field="ev", tag="Q", gc=False):
    is_quote: ClassVar[bool] = True
    symbol: str = msgspec.field(name="sym")
    bid: float = msgspec.field(name="bp", default=0.0)
    ask: float = msgspec.field(name="ap", default=0.0)
    ts: int = msgspec.field(name="t", default=0)


class Status(msgspec.Struct, tag_field="ev", tag="status", gc=False):
    status: str = ""
    message: str = ""


Event = Union[Trade, Quote, Status]
_frame_decoder = msgspec.json.Decoder(list[Event])
# Data frames (the hot path) hold only trades and quotes: decoding them with this narrower type
# makes a per-event type scan unnecessary; anything else fails it and takes the general path.
_data_decoder = msgspec.json.Decoder(list[Union[Trade, Quote]])
_event_decoder = msgspec.json.Decoder(Event)
# The same with the trades' sizes, used when the feed has a tick sink (``FeedBook.tape``).
_sized_data_decoder = msgspec.json.Decoder(list[Union[SizedTrade, Quote]])
_sized_frame_decoder = msgspec.json.Decoder(list[Union[SizedTrade, Quote, Status]])
_sized_event_decoder = msgspec.json.Decoder(Union[SizedTrade, Quote, Status])
_raw_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_encode = msgspec.json.encode


@dataclass(frozen=True)
class PolygonOptions:
    # Which event channels to subscribe per symbol: T (trades), Q (quotes).
    channels: tuple[str, ...] = CHANNELS


class PolygonAdapter(Adapter):
    kind = "polygon"
    Options = PolygonOptions
    requires_auth = True
    description = "Polygon.io stocks: trades (T) and quotes (Q)"

    def open_messages(self) -> list[str]:
        return [_encode({"action": "auth", "params": self.config.api_key}).decode()]

    def _params(self, symbols: Sequence[str]) -> list[str]:
        channels = self.options.channels
        out = []
        for i in range(0, len(symbols), SUBSCRIBE_BATCH):
            chunk = symbols[i:i + SUBSCRIBE_BATCH]
            out.append(",".join(f"{c}.{s}" for s in chunk for c in channels))
        return out

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        return [_encode({"action": "subscribe", "params": p}).decode() for p in self._params(symbols)]

    def unsubscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        return [_encode({"action": "unsubscribe", "params": p}).decode() for p in self._params(symbols)]

    def handle(self, data: str | bytes, now: float) -> Sequence[Signal]:
        feed = self.feed
        try:
            events = (_data_decoder if feed.tape is None else _sized_data_decoder).decode(data)
        except DECODE_ERRORS:
            return self._handle_general(data, now)  # statuses, unknown events, broken JSON
        if events:
            feed.apply(events, now)
            if feed.notes:
                return rejections(feed, data)
        else:  # an empty array: nothing to apply, but a message all the same
            feed.messages["other"] += 1
        return NOTHING

    def _handle_general(self, data: str | bytes, now: float) -> Sequence[Signal]:
        """Frames with statuses, or anything the fast decoder refused."""
        try:
            events = (_frame_decoder if self.feed.tape is None else _sized_frame_decoder).decode(data)
        except DECODE_ERRORS:
            return self._handle_slow(data, now)
        updates = [e for e in events if type(e) is not Status]
        statuses = [e for e in events if type(e) is Status]
        signals: list[Signal] = []
        if updates:
            self.feed.apply(updates, now)
            signals.extend(rejections(self.feed, data))
        signals.extend(self._statuses(statuses))
        return signals

    def _handle_slow(self, data: str | bytes, now: float) -> Sequence[Signal]:
        """A frame that is not a clean array of known events: salvage what can be decoded."""
        try:
            items = _raw_decoder.decode(data)
        except DECODE_ERRORS as exc:
            try:  # a lone object instead of an array
                items = [msgspec.Raw(data.encode() if isinstance(data, str) else data)]
                _event_decoder.decode(items[0])
            except DECODE_ERRORS:
                return (Problem("decode", f"undecodable frame ({decode_reason(exc)}): {preview(data)}"),)
        signals: list[Signal] = []
        updates, statuses = [], []
        unknown = 0
        decode = (_event_decoder if self.feed.tape is None else _sized_event_decoder).decode
        for raw in items:
            try:
                event = decode(raw)
            except DECODE_ERRORS:
                unknown += 1
                continue
            (statuses if type(event) is Status else updates).append(event)
        if updates:
            self.feed.apply(updates, now)
            signals.extend(rejections(self.feed, data))
        if statuses:
            signals.extend(self._statuses(statuses))
        if unknown:
            self.feed.messages["other"] += unknown
            signals.append(Problem("protocol", f"{unknown} event(s) of unknown shape in frame: {preview(data)}"))
        return signals

    def _statuses(self, statuses: list[Status]) -> list[Signal]:
        self.feed.messages["status"] += len(statuses)
        signals: list[Signal] = []
        acked: list[str] = []
        unsubscribed: list[str] = []
        for st in statuses:
            status = st.status
            if status == "auth_success":
                signals.append(Authenticated())
            elif status == "auth_failed":
                signals.append(AuthFailed("auth_failed", st.message or "authentication failed"))
            elif status == "max_connections":
                signals.append(AuthFailed("max_connections", st.message or "maximum connections exceeded"))
            elif status == "success":
                message = st.message
                if message.startswith("subscribed to: "):
                    acked.append(_symbol_of(message[len("subscribed to: "):]))
                elif message.startswith("unsubscribed to: "):
                    unsubscribed.append(_symbol_of(message[len("unsubscribed to: "):]))
            elif status == "connected":
                continue
            elif status == "error":
                signals.append(Problem("subscribe" if "subscri" in st.message else "protocol",
                                       f"venue error: {st.message}"))
            elif status == "disconnected":
                signals.append(Close("server_closed", st.message or "disconnected by venue"))
            else:
                signals.append(Problem("protocol", f"unexpected status {status!r}: {st.message}"))
        if acked:
            signals.append(Acknowledged(tuple(dict.fromkeys(acked))))
        if unsubscribed:
            signals.append(Unsubscribed(tuple(dict.fromkeys(unsubscribed))))
        return signals

    @classmethod
    def check_config(cls, config) -> list[str]:
        problems = []
        for i, channel in enumerate(config.options.channels):
            if channel not in CHANNELS:
                problems.append(f"channels[{i}]: unknown channel {channel!r} (use T for trades, Q for quotes)")
        if not config.options.channels:
            problems.append("channels: at least one of T, Q is required")
        if not config.url:
            problems.append("url: required for polygon feeds (for example wss://socket.polygon.io/stocks)")
        return problems


def _symbol_of(param: str) -> str:
    """``"T.AAPL"`` -> ``"AAPL"`` (symbols may contain dots: ``"T.BRK.A"`` -> ``"BRK.A"``)."""
    _, _, symbol = param.partition(".")
    return symbol or param
