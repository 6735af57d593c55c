"""A strict logfmt reader for tests: one line -> ordered fields, escapes undone.

Values are bare (no space, ``=``, ``"``, backslash or control character) or double-quoted with
``\\\\``, ``\\"``, ``\\n``, ``\\r``, ``\\t`` and ``\\uXXXX`` escapes: the rules
exporter/commands/logformat.py writes by. Anything else raises ValueError, so a test that parses
every line also proves every line is well formed.
"""

from __future__ import annotations

import re

_BARE = re.compile(r'[^\s="\\\x00-\x1f\x7f-\x9f]+')
_KEY = re.compile(r'[^\s="\x00-\x1f\x7f-\x9f]+')
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}


def parse_line(line: str) -> dict[str, str]:
    if "\n" in line or "\r" in line:
        raise ValueError("a log line holds a raw line break")
    fields: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        key = _KEY.match(line, i)
        if key is None or key.end() >= n or line[key.end()] != "=":
            raise ValueError(f"expected key= at column {i}: {line!r}")
        i = key.end() + 1
        if i < n and line[i] == '"':
            i += 1
            value = []
            while True:
                if i >= n:
                    raise ValueError(f"unterminated quoted value: {line!r}")
                char = line[i]
                if char == '"':
                    i += 1
                    break
                if char == "\\":
                    code = line[i + 1:i + 2]
                    if code == "u":
                        value.append(chr(int(line[i + 2:i + 6], 16)))
                        i += 6
                    elif code in _ESCAPES:
                        value.append(_ESCAPES[code])
                        i += 2
                    else:
                        raise ValueError(f"bad escape \\{code} in {line!r}")
                    continue
                if ord(char) < 0x20 or 0x7f <= ord(char) <= 0x9f:
                    raise ValueError(f"raw control character {char!r} in a quoted value: {line!r}")
                value.append(char)
                i += 1
            fields[key.group()] = "".join(value)
        else:
            bare = _BARE.match(line, i)
            if bare is None:
                raise ValueError(f"empty or invalid bare value at column {i}: {line!r}")
            fields[key.group()] = bare.group()
            i = bare.end()
        if i < n:
            if line[i] != " ":
                raise ValueError(f"expected a space at column {i}: {line!r}")
            i += 1
    return fields
