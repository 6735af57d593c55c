"""Bybit's REST snapshot for the fallback: v5 market tickers.

    GET {base}/v5/market/tickers?category=spot&symbol=BTCUSDT
      -> {"retCode": 0, "retMsg": "OK", "result": {"category": "spot", "list": [{"symbol": "BTCUSDT",
          "bid1Price": "20517.96", "ask1Price": "20527.77", "lastPrice": "20533.13", ...}]},
          "retExtInfo": {}, "time": 1673859087947}

One symbol per request, or every ticker of the category in one request (no ``symbol``) when
more than ``ALL_ABOVE`` symbols are due, filtered here. The best bid/ask give the price (the
last trade when a side is missing); ``time`` (the server's, ms) is the snapshot's time. The
feed's ``category`` option selects spot, linear or inverse. Bybit allows 600 requests per 5 s
per IP; the default 10 per second is a twelfth of that. Over the limit it answers 403 ("access
too frequent") or ``retCode`` 10006: both pause polling.
"""

from __future__ import annotations

from typing import Any, Sequence
from urllib.parse import quote

from exporter.feeds.rest import (RestError, RestRequest, RestVenue, Snapshot, json_body, number, rate_limit_status,
                                  timestamp)

ALL_ABOVE = 10
RATE_LIMIT_CODES = {10006, 10018}


class BybitRest(RestVenue):
    default_url = "https://api.bybit.com"
    default_rate = 10.0

    def requests(self, symbols: Sequence[str]) -> list[RestRequest]:
        category = getattr(self.config.options, "category", "spot")
        url = f"{self.base}/v5/market/tickers?category={category}"
        if len(symbols) > ALL_ABOVE:
            return [RestRequest(url, tuple(symbols))]
        return [RestRequest(f"{url}&symbol={quote(s, safe='')}", (s,)) for s in symbols]

    def parse(self, request: RestRequest, status: int, body: bytes, headers: Any = None) -> list[Snapshot]:
        limited = rate_limit_status(status, headers)
        if limited is not None:
            raise limited
        if status == 403:
            raise RestError("rate_limited", "HTTP 403 (Bybit: access too frequent)", 60.0)
        data = json_body(status, body)
        if not isinstance(data, dict):
            raise RestError("decode_error" if 200 <= status < 300 else "http_error", f"HTTP {status}: not an object")
        code = data.get("retCode")
        if isinstance(code, int) and code in RATE_LIMIT_CODES:
            raise RestError("rate_limited", f"retCode {code}: {str(data.get('retMsg'))[:100]}", 60.0)
        if not 200 <= status < 300 or code != 0:
            raise RestError("http_error", f"HTTP {status}, retCode {code}: {str(data.get('retMsg'))[:200]}")
        rows = (data.get("result") or {}).get("list") if isinstance(data.get("result"), dict) else None
        if not isinstance(rows, list):
            raise RestError("decode_error", "no result.list in the answer")
        ts = timestamp(data.get("time", 0), "time")
        wanted = set(request.symbols)
        out = []
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("symbol"), str):
                raise RestError("decode_error", "a ticker without a symbol")
            if row["symbol"] not in wanted:
                continue
            bid = number(row.get("bid1Price") or 0, "bid1Price")
            ask = number(row.get("ask1Price") or 0, "ask1Price")
            if bid <= 0 or ask <= 0:  # an empty side: the last trade stands in
                bid = ask = number(row.get("lastPrice"), "lastPrice")
            out.append(Snapshot(row["symbol"], bid, ask, ts))
        return out
