"""Binance's REST snapshot for the fallback: the book ticker, batched.

    GET {base}/api/v3/ticker/bookTicker?symbol=BTCUSDT
      -> {"symbol": "BTCUSDT", "bidPrice": "4.00000000", "bidQty": "431.0", "askPrice": "4.00000200", "askQty": "9.0"}
    GET {base}/api/v3/ticker/bookTicker?symbols=["BTCUSDT","ETHUSDT"]
      -> [{...}, {...}]

Weight (against 6,000 per minute per IP): 2 for one symbol, 4 for a ``symbols`` batch, so
several symbols always go in batches (``BATCH`` per request, keeping the URL short). The answer
carries no timestamp: a book ticker is the book now, so its time is when it was received. Default
rate 5 requests per second: at weight 4 that is 1,200 of the 6,000 per minute. A 429 (with
Retry-After) pauses polling as asked; a 418 means the IP is banned for ignoring 429s: the pause
is its Retry-After too.
"""

from __future__ import annotations

import json
from typing import Any, Sequence
from urllib.parse import quote

from exporter.feeds.rest import RestError, RestRequest, RestVenue, Snapshot, json_body, number, rate_limit_status

BATCH = 100


class BinanceRest(RestVenue):
    default_url = "https://api.binance.com"
    default_rate = 5.0

    def requests(self, symbols: Sequence[str]) -> list[RestRequest]:
        out = []
        for i in range(0, len(symbols), BATCH):
            chunk = tuple(symbols[i:i + BATCH])
            if len(chunk) == 1:
                out.append(RestRequest(f"{self.base}/api/v3/ticker/bookTicker?symbol={quote(chunk[0], safe='')}",
                                       chunk, 2))
            else:
                listed = quote(json.dumps(list(chunk), separators=(",", ":")), safe="")
                out.append(RestRequest(f"{self.base}/api/v3/ticker/bookTicker?symbols={listed}", chunk, 4))
        return out

    def parse(self, request: RestRequest, status: int, body: bytes, headers: Any = None) -> list[Snapshot]:
        limited = rate_limit_status(status, headers)
        if limited is not None:
            raise limited
        data = json_body(status, body)
        if not 200 <= status < 300:
            detail = f"{data.get('code')}: {data.get('msg')}" if isinstance(data, dict) else str(data)[:100]
            raise RestError("http_error", f"HTTP {status}: {detail[:200]}")
        rows = data if isinstance(data, list) else [data]
        wanted = set(request.symbols)
        out = []
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("symbol"), str):
                raise RestError("decode_error", "a book ticker without a symbol")
            if row["symbol"] in wanted:
                out.append(Snapshot(row["symbol"], number(row.get("bidPrice"), "bidPrice"),
                                    number(row.get("askPrice"), "askPrice")))
        return out
