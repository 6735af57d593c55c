"""Text helpers every layer may use (they import nothing of feedwatch).

``preview`` cuts a venue frame or a request body down to an excerpt for a log line or a problem
message: the adapters, the trading tracker and the HTTP API all quote what they refused this way.
"""

from __future__ import annotations


def preview(data: str | bytes, limit: int = 120) -> str:
    """The start of a frame for a Problem message or a log line: at most ``limit`` characters
    (bytes decoded leniently, only as many as needed), with "..." when cut."""
    text = data if isinstance(data, str) else data[:limit * 2].decode("utf-8", "replace")
    return text[:limit] + ("..." if len(text) > limit else "")
