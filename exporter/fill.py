"""``fill(fmt, values)``: ``fmt % values`` for the collector's format strings, in C when built.

The collector (``exporter/collector.py``) formats each per-symbol family with one ``%`` of a
format string holding one line per symbol, ``name{labels} %.3f\\n``, ``%d`` or ``%s`` where
the value goes. At 100,000 symbols that ``%`` was most of a scrape's CPU: for ``%.3f`` Python
runs its arbitrary-precision dtoa per value. ``exporter/_fill.c`` writes the same bytes for
those three directives 3-4x cheaper (``%.3f`` by exact 64-bit integer arithmetic, correctly
rounded, half to even, as Python rounds) and hands anything else to Python's own ``%``, so the
output, and any error, is always exactly ``fmt % values`` (tests/unit/test_fill.py).

The extension is optional: it is built with the package wherever a C compiler is found
(``setup.py``; the Docker image builds it), and without it ``fill`` is ``bytes.__mod__``: the
same text, at the old cost. ``ACCELERATED`` says which one runs; ``feedwatch run`` logs it at
start (figures in bench/README.md, "Formatting in C").
"""

from __future__ import annotations

from typing import Callable

try:
    from exporter._fill import fill as _c_fill
except ImportError:   # built without a C compiler: Python's own %
    _c_fill = None

fill: Callable[[bytes, tuple], bytes] = _c_fill if _c_fill is not None else bytes.__mod__
ACCELERATED = _c_fill is not None
