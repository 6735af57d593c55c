"""Tape entries -> typed tick rows: the one place tick values are converted (off the hot path).

A row, in the order every backend stores it::

    run               TEXT    this process's random id (with seq: the row's identity)
    seq               BIGINT  row number within the run, given when the sink takes the row
    time_ns           BIGINT  receive time, Unix nanoseconds
    feed, symbol      TEXT
    price             DOUBLE  the accepted price (a quote's mid, or its one side)
    size              DOUBLE  the trade's size as the venue gave it; NULL for a quote or none given
    source            TEXT    "trade" or "quote": what the price came from on the feed's socket;
                              "rest": a price the REST fallback applied (a last trade or a mid)
    exchange_time_ns  BIGINT  the venue's timestamp in Unix nanoseconds; NULL when it gave none

Why integer nanoseconds and not DateTime64 or float seconds: ClickHouse 18.16 (Debian's) has no
DateTime64, and a Float64 of Unix seconds keeps only ~0.24 us at today's magnitude, so it would
round the nanosecond stamps Polygon sends. An Int64 of nanoseconds is exact for every venue unit
(s, ms, us and ns are whole multiples), sorts and compresses as an integer, reaches 2262, and is
the same number in SQLite, PostgreSQL and ClickHouse (``toDateTime(intDiv(time_ns, 1000000000))``
reads it as a date there).

``(run, seq)`` makes a retried batch harmless: SQL backends ignore a row already there; in
ClickHouse the table is a ReplacingMergeTree whose sorting key ends with them.

Sizes arrive as the venue's JSON value (a number, Binance's quoted decimal, anything a broken
venue sends): a finite number >= 0 is kept, anything else becomes NULL. Prices and timestamps were
checked by the book before they reached the tape.
"""

from __future__ import annotations

import math
from typing import Any

from exporter.book import TAPE_SLOTS, RestTick


COLUMNS = ("run", "seq", "time_ns", "feed", "symbol", "price", "size", "source", "exchange_time_ns")
Row = tuple  # (run, seq, time_ns, feed, symbol, price, size, source, exchange_time_ns)

_INF = math.inf
_EXACT = 1 << 53   # integers below this are exact as floats
# Integer stamps above these are in ns, us, ms (``to_ns``'s bounds, as integers: an int compared
# with an int is cheaper than with a float).
_NS, _US, _MS = 10 ** 17, 10 ** 14, 10 ** 11


def to_ns(ts: Any) -> int | None:
    """A Unix timestamp in s, ms, us or ns (told apart by magnitude, like ``book.to_seconds``) ->
    integer nanoseconds; None for 0 (no timestamp)."""
    if not ts:
        return None
    if ts > 1e17:
        return int(ts)
    unit = 1_000 if ts > 1e14 else 1_000_000 if ts > 1e11 else 1_000_000_000
    if type(ts) is int:
        return ts * unit
    # Whole and fractional parts apart: 1700000000.25 * 1e9 as one float product is off by 128 ns.
    whole = int(ts)
    return whole * unit + round((ts - whole) * unit)


def seconds_to_ns(seconds: float) -> int:
    """Our own clock's time (float seconds) -> integer nanoseconds, without a float product's rounding."""
    whole = int(seconds)
    return whole * 1_000_000_000 + round((seconds - whole) * 1e9)


def clean_size(value: Any) -> float | None:
    """A venue's size -> a finite number >= 0, or None."""
    if value is None:
        return None
    try:
        size = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return size if 0.0 <= size < _INF else None


def prepare(frames: list, run: str, first_seq: int) -> list[Row]:
    """Typed rows from ``TickTape.frames`` (flat, per frame: feed, receive time, items or one
    update, fixes), numbered from ``first_seq``: one per accepted update, in the order the book
    accepted them.

    The price is the one the book accepted: a trade's ``price``, a quote's mid computed as
    ``FeedBook.apply`` computes it (the same float operations, so the same number), or the one
    ``fixes`` gives; updates ``fixes`` maps to None were not accepted and are skipped.

    Written for speed (it runs for every price, in the sink's thread, sharing the GIL with
    ingest): one attribute read per field, a frame's receive time converted once, inline paths
    for the common stamps (integer ns and ms, compared with integers) and sizes (finite floats
    and ints) before the general helpers. Each symbol's string is shared by its rows (``share``),
    so rows held through an outage do not keep one decoded copy per row.
    """
    rows: list[Row] = []
    append = rows.append
    share = {}.setdefault
    seq = first_seq
    slots = [frames[k::TAPE_SLOTS] for k in range(TAPE_SLOTS)]
    for feed, now, items, fixes in zip(*slots):
        now_ns = seconds_to_ns(now)
        if hasattr(items, "is_quote"):
            if items.__class__ is RestTick:       # the REST fallback's price (``apply_rest``)
                append((run, seq, now_ns, feed, share(items.symbol, items.symbol), items.price, None, "rest",
                        to_ns(items.ts)))
                seq += 1
                continue
            items = (items,)                      # one update (``apply_one``), not a sequence
        for item in items:
            if fixes is not None and id(item) in fixes:
                price = fixes[id(item)]
                if price is None:
                    continue                      # not accepted (rejected, or a held first print)
                quote = item.is_quote
            elif item.is_quote:
                quote = True
                price = (item.bid + item.ask) * 0.5
            else:
                quote = False
                price = item.price
            if quote:
                size = None
            else:
                size = getattr(item, "size", None)  # decoded only for the sink; a plugin's trade may lack it
                if size.__class__ is float:
                    if not 0.0 <= size < _INF:
                        size = None
                elif size.__class__ is int and 0 <= size < _EXACT:
                    size = float(size)
                else:
                    size = clean_size(size)
            ts = item.ts
            if ts.__class__ is int and ts > _NS:
                pass                              # integer nanoseconds already (Polygon)
            elif ts.__class__ is int and _MS < ts <= _US:
                ts *= 1_000_000                   # integer milliseconds (Binance, Bybit)
            else:
                ts = to_ns(ts)
            symbol = item.symbol
            append((run, seq, now_ns, feed, share(symbol, symbol), price, size, "quote" if quote else "trade", ts))
            seq += 1
    return rows
