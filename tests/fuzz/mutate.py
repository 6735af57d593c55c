"""Mutations of recorded venue frames: what a hostile or broken venue could send instead.

One engine, driven by any ``random.Random``: hypothesis hands it its own (``st.randoms()``), so a
failure shrinks to a small sequence of choices and replays from the example database; the long
run (``python -m tests.fuzz``) hands it a seeded ``random.Random`` and makes a million cases per
adapter in minutes instead of hours.

A case starts from a recorded frame (``tests/fixtures/<venue>/``) and applies one to three
mutations, structural (on the parsed JSON: a value replaced by a hostile one, a type swapped, a
key dropped or added, an element duplicated, a subtree buried a thousand levels deep) and/or
textual (on the bytes: truncation, invalid UTF-8 inside a string, flipped or inserted bytes,
pure noise). The frame is then delivered as ``bytes`` or as ``str`` (decoded with
``surrogateescape``, so invalid bytes become lone surrogates, as a careless caller would pass).

Values that ``json.dumps`` cannot write (a 5,000-digit integer, ``NaN``, ``-Infinity``, a raw
nesting) are placed as markers and spliced into the text afterwards.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# Timestamps that broke something once, and their relatives.
NASTY_TIMESTAMPS = (
    "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z", "2023-11-14T22:13:20", "2023-13-45T99:99:99Z", "1970-01-01T00:00:00Z",
    1e300, 1e26, -1e300, 1e-300, 0, -1, 1, 2**63, 2**64, -(2**63), 1_700_000_000, 1_700_000_000_000,
    1_700_000_000_000_000, 1_700_000_000_000_000_000, 99_999_999_999, 946_684_799, 4_102_444_800,
)
NASTY_NUMBERS = (
    0, -0.0, -1, 1, 0.5, -3.5, 1e-320, 5e-324, 1.7976931348623157e308, -1.7976931348623157e308,
    2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**20, 10**30, 1e308, "1e999", "-1e999",
    "NaN", "nan", "inf", "-inf", "Infinity", "0x10", "1_000", " 12.5 ", "", "12.5.3", "١٢٣",
)
NASTY_STRINGS = (
    "", " ", "\x00", "\n\"\\", "AAPL\n", 'A"B', "ü", "😀", "\u2028", "T.", ".", "@", "a@trade",
    "btcusdt@trade", "publicTrade.", "tickers.BTCUSDT", "status", "success", "subscribed to: ",
    "A" * 300, "auth_success", "auth_failed", "max_connections", "disconnected", "error",
    "serverShutdown", "snapshot", "delta", "pong", "ping", "subscribe", "heartbeat", "trade",
    "equity", "positions", "safety", "api_call", "open", "closed", "long", "short",
)
# Raw JSON tokens spliced into the text (markers are replaced after json.dumps).
RAW_TOKENS = ("NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e400", "00", "-", "01",
              "1.", ".5", "+1", "0x1F", "true", "null", "[]", "{}", '""', "1E+2", "-0")


class _Raw:
    """A JSON token to splice in verbatim (``json.dumps`` cannot write it)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def seeds(venue: str) -> list[bytes]:
    """The recorded frames of a venue, the regression frames of earlier fuzzing (``fuzz/``)
    included, sorted by path."""
    folder = FIXTURES / venue
    return [p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix in (".json", ".txt")]


# --- values --------------------------------------------------------------------------------

def huge_int(rng: random.Random) -> _Raw:
    """An integer of 20 to 5,000 digits (past 4,300, Python itself refuses to print one)."""
    digits = rng.choice((20, 40, 309, 320, 400, 1000, 4301, 5000))
    sign = "-" if rng.random() < 0.3 else ""
    chunk = str(rng.randint(100_000_000, 999_999_999))  # few draws: hypothesis records each one
    return _Raw(sign + (chunk * (digits // 9 + 1))[:digits])


def deep(rng: random.Random, inner: Any = 1) -> _Raw:
    """``inner`` buried in arrays or objects hundreds to thousands of levels deep."""
    depth = rng.choice((64, 500, 999, 1000, 1001, 1500, 3000))
    opener, closer = ("[", "]") if rng.random() < 0.5 else ('{"a":', "}")
    return _Raw(opener * depth + dumps(inner) + closer * depth)


def nasty_value(rng: random.Random, like: Any = None) -> Any:
    """A value to put where ``like`` was: hostile numbers, strings, containers, raw tokens."""
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(NASTY_TIMESTAMPS)
    if roll < 0.35:
        return rng.choice(NASTY_NUMBERS)
    if roll < 0.45:
        return huge_int(rng)
    if roll < 0.55:
        return _Raw(rng.choice(RAW_TOKENS))
    if roll < 0.65:
        return rng.choice(NASTY_STRINGS)
    if roll < 0.70:
        return deep(rng)
    if roll < 0.80:
        return swap_type(rng, like)
    if roll < 0.90 and isinstance(like, (int, float)) and not isinstance(like, bool) and abs(like) < 1e300:
        return rng.choice((like * 1000, like / 1000, -like, like * 1e9, like + rng.uniform(-1e6, 1e6)))
    return rng.choice((None, True, False, [], {}, [like], {"x": like}, [[]], [1], [1, "a"]))


def swap_type(rng: random.Random, value: Any) -> Any:
    """The same content in another JSON type (a number as a string, a string in a list...)."""
    if isinstance(value, bool):
        return rng.choice((str(value).lower(), int(value), [value]))
    if isinstance(value, (int, float)):
        choices: list[Any] = [str(value), [value], {"v": value}, value is None]
        if abs(value) < 1e300:  # a float of it exists (and an int, NaN aside)
            choices.append(float(value) if isinstance(value, int) else int(value) if value == value else 0)
        return rng.choice(choices)
    if isinstance(value, str):
        return rng.choice(([value], {value: value}, len(value), None, value.encode().hex()))
    if isinstance(value, list):
        return rng.choice(({str(i): v for i, v in enumerate(value)}, value[:1], dumps(value), 0))
    if isinstance(value, dict):
        return rng.choice((list(value.values()), list(value.items()), dumps(value), 0))
    return rng.choice((0, "", [], {}))


# --- structural mutations ------------------------------------------------------------------

def _slots(tree: Any, path: tuple = ()) -> list[tuple]:
    """Every path to a value in the tree (the root included)."""
    out = [path]
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.extend(_slots(value, path + (key,)))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            out.extend(_slots(value, path + (i,)))
    return out


def _get(tree: Any, path: tuple) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _set(tree: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(tree, path[:-1])[path[-1]] = value
    return tree


def _all_numbers(tree: Any, value: Any) -> Any:
    """Every number in the tree replaced by ``value`` (both sides of a quote at once, say)."""
    if isinstance(tree, dict):
        return {k: _all_numbers(v, value) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_all_numbers(v, value) for v in tree]
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return value
    return tree


def mutate_tree(rng: random.Random, tree: Any) -> Any:
    if rng.random() < 0.05:
        return _all_numbers(tree, rng.choice(NASTY_NUMBERS + NASTY_TIMESTAMPS))
    path = rng.choice(_slots(tree))
    target = _get(tree, path)
    roll = rng.random()
    if roll < 0.55:
        return _set(tree, path, nasty_value(rng, target))
    if roll < 0.65:
        return _set(tree, path, swap_type(rng, target))
    if roll < 0.75 and isinstance(target, dict) and target:
        del target[rng.choice(list(target))]
        return tree
    if roll < 0.82 and isinstance(target, dict):
        target[rng.choice(("e", "ev", "s", "p", "t", "T", "ts", "data", "result", "id", "type", "x", "code"))] = \
            nasty_value(rng)
        return tree
    if roll < 0.90 and isinstance(target, list) and target:
        target.insert(rng.randrange(len(target) + 1), rng.choice(target))
        return tree
    if roll < 0.95:
        return _set(tree, path, deep(rng, target))
    return _set(tree, path, [target] if rng.random() < 0.5 else {"data": target})


def dumps(tree: Any) -> str:
    """JSON text with the ``_Raw`` markers spliced in."""
    raws: list[str] = []

    def default(value: Any) -> str:
        if isinstance(value, _Raw):
            raws.append(value.text)
            return f"\x00RAW{len(raws) - 1}\x00"
        raise TypeError(type(value).__name__)

    text = json.dumps(tree, default=default, ensure_ascii=False)
    for i, raw in enumerate(raws):
        text = text.replace(f'"\\u0000RAW{i}\\u0000"', raw, 1)
    return text


# --- textual mutations ---------------------------------------------------------------------

INVALID_UTF8 = (b"\xff", b"\xfe", b"\xc3", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\x28",
                b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xc0\xaf", b"\x80")


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    roll = rng.random()
    if roll < 0.25 and data:  # truncation
        return data[:rng.randrange(len(data))]
    if roll < 0.55:  # invalid UTF-8 inside a string value (just after an opening quote), or anywhere
        at = rng.randrange(len(data) + 1)
        if rng.random() < 0.8:  # the next quote from a random place: inside a key or a string
            quote = data.find(b'"', at)
            quote = quote if quote >= 0 else data.find(b'"')
            at = quote + 1 if quote >= 0 else at
        return data[:at] + rng.choice(INVALID_UTF8) + data[at:]
    if roll < 0.70 and data:  # flipped bytes
        out = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out)
    if roll < 0.80:  # inserted bytes
        at = rng.randrange(len(data) + 1)
        return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + data[at:]
    if roll < 0.88:  # noise
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    if roll < 0.94:  # a frame that is a bare value
        return rng.choice((b"", b" ", b"null", b"0", b"1e999", b'"x"', b"[]", b"{}", b"[[]]", b"[1]", b'[1,"a"]',
                           b"true", b"\xef\xbb\xbf[]", b"[" * 5000, b"{" * 5000))
    return data + data  # two documents back to back


# --- one case ------------------------------------------------------------------------------

def make_case(rng: random.Random, seed_frames: list[bytes]) -> bytes | str:
    """One mutated frame from a random recorded one, as bytes or (sometimes) as text."""
    data = rng.choice(seed_frames)
    tree = None
    # A regression frame nested 1,000 deep is mutated as bytes: json.loads fails on it, slowly.
    if data.count(b"[") + data.count(b"{") < 500:
        try:
            tree = json.loads(data)
        except (ValueError, RecursionError):  # not JSON
            pass
    if tree is not None and rng.random() < 0.8:
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            tree = mutate_tree(rng, tree)
        data = dumps(tree).encode("utf-8", "surrogatepass")
    if tree is None or rng.random() < 0.3:
        data = mutate_bytes(rng, data)
    if rng.random() < 0.3:
        return data.decode("utf-8", "surrogateescape")
    return data
