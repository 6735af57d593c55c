"""``fill(fmt, values)``: ``fmt % values`` for the collector's format strings, in C when built.

The collector (``exporter/collector.py``) formats each per-symbol family with one ``%`` of a
format string holding one line per symbol, ``name{labels} %.3f\\n``, ``%d`` or ``%s`` where
the value goes. At 100,000 symbols that ``%`` was most of a scrape's CPU: for ``%.3f`` Python
runs its arbitrary-precision dtoa per value. ``exporter/_fill.c`` writes the same bytes for
those three directives 3-4x cheaper (``%.3f`` by exact 64-bit integer arithmetic, correctly
rounded, half to even, as Python rounds) and hands anything else to Python's own ``%``, so the
output, and any error, is always exactly ``fmt % values`` (tests/unit/test_fill.py).
``fill_seconds`` writes the venue timestamps (ints of seconds or milliseconds) as seconds
straight from the raw stamps, with no division or float text in Python. ``gather(objects,
names)`` reads the values to fill out of the symbols' states: per name, the tuple of
``getattr(o, name)``, several names in one pass over the objects, a slot read through its
descriptor with no attribute lookup per object (2.5x cheaper than a ``map(attrgetter)`` per name).

The extension is optional: it is built with the package wherever a C compiler is found
(``setup.py``; the Docker image builds it), and without it ``fill`` is ``bytes.__mod__``: the
same text, at the old cost. ``ACCELERATED`` says which one runs; ``feedwatch run`` logs it at
start (figures: bench/README.md, issue 14's fourth round, "the formatting in C").
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Callable

try:
    from exporter._fill import fill as _c_fill, fill_seconds as _c_fill_seconds, gather as _c_gather
except ImportError:   # built without a C compiler: Python's own % and attrgetter
    _c_fill = _c_fill_seconds = _c_gather = None


def gather_each(objects: list, names: tuple[str, ...]) -> tuple[tuple[Any, ...], ...]:
    """``gather`` in Python: a ``map(attrgetter)`` per name (what a build without the extension runs)."""
    return tuple([tuple(map(attrgetter(name), objects)) for name in names])


fill: Callable[[bytes, tuple], bytes] = _c_fill if _c_fill is not None else bytes.__mod__
# The venue timestamps' lines: each ``%s`` given a raw stamp (an int of seconds or milliseconds)
# as seconds, written as ``repr(exporter.book.to_seconds(stamp))`` writes it, the line of a stamp
# of 0 (none given) left out; None when a stamp is anything else. Without the extension None:
# the collector divides and encodes in Python.
fill_seconds: Callable[[bytes, tuple], bytes | None] | None = _c_fill_seconds
ACCELERATED = _c_fill is not None
# Per name, the tuple of ``getattr(o, name)`` for o in the list ``objects``: the same tuples, or
# the same error, as ``gather_each`` (tests/unit/test_fill.py), in one pass in C where built.
gather: Callable[[list, tuple[str, ...]], tuple[tuple[Any, ...], ...]] = (
    _c_gather if _c_gather is not None else gather_each)
