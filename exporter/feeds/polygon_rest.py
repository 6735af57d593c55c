"""Polygon's REST snapshot for the fallback: last trade or last NBBO, one ticker per request.

    GET {base}/v2/last/trade/{ticker}?apiKey=KEY
      -> {"status": "OK", "request_id": "...", "results": {"T": "AAPL", "p": 129.8, "s": 25,
          "t": 1617901342969834000, ...}}                    (t: SIP timestamp, nanoseconds)
    GET {base}/v2/last/nbbo/{ticker}?apiKey=KEY
      -> {"status": "OK", "results": {"T": "AAPL", "p": 127.96 (bid), "P": 127.98 (ask), "t": ...}}

A feed that subscribes trades (channel ``T``) polls the last trade; a quotes-only feed polls the
NBBO. The feed's ``api_key`` is reused. The stocks endpoints only (Polygon's crypto and forex
snapshots live elsewhere). Default rate: 5 requests per second, far inside the paid plans'
limits (the free plan has no last-trade access; set ``rest.max_requests_per_second`` to what
your plan allows).
"""

from __future__ import annotations

from typing import Any, Sequence
from urllib.parse import quote

from exporter.feeds.rest import (RestError, RestRequest, RestVenue, Snapshot, json_body, number, rate_limit_status,
                                  timestamp)


class PolygonRest(RestVenue):
    default_url = "https://api.polygon.io"
    default_rate = 5.0

    @property
    def trades(self) -> bool:
        return "T" in getattr(self.config.options, "channels", ("T",))

    def requests(self, symbols: Sequence[str]) -> list[RestRequest]:
        kind = "trade" if self.trades else "nbbo"
        key = quote(self.config.api_key, safe="")
        return [RestRequest(f"{self.base}/v2/last/{kind}/{quote(s, safe='')}?apiKey={key}", (s,)) for s in symbols]

    def parse(self, request: RestRequest, status: int, body: bytes, headers: Any = None) -> list[Snapshot]:
        limited = rate_limit_status(status, headers)
        if limited is not None:
            raise limited
        data = json_body(status, body)
        if not 200 <= status < 300:
            message = data.get("error") or data.get("message") or data.get("status") if isinstance(data, dict) else None
            raise RestError("http_error", f"HTTP {status}: {str(message)[:200]}")
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, dict):
            raise RestError("decode_error", "no results object in the answer")
        symbol = request.symbols[0]
        ts = timestamp(results.get("t", 0), "results.t")
        if self.trades:
            price = number(results.get("p"), "results.p")
            return [Snapshot(symbol, price, price, ts)]
        return [Snapshot(symbol, number(results.get("p"), "results.p"), number(results.get("P"), "results.P"), ts)]
