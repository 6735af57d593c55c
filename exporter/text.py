"""Text helpers every layer may use (they import nothing of feedwatch).

``preview`` cuts a venue frame or a request body down to an excerpt for a log line or a problem
message: the adapters, the trading tracker and the HTTP API all quote what they refused this way.
"""

from __future__ import annotations


def preview(data: str | bytes, limit: int = 120) -> str:
    """The start of a frame for a Problem message or a log line: at most ``limit`` characters
    (bytes decoded leniently, only as many as needed), with "..." when cut. Always valid
    Unicode: a text frame holding lone surrogates has them replaced, so the excerpt can be
    logged and served as JSON (``last_error``) like any other."""
    if isinstance(data, str):
        cut = data[:limit].encode("utf-8", "replace").decode("utf-8")
        return cut + ("..." if len(data) > limit else "")
    text = data[:limit * 2].decode("utf-8", "replace")
    return text[:limit] + ("..." if len(text) > limit else "")
