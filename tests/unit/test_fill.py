"""``exporter.fill``: the C ``fill`` gives exactly ``fmt % values``, bytes for bytes, error for error;
``fill_seconds`` writes a venue stamp exactly as ``repr(to_seconds(stamp))`` does, or gives None;
``gather`` reads exactly what ``getattr`` reads, or raises what it raises.

The extension must be built here (the editable install compiles it, ``make venv``): a test
environment without it would test Python's ``%`` against itself, so its absence fails, it is
never skipped. The collector's output with the C ``fill`` and with Python's ``%`` (what a build
without a C compiler runs) is compared on a book holding every kind of value it renders.
"""

from __future__ import annotations

import math
import random
import re
import struct

import pytest
from hypothesis import given, settings, strategies as st

from exporter import collector as collector_module, fill as fill_module
from exporter.book import Book, to_seconds
from exporter.collector import BookCollector
from exporter.fill import fill, fill_seconds, gather, gather_each

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
    """What a build without the extension renders (``fill`` is ``bytes.__mod__``, ``gather`` a
    ``map(attrgetter)`` per name) is byte for byte what the C functions render: timestamps, ages,
    counts, states (-1 while closed among them), prices, frozen flags, a symbol never updated and
    values that leave Python's fast path."""
    now = 1_700_000_000.25
    book = Book([feed_config("stocks", [f"S{i}%" for i in range(1500)])], now - 100)
    feed = book.feeds["stocks"]
    rng = random.Random(16)

    def venue_stamp(i: int) -> float:
        """Chunk 0 (512 symbols): milliseconds, some with trailing zeros; chunk 1: seconds,
        milliseconds and none (0) mixed (all written in C, each by its own unit, the absent
        ones' lines left out); chunk 2: microseconds, float seconds and none among them (the
        Python path)."""
        ms = int((now - rng.random() * 60) * 1000)
        kind = (0 if i < 512 else 1 if i < 1024 else 2, i % 4)
        if kind[0] == 0:
            return ms - ms % 10 ** kind[1]
        if kind[0] == 1:
            return (0, ms, ms // 1000, ms)[kind[1]]
        return (ms * 1000 + 7, round(now - rng.random(), 6), 0, ms)[kind[1]]

    for i, symbol in enumerate(list(feed.symbols)[:-3]):   # the last three never update
        for _ in range(rng.randrange(1, 4)):
            feed.record(symbol, round(rng.uniform(0.5, 5000.0), rng.randrange(0, 7)), venue_stamp(i),
                        now - rng.random() * 50 - (i % 7) * 0.0005, quote=bool(i % 2))
    rendered = {}
    for name, implementation, seconds, gathering in (("c", fill, fill_seconds, gather),
                                                     ("python", bytes.__mod__, None, gather_each)):
        monkeypatch.setattr(collector_module, "fill", implementation)
        monkeypatch.setattr(collector_module, "fill_seconds", seconds)
        monkeypatch.setattr(collector_module, "gather", gathering)
        collector = BookCollector(book)
        first = collector.render(now)
        again = collector.render(now + 1.5)   # the kept chunks' path as well
        rendered[name] = (first, again)
    assert rendered["c"] == rendered["python"]
    text = rendered["c"][0]
    assert "feedwatch_symbol_staleness_seconds" in text
    events = re.findall(r'^feedwatch_symbol_last_event_timestamp_seconds\{feed="stocks",symbol="S(\d+)%"\} (\S+)$',
                        text, re.M)
    kinds = {(int(i) // 512, len(value.partition(".")[2])) for i, value in events}
    # Every chunk rendered its stamps, with one to six decimals (milliseconds with and without
    # trailing zeros, whole seconds, microseconds, float seconds).
    assert {0, 1, 2} <= {chunk for chunk, _ in kinds} and {1, 2, 3} <= {d for c, d in kinds if c == 0}
    assert (1, 1) in kinds and any(c == 2 and d > 3 for c, d in kinds), kinds
    stamped = {int(i) for i, _ in events}
    assert stamped.isdisjoint(range(512, 1024, 4)) and stamped >= set(range(513, 1024, 4))   # chunk 1: none given


@pytest.mark.parametrize("stamp", [
    1, 9, 10, 100_000_000_000, 100_000_000_001, 1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_010,
    1_700_000_000_100, 1_700_000_000_120, 1_700_000_000_999, 99_999_999_999_999, 100_000_000_000_000,
    1_700_000_000,
])
def test_venue_stamps_in_seconds_or_milliseconds_read_as_repr_of_to_seconds(stamp):
    fmt = lines(b"%s", 1)
    assert fill_seconds(fmt, (stamp,)) == fmt % (repr(to_seconds(stamp)).encode(),)


def test_venue_stamps_match_repr_and_msgspec_on_many_values():
    """Random stamps over both units: the C text is ``repr(to_seconds(v))`` and what the
    collector's Python path writes (msgspec's shortest float of the division)."""
    rng = random.Random(17)
    fmt = lines(b"%s", 500)
    for high in (10 ** 5, 10 ** 11, 10 ** 13, 10 ** 14):
        for _ in range(200):
            stamps = tuple(rng.randrange(1, high + 1) for _ in range(500))
            texts = tuple(repr(to_seconds(v)).encode() for v in stamps)
            assert fill_seconds(fmt, stamps) == fmt % texts
            if high > 10 ** 11 and min(stamps) > 10 ** 11:
                assert fmt % collector_module._event_texts(stamps) == fmt % texts


@pytest.mark.parametrize("stamps", [
    (-5,), (100_000_000_000_001,), (1_700_000_000_000_000,), (1.5,), (True,), (False,), (2 ** 70,), ("1",),
    (None,), (1_700_000_000_000, -1), (0, 1.7e9),
])
def test_anything_but_seconds_or_milliseconds_gives_none(stamps):
    assert fill_seconds(lines(b"%s", len(stamps)), stamps) is None


def test_an_absent_stamp_leaves_its_line_out():
    """0 (or 0.0): the venue gave no stamp; the Python path writes no sample for it either."""
    fmt = lines(b"%s", 5)
    stamps = (0, 1_700_000_000_123, 0.0, -0.0, 1_700_000_000)
    kept = [line for line, stamp in zip(fmt.splitlines(keepends=True), stamps) if stamp]
    assert fill_seconds(fmt, stamps) == b"".join(kept) % tuple(repr(to_seconds(v)).encode() for v in stamps if v)
    assert fill_seconds(fmt, (0,) * 5) == b""
    assert fill_seconds(b"head %s tail\nnext %s\n", (0, 1)) == b"next 1.0\n"


@pytest.mark.parametrize("fmt, stamps", [
    (b"%d", (1_700_000_000_000,)), (b"%.3f", (1_700_000_000_000,)), (b"%s %s", (1_700_000_000_000,)),
    (b"%s", (1_700_000_000_000, 1)), (b"%r", (1,)),
])
def test_other_directives_or_counts_give_none(fmt, stamps):
    assert fill_seconds(fmt, stamps) is None


def test_escaped_percent_signs_stay_text():
    assert fill_seconds(b"%% %s %%", (1_700_000_000_000,)) == b"% 1700000000.0 %"


# --- gather: the values the collector fills, read out of the states -----------------------------

class _Slotted:
    __slots__ = ("a", "b")

    def __init__(self, a: object, b: object) -> None:
        self.a, self.b = a, b


class _Subclass(_Slotted):
    """Another type: read with getattr, not through the first object's descriptors."""

    __slots__ = ()

    def __init__(self, a: object, b: object) -> None:   # noqa: ARG002 - its b is the property
        self.a = a

    @property
    def b(self) -> object:   # type: ignore[override]
        return ("property", self.a)


class _Plain:
    """No slots: attributes in the instance dict, and a property."""

    def __init__(self, a: object) -> None:
        self.a = a

    @property
    def b(self) -> object:
        return ("plain", self.a)


class _Hooked(_Slotted):
    """Attribute lookup of its own: getattr runs it, so gather must too, for every object."""

    __slots__ = ()

    def __getattribute__(self, name: str) -> object:
        value = object.__getattribute__(self, name)
        return ("hooked", value) if name == "a" else value


class _Fallback(_Slotted):
    """``__getattr__`` for what normal lookup does not find (an unset slot)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> object:
        return ("fallback", name)


def test_gather_reads_what_getattr_reads():
    """The states' own slots (read through their descriptors), objects of other types among them
    (a subclass overriding a slot with a property, an object without slots), types with lookup
    of their own (``__getattribute__``, ``__getattr__``), several names in one pass, and the same
    name twice."""
    now = 1_700_000_000.0
    book = Book([feed_config("stocks", [f"S{i}" for i in range(300)])], now - 10)
    feed = book.feeds["stocks"]
    for i, symbol in enumerate(list(feed.symbols)[:200]):
        feed.record(symbol, 1.0 + i / 7, 1_700_000_000_000 + i, now - i * 0.001, quote=bool(i % 2))
    members = list(feed.symbols.values())
    names = ("acks", "last_update", "updates", "rest_mark", "last_event", "price", "same", "symbol", "th", "price")
    assert gather(members, names) == gather_each(members, names)
    assert len(set(gather(members, names)[1])) > 100   # receive times of their own: not a column of defaults
    mixed = [_Slotted(1, 2), _Subclass(3, 4), _Plain(5), _Slotted("x", None), _Plain([6])]
    assert gather(mixed, ("a", "b")) == gather_each(mixed, ("a", "b")) == (
        (1, 3, 5, "x", [6]), (2, ("property", 3), ("plain", 5), None, ("plain", [6])))
    plain_first = [_Plain(1), _Slotted(2, 3), _Subclass(4, 5)]
    assert gather(plain_first, ("b", "a")) == gather_each(plain_first, ("b", "a"))
    hooked = [_Hooked(1, 2), _Hooked(3, 4), _Slotted(5, 6)]
    assert gather(hooked, ("a", "b")) == gather_each(hooked, ("a", "b")) == (
        (("hooked", 1), ("hooked", 3), 5), (2, 4, 6))
    fallback = [_Fallback(1, 2), _Fallback.__new__(_Fallback)]   # the second's slots never written
    assert gather(fallback, ("a", "b")) == gather_each(fallback, ("a", "b")) == (
        (1, ("fallback", "a")), (2, ("fallback", "b")))
    assert gather([], ("a", "b")) == ((), ()) and gather(mixed, ()) == ()


def test_gather_raises_what_getattr_raises():
    unset = _Slotted.__new__(_Slotted)   # its slots never written
    for objects, names in (([_Slotted(1, 2), unset], ("a",)), ([_Slotted(1, 2)], ("a", "missing")),
                           ([_Plain(1), _Slotted(1, 2)], ("a", "missing"))):
        with pytest.raises(AttributeError) as c_error:
            gather(objects, names)
        with pytest.raises(AttributeError) as python_error:
            gather_each(objects, names)
        assert str(c_error.value) == str(python_error.value)


def test_gather_takes_a_list_and_a_tuple_of_names_only():
    for args in (((_Slotted(1, 2),), ("a",)), ([_Slotted(1, 2)], ["a"]), ([_Slotted(1, 2)], ("a", 1)),
                 ([_Slotted(1, 2)],)):
        with pytest.raises(TypeError):
            gather(*args)   # type: ignore[arg-type]


def test_gather_keeps_references_exact():
    """Every value gathered holds one reference per tuple it is in, no more and none leaked: the
    objects' and values' reference counts are back where they were once the tuples are gone,
    after an error part way as well."""
    import sys

    values = [object() for _ in range(8)]
    objects = [_Slotted(values[i], values[i + 4]) for i in range(4)]
    before = [sys.getrefcount(v) for v in values] + [sys.getrefcount(o) for o in objects]
    for _ in range(1000):
        columns = gather(objects, ("a", "b", "a"))
        assert sys.getrefcount(values[0]) == before[0] + 2   # in the first and the third tuple
        del columns
        with pytest.raises(AttributeError):
            gather(objects + [_Slotted.__new__(_Slotted)], ("a", "b"))
    assert [sys.getrefcount(v) for v in values] + [sys.getrefcount(o) for o in objects] == before
