"""A generic feed's REST snapshot: a configured URL template and field paths.

    rest:
      enabled: true
      url: https://example.com/ticker/{symbol}       # {symbol} is required
      fields: {price: data.last, timestamp: data.ts}  # or bid and ask; dotted like the adapter's

One symbol per request; a timestamp is a number in any Unix unit (seconds to nanoseconds, told
apart by magnitude). The paths are followed with the generic adapter's ``lookup`` (objects
and array indexes). A path that leads nowhere is a ``decode_error`` naming it. Default rate: one
request per second (an unknown venue's limits are unknown: raise it when you know them).
"""

from __future__ import annotations

import json
from typing import Any, Sequence
from urllib.parse import quote

from exporter.feeds.generic import lookup, parse_path
from exporter.feeds.rest import RestError, RestRequest, RestVenue, Snapshot, number, rate_limit_status, timestamp

_MISSING = lookup({}, ("missing",))  # the adapter's marker for a path that leads nowhere


class GenericRest(RestVenue):
    default_rate = 1.0

    def __init__(self, config) -> None:
        super().__init__(config)
        self.template = config.rest.url
        f = config.rest.fields
        self.paths = {role: (path, parse_path(path)) for role, path in
                      (("price", f.price), ("bid", f.bid), ("ask", f.ask), ("timestamp", f.timestamp)) if path}

    def requests(self, symbols: Sequence[str]) -> list[RestRequest]:
        return [RestRequest(self.template.replace("{symbol}", quote(s, safe="")), (s,)) for s in symbols]

    def _field(self, data: Any, role: str) -> float | None:
        if role not in self.paths:
            return None
        path, parsed = self.paths[role]
        value = lookup(data, parsed)
        if value is None or value is _MISSING:
            raise RestError("decode_error", f"rest.fields.{role}: path {path!r} not in the answer")
        return number(value, f"rest.fields.{role} ({path})")

    def _timestamp(self, data: Any) -> float:
        if "timestamp" not in self.paths:
            return 0
        path, parsed = self.paths["timestamp"]
        value = lookup(data, parsed)
        if value is None or value is _MISSING:
            raise RestError("decode_error", f"rest.fields.timestamp: path {path!r} not in the answer")
        return timestamp(value, f"rest.fields.timestamp ({path})")

    def parse(self, request: RestRequest, status: int, body: bytes, headers: Any = None) -> list[Snapshot]:
        limited = rate_limit_status(status, headers)
        if limited is not None:
            raise limited
        if not 200 <= status < 300:
            raise RestError("http_error", f"HTTP {status}: {body[:200]!r}")
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise RestError("decode_error", f"not JSON: {exc}") from None
        ts = self._timestamp(data)
        price = self._field(data, "price")
        if price is not None:
            return [Snapshot(request.symbols[0], price, price, ts)]
        bid, ask = self._field(data, "bid"), self._field(data, "ask")
        return [Snapshot(request.symbols[0], bid or 0.0, ask or 0.0, ts)]
