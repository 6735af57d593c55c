"""``exporter.fill``: the C ``fill`` gives exactly ``fmt % values``, bytes for bytes, error for error.

The extension must be built here (the editable install compiles it, ``make venv``): a test
environment without it would test Python's ``%`` against itself, so its absence fails, it is
never skipped. The collector's output with the C ``fill`` and with Python's ``%`` (what a build
without a C compiler runs) is compared on a book holding every kind of value it renders.
"""

from __future__ import annotations

import math
import random
import struct

import pytest
from hypothesis import given, settings, strategies as st

from exporter import collector as collector_module, fill as fill_module
from exporter.book import Book
from exporter.collector import BookCollector
from exporter.fill import fill

from bench.common import feed_config

LIMIT = 9007199254740.0   # FIXED3_LIMIT in exporter/_fill.c: 2**53 / 1000, rounded down


def python(fmt: bytes, values: tuple) -> bytes | tuple[type, str]:
    try:
        return fmt % values
    except Exception as exc:  # noqa: BLE001 - the error itself is compared
        return type(exc), str(exc)


def c(fmt: bytes, values: tuple) -> bytes | tuple[type, str]:
    try:
        return fill(fmt, values)
    except Exception as exc:  # noqa: BLE001
        return type(exc), str(exc)


def lines(spec: bytes, count: int) -> bytes:
    """A collector-like format: one line per value, labels with a literal percent sign."""
    return b"".join(b'feedwatch_x{feed="s",symbol="A%%%%%d"} ' % i + spec + b"\n" for i in range(count))


def test_the_extension_is_built_in_this_environment():
    assert fill_module.ACCELERATED, ("exporter._fill did not build: `make venv` (pip install -e .) needs a C "
                                     "compiler and the Python headers (build-essential, python3-dev)")
    assert fill is not bytes.__mod__


@pytest.mark.parametrize("value", [
    0.0, -0.0, 0.0005, 0.0015, 0.0025, 1.0005, 2.5e-4, 0.0625, 0.1875, 0.5, 1e-3, 9.765625e-4, 2.0 ** -10,
    2.0 ** -10 - 2.0 ** -60, 2.0 ** -11, 1.5, 2.675, 1_700_000_000.0, 1_700_000_000.0005, 1_700_000_000.123456,
    LIMIT - 1.0, LIMIT, math.nextafter(LIMIT, 0.0), 1e13, 1e300, 5e-324, -1.0, -0.0004, math.inf, -math.inf,
    math.nan, 4503599627370495.5, 123456789.0625, 0.1 + 0.2,
])
def test_fixed_three_decimals_match_python_on_the_edges(value):
    fmt = lines(b"%.3f", 1)
    assert fill(fmt, (value,)) == fmt % (value,)


def test_fixed_three_decimals_match_python_on_a_million_values():
    """Receive times, ages, ties (values of few binary digits land exactly on a half) and raw bit
    patterns (any double, NaNs and infinities among them)."""
    rng = random.Random(14)
    fmt = lines(b"%.3f", 500)
    makers = (
        lambda: rng.uniform(1.6e9, 1.9e9),
        lambda: rng.random() * 10 ** rng.randrange(-6, 14),
        lambda: rng.randrange(0, 10 ** 9) / 2 ** rng.randrange(0, 30),
        lambda: struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0],
    )
    for make in makers:
        for _ in range(500):
            values = tuple(make() for _ in range(500))
            assert fill(fmt, values) == fmt % values


def test_integers_match_python():
    rng = random.Random(15)
    fmt = lines(b"%d", 400)
    for bits in (3, 31, 62, 63, 64, 65, 200):
        values = tuple(rng.randrange(-2 ** bits, 2 ** bits) for _ in range(400))
        assert fill(fmt, values) == fmt % values
    edges = (0, -1, 2 ** 63 - 1, -2 ** 63, 2 ** 63, -2 ** 63 - 1, True, False)
    assert fill(lines(b"%d", len(edges)), edges) == lines(b"%d", len(edges)) % edges


directive = st.sampled_from([b"%.3f", b"%d", b"%s", b"%%", b"%r", b"%5d", b"%.2f", b"%x", b"%", b"%f"])
value = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.booleans(),
                  st.binary(max_size=12), st.text(max_size=4), st.none(),
                  st.floats(min_value=0, max_value=LIMIT * 1.01))


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=6).map(lambda b: b.replace(b"%", b"")), directive), max_size=8),
       st.binary(max_size=4).map(lambda b: b.replace(b"%", b"")), st.lists(value, max_size=9))
def test_any_format_and_values_give_what_python_gives(pieces, tail, values):
    """Whatever the format and values (directives fill does not take, too few or too many
    values, values of other types), the text or the error is Python's."""
    fmt = b"".join(text + spec for text, spec in pieces) + tail
    assert c(fmt, tuple(values)) == python(fmt, tuple(values))


def test_it_takes_bytes_and_a_tuple_only():
    with pytest.raises(TypeError):
        fill("%d", (1,))   # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fill(b"%d", [1])   # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fill(b"%d")   # type: ignore[call-arg]


def test_the_collector_renders_the_same_text_with_python_percent(monkeypatch):
    """What a build without the extension renders (``fill`` is ``bytes.__mod__``) is byte for byte
    what the C ``fill`` renders: timestamps, ages, counts, states (-1 while closed among them),
    prices, frozen flags, a symbol never updated and values that leave Python's fast path."""
    now = 1_700_000_000.25
    book = Book([feed_config("stocks", [f"S{i}%" for i in range(1500)])], now - 100)
    feed = book.feeds["stocks"]
    rng = random.Random(16)
    for i, symbol in enumerate(list(feed.symbols)[:-3]):   # the last three never update
        for _ in range(rng.randrange(1, 4)):
            feed.record(symbol, round(rng.uniform(0.5, 5000.0), rng.randrange(0, 7)),
                        int((now - rng.random() * 60) * 1000), now - rng.random() * 50 - (i % 7) * 0.0005,
                        quote=bool(i % 2))
    rendered = {}
    for name, implementation in (("c", fill), ("python", bytes.__mod__)):
        monkeypatch.setattr(collector_module, "fill", implementation)
        collector = BookCollector(book)
        first = collector.render(now)
        again = collector.render(now + 1.5)   # the kept chunks' path as well
        rendered[name] = (first, again)
    assert rendered["c"] == rendered["python"]
    assert "feedwatch_symbol_staleness_seconds" in rendered["c"][0]
