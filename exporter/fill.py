"""``fill(fmt, values)``: ``fmt % values`` for the collector's format strings, in C when built.

The collector (``exporter/collector.py``) formats each per-symbol family with one ``%`` of a
format string holding one line per symbol, ``name{labels} %.3f\\n``, ``%d`` or ``%s`` where
the value goes. At 100,000 symbols that ``%`` was most of a scrape's CPU: for ``%.3f`` Python
runs its arbitrary-precision dtoa per value. ``exporter/_fill.c`` writes the same bytes for
those three directives 3-4x cheaper (``%.3f`` by exact 64-bit integer arithmetic, correctly
rounded, half to even, as Python rounds) and hands anything else to Python's own ``%``, so the
output, and any error, is always exactly ``fmt % values`` (tests/unit/test_fill.py).
``fill_seconds`` writes the venue timestamps (ints of seconds or milliseconds) as seconds
straight from the raw stamps, with no division or float text in Python.

The extension is optional: it is built with the package wherever a C compiler is found
(``setup.py``; the Docker image builds it), and without it ``fill`` is ``bytes.__mod__``: the
same text, at the old cost. ``ACCELERATED`` says which one runs; ``feedwatch run`` logs it at
start (figures: bench/README.md, issue 14's fourth round, "the formatting in C").
"""

from __future__ import annotations

from typing import Callable

try:
    from exporter._fill import fill as _c_fill, fill_seconds as _c_fill_seconds
except ImportError:   # built without a C compiler: Python's own %
    _c_fill = _c_fill_seconds = None

fill: Callable[[bytes, tuple], bytes] = _c_fill if _c_fill is not None else bytes.__mod__
# The venue timestamps' lines: each ``%s`` given a raw stamp (an int of seconds or milliseconds)
# as seconds, written as ``repr(exporter.book.to_seconds(stamp))`` writes it, the line of a stamp
# of 0 (none given) left out; None when a stamp is anything else. Without the extension None:
# the collector divides and encodes in Python.
fill_seconds: Callable[[bytes, tuple], bytes | None] | None = _c_fill_seconds
ACCELERATED = _c_fill is not None
