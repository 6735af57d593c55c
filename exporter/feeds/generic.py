"""Any JSON WebSocket feed (``kind: generic``), configured entirely in YAML.

For a venue feedwatch has no adapter for: say where the records are in each frame and which
fields hold the symbol, the price (or bid and ask) and the timestamp, and optionally what to send
to subscribe and to keep the connection alive. A Coinbase-style ticker feed::

    - name: coinbase
      kind: generic
      url: wss://ws-feed.exchange.coinbase.com
      symbols: [BTC-USD, ETH-USD]
      subscribe: '{"type":"subscribe","channels":["ticker"],"product_ids":{symbols}}'
      match: {type: ticker}          # only frames with "type": "ticker" carry prices
      fields: {symbol: product_id, bid: best_bid, ask: best_ask, timestamp: time}
      timestamp_unit: iso

Frames: each text frame is one JSON document. ``records`` is a dotted path to the records in it
(``""`` = the frame itself; ``data``; ``result.trades``; list indexes are numbers: ``data.0``);
what it points at may be one object or an array of them. Field paths are dotted the same way and
are looked up in each record. ``match`` conditions select the records that carry prices: each
condition is checked on the record, or on the whole frame when the record lacks that path, so
both ``{"type":"ticker",...}`` frames and ``{"channel":"trades","data":[...]}`` envelopes work.

Subscribing: ``subscribe`` is a message template sent after connecting, once per symbol when it
contains ``{symbol}``, or once per ``batch_size`` symbols when it contains ``{symbols}`` (a JSON
array of the symbols) or ``{symbols_csv}`` (comma-separated). The same placeholders in ``url``
subscribe by URL instead. A symbol counts as acknowledged when its first record arrives (generic
venues' replies have no shape feedwatch could know). ``ping_message`` is sent every
``ping_interval`` as an application-level ping; frames matching the ``pong`` conditions are
its answers and count as heartbeats (any frame keeps the connection alive either way).

Timestamps: ``timestamp_unit`` says what the number means (``s``, ``ms``, ``us``, ``ns``) or
``iso`` for ISO-8601 text (``2024-05-01T12:00:00.123Z``). Without a ``timestamp`` field, updates
still refresh staleness but no latency is observed.

Misconfiguration is loud, not silent: a path that has not appeared in any of the first frames
(``MISSING_FIELD_GRACE``) is reported for every frame that lacks it, as error kind
``missing_field`` with the path, the field's role and a sample of what did arrive. Once a field
has been seen, records without it are taken for control messages and skipped quietly.

Values are checked where they enter: a symbol that is an object or array, a price or timestamp
that is not a number (or a numeric string), an ISO text that is not a date, are ``decode``
problems; numbers too large for a float become infinities and an ISO date outside what a Unix
time can hold becomes NaN, which the book rejects and counts (``infinite_price``,
``implausible_timestamp``). Nothing in a frame can make ``handle`` raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Sequence

import msgspec

from exporter.feeds.base import (
    DECODE_ERRORS,
    NOTHING,
    Acknowledged,
    Adapter,
    Heartbeat,
    Problem,
    Signal,
    decode_reason,
    excerpt,
    preview,
    rejections,
)

# Frames received before a field that has never appeared is reported as missing: control frames
# (a greeting, a subscription reply) legitimately come first.
MISSING_FIELD_GRACE = 5
UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_INF = float("inf")
_NAN = float("nan")
# What a record's values can raise while they are converted (see _item).
_VALUE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError)
_MISSING = object()
# Frames of a shape nobody wrote an adapter for: show a little more of them than the venues do.
PREVIEW_CHARS = 160


@dataclass(frozen=True)
class GenericFields:
    # Dotted path to the symbol in each record (required).
    symbol: str = ""
    # Path to a trade price; or give bid and ask for quotes (the price is their mid).
    price: str = ""
    bid: str = ""
    ask: str = ""
    # Path to the exchange timestamp (optional; see timestamp_unit).
    timestamp: str = ""


@dataclass(frozen=True)
class GenericOptions:
    # Message template sent to subscribe: {symbol} per symbol, {symbols} / {symbols_csv} per batch.
    subscribe: str = ""
    # Template sent to unsubscribe (same placeholders); empty = reconnect to drop symbols.
    unsubscribe: str = ""
    # Symbols per batched subscribe message.
    batch_size: int = 100
    # Application-level ping sent every ping_interval (empty = WebSocket pings).
    ping_message: str = ""
    # Dotted path to the records in a frame ("" = the frame itself).
    records: str = ""
    fields: GenericFields = GenericFields()
    # What the timestamp number means: s, ms, us, ns, or iso for ISO-8601 text.
    timestamp_unit: Literal["s", "ms", "us", "ns", "iso"] = "ms"
    # Conditions (path: value) a record, or its frame, must meet to carry a price.
    match: dict[str, str] = field(default_factory=dict)
    # Conditions (path: value) that mark a frame as the venue's answer to ping_message.
    pong: dict[str, str] = field(default_factory=dict)
    # Most symbols on one connection (0 = no limit); larger lists are spread over several.
    max_symbols_per_connection: int = 0


class _Trade:
    __slots__ = ("symbol", "price", "ts")
    is_quote: ClassVar[bool] = False

    def __init__(self, symbol: str, price: float, ts: float) -> None:
        self.symbol, self.price, self.ts = symbol, price, ts


class _Quote:
    __slots__ = ("symbol", "bid", "ask", "ts")
    is_quote: ClassVar[bool] = True

    def __init__(self, symbol: str, bid: float, ask: float, ts: float) -> None:
        self.symbol, self.bid, self.ask, self.ts = symbol, bid, ask, ts


def parse_path(path: str) -> tuple[str, ...]:
    return tuple(path.split(".")) if path else ()


def lookup(value: Any, path: tuple[str, ...]) -> Any:
    """Follow a dotted path through objects and arrays; ``_MISSING`` when it leads nowhere."""
    for key in path:
        if isinstance(value, dict):
            value = value.get(key, _MISSING)
            if value is _MISSING:
                return _MISSING
        elif isinstance(value, list) and key.lstrip("-").isdigit():
            try:
                value = value[int(key)]
            except IndexError:
                return _MISSING
        else:
            return _MISSING
    return value


class GenericAdapter(Adapter):
    kind = "generic"
    Options = GenericOptions
    description = "Any JSON WebSocket feed, configured in YAML"

    def __init__(self, config, feed, connection: str = "0") -> None:
        super().__init__(config, feed, connection)
        options: GenericOptions = self.options
        f = options.fields
        self._records = parse_path(options.records)
        # (role, configured path, parsed path) for every configured field.
        self._fields = [(role, path, parse_path(path)) for role, path in (
            ("symbol", f.symbol), ("price", f.price), ("bid", f.bid), ("ask", f.ask),
            ("timestamp", f.timestamp)) if path]
        self._symbol = parse_path(f.symbol)
        self._price = parse_path(f.price)
        self._bid = parse_path(f.bid)
        self._ask = parse_path(f.ask)
        self._ts = parse_path(f.timestamp)
        self._unit = options.timestamp_unit
        self._match = [(parse_path(k), str(v)) for k, v in options.match.items()]
        self._pong = [(parse_path(k), str(v)) for k, v in options.pong.items()]
        self._seen: set[str] = set()        # roles (and "records") found at least once
        self._frames = 0
        self._unacknowledged: set[str] = set()

    # --- limits and messages ------------------------------------------------------------------

    def capacity(self) -> int | None:
        return self.options.max_symbols_per_connection or None

    def subscribed_in_url(self) -> bool:
        return not self.options.subscribe or _has_placeholder(self.config.url)

    def url(self, symbols: Sequence[str]) -> str:
        return fill(self.config.url, symbols)

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        if not self.options.subscribe:
            return []
        self._unacknowledged.update(symbols)
        return self._render(self.options.subscribe, symbols)

    def unsubscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        self._unacknowledged.difference_update(symbols)
        return self._render(self.options.unsubscribe, symbols) if self.options.unsubscribe else []

    def ping_message(self) -> str | None:
        return self.options.ping_message or None

    def _render(self, template: str, symbols: Sequence[str]) -> list[str]:
        if "{symbol}" in template:
            return [template.replace("{symbol}", s) for s in symbols]
        size = max(1, self.options.batch_size)
        return [fill(template, symbols[i:i + size]) for i in range(0, len(symbols), size)]

    # --- frames in ----------------------------------------------------------------------------

    def handle(self, data: str | bytes, now: float) -> Sequence[Signal]:
        try:
            message = msgspec.json.decode(data)
        except DECODE_ERRORS as exc:
            return (Problem("decode", f"undecodable frame ({decode_reason(exc)}): {preview(data, PREVIEW_CHARS)}"),)
        self._frames += 1
        if self._pong and _all_match(self._pong, message, message):
            return (Heartbeat(),)
        records = lookup(message, self._records)
        if records is _MISSING:
            self.feed.messages["other"] += 1
            return self._missing("records", self.options.records, message)
        self._seen.add("records")
        if isinstance(records, dict):
            records = (records,)
        elif not isinstance(records, list):
            self.feed.messages["other"] += 1
            return (Problem("protocol", f"records path {self.options.records!r} holds {type(records).__name__}, "
                                        f"not an object or array: {preview(data, PREVIEW_CHARS)}"),)
        items: list[_Trade | _Quote] = []
        signals: list[Signal] = []
        missing: tuple[str, str, Any] | None = None
        for record in records:
            if self._match and not self._matches(record, message):
                continue
            absent = self._absent(record)
            if absent is not None:
                missing = missing or absent
                continue
            try:
                items.append(self._item(record))
            except _VALUE_ERRORS as exc:
                signals.append(Problem("decode", f"bad value in record ({decode_reason(exc)}): "
                                                 f"{excerpt(record, PREVIEW_CHARS)}"))
        if items:
            self.feed.apply(items, now)
            if self.feed.notes:
                signals.extend(rejections(self.feed, data))
            if self._unacknowledged:
                signals.extend(self._acknowledge(items))
        else:
            self.feed.messages["other"] += 1
        if missing is not None:
            signals.extend(self._missing(*missing))
        return signals or NOTHING

    def _absent(self, record: Any) -> tuple[str, str, Any] | None:
        """The first configured field this record lacks (role, path, record), recording finds."""
        seen = self._seen
        for role, path, parsed in self._fields:
            if lookup(record, parsed) is _MISSING:
                return (role, path, record)
            if role not in seen:
                seen.add(role)
        return None

    def _item(self, record: Any) -> _Trade | _Quote:
        symbol = lookup(record, self._symbol)
        if isinstance(symbol, (dict, list)):
            raise ValueError(f"the symbol is a JSON {type(symbol).__name__}, not a string")
        symbol = _text(symbol)
        ts = self._timestamp(lookup(record, self._ts)) if self._ts else 0.0
        if self._price:
            return _Trade(symbol, _float(lookup(record, self._price)), ts)
        return _Quote(symbol, _float(lookup(record, self._bid)), _float(lookup(record, self._ask)), ts)

    def _timestamp(self, value: Any) -> float:
        if self._unit == "iso":
            if not isinstance(value, str):
                raise ValueError(f"timestamp {excerpt(value, 40)} is not ISO-8601 text")
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            try:
                return parsed.timestamp()
            except (OverflowError, ValueError):  # a date at the edge of the calendar (year 1 or 9999)
                return _NAN                      # the book rejects it as implausible_timestamp
        return _float(value) * UNITS[self._unit]

    def _matches(self, record: Any, frame: Any) -> bool:
        return _all_match(self._match, record, frame)

    def _missing(self, role: str, path: str, sample: Any) -> Sequence[Signal]:
        """A configured path absent: quiet for control frames, an error while it never appeared."""
        if role in self._seen or self._frames <= MISSING_FIELD_GRACE:
            return NOTHING
        what = "records" if role == "records" else f"fields.{role}"
        return (Problem("missing_field", (
            f"{what} path {path!r} has not appeared in any of the {self._frames} frames received "
            f"on connection {self.connection}; check the feed's config. "
            f"Sample: {excerpt(sample, PREVIEW_CHARS)}")),)

    def _acknowledge(self, items: list[_Trade | _Quote]) -> list[Signal]:
        fresh = tuple(dict.fromkeys(i.symbol for i in items if i.symbol in self._unacknowledged))
        if not fresh:
            return []
        self._unacknowledged.difference_update(fresh)
        return [Acknowledged(fresh)]

    @classmethod
    def check_config(cls, config) -> list[str]:
        problems = []
        options: GenericOptions = config.options
        f = options.fields
        if not f.symbol:
            problems.append("fields.symbol: required (the dotted path to the symbol in each record)")
        if f.price and (f.bid or f.ask):
            problems.append("fields: give price (trades) or bid and ask (quotes), not both")
        elif not f.price and not (f.bid and f.ask):
            problems.append("fields: give price, or both bid and ask" if not (f.bid or f.ask)
                            else f"fields.{'ask' if f.bid else 'bid'}: required with fields.{'bid' if f.bid else 'ask'}")
        for role in ("symbol", "price", "bid", "ask", "timestamp"):
            path = getattr(f, role)
            if path and "" in path.split("."):
                problems.append(f"fields.{role}: {path!r} has an empty segment (use a.b.0, not a..b)")
        if options.records and "" in options.records.split("."):
            problems.append(f"records: {options.records!r} has an empty segment")
        for key in ("subscribe", "unsubscribe"):
            template = getattr(options, key)
            if template and "{symbol}" not in template and not _has_placeholder(template):
                problems.append(f"{key}: the template needs {{symbol}} (one message per symbol) or "
                                f"{{symbols}} / {{symbols_csv}} (one per batch)")
        if options.batch_size < 1:
            problems.append(f"batch_size: must be at least 1, got {options.batch_size}")
        if options.max_symbols_per_connection < 0:
            problems.append("max_symbols_per_connection: must be 0 (no limit) or more")
        if not config.url:
            problems.append("url: required for generic feeds")
        return problems


def _all_match(conditions: list[tuple[tuple[str, ...], str]], record: Any, frame: Any) -> bool:
    """Every condition holds on the record, or on the frame where the record lacks the path."""
    for path, expected in conditions:
        value = lookup(record, path)
        if value is _MISSING:
            value = lookup(frame, path)
        if value is _MISSING or isinstance(value, (dict, list)) or _text(value) != expected:
            return False
    return True


def _has_placeholder(text: str) -> bool:
    return "{symbols}" in text or "{symbols_csv}" in text


def fill(template: str, symbols: Sequence[str]) -> str:
    """Expand ``{symbols}`` (a JSON array) and ``{symbols_csv}`` (comma-separated)."""
    if "{symbols}" in template:
        template = template.replace("{symbols}", msgspec.json.encode(list(symbols)).decode())
    if "{symbols_csv}" in template:
        template = template.replace("{symbols_csv}", ",".join(symbols))
    return template


def _float(value: Any) -> float:
    """A number, or a string holding one; NaN and infinities pass through (the book rejects and
    counts them), and so does an integer too large for a float, as an infinity."""
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        raise ValueError(f"{excerpt(value, 40)} is not a number")
    try:
        return float(value)
    except OverflowError:
        return _INF if value > 0 else -_INF


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

