"""The venues' REST snapshots, served by the simulator's HTTP server (the control server).

What the exporter's REST fallback polls (``exporter/feeds/*_rest.py``), answered from the same
random-walk market as the WebSocket stream; every request moves the symbol's price one tick, so
a test sees prices keep moving while the socket is down:

    polygon  GET /v2/last/trade/{ticker}?apiKey=K     GET /v2/last/nbbo/{ticker}?apiKey=K
    binance  GET /api/v3/ticker/bookTicker?symbol=S    GET /api/v3/ticker/bookTicker?symbols=["A","B"]
    bybit    GET /v5/market/tickers?category=spot&symbol=S   (no symbol: every ticker)
    generic  GET /rest/ticker/{symbol}  -> {"product_id", "price", "best_bid", "best_ask", "ts" (ms)}

Only the simulator's own venue answers (the others 404). A symbol that does not trade here
(``--symbols`` given and it is not listed) gets the venue's not-found answer. Faults (``rest_error``:
HTTP 500; ``rest_rate_limit``: 429 with ``Retry-After: 1``, and on Binance 418 from the fourth
refused request, as Binance bans an IP that ignores its 429s) apply to every venue. Counted in
``stats.rest_requests`` / ``rest_refused``, with each answer's (loop time, status) in ``rest_log``
and the snapshots answered per symbol in ``rest_symbols``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.Response]]


def add_rest_routes(app: web.Application, sim: Any) -> None:
    routes = {
        "polygon": [("/v2/last/trade/{ticker}", _polygon_trade), ("/v2/last/nbbo/{ticker}", _polygon_nbbo)],
        "binance": [("/api/v3/ticker/bookTicker", _binance_book_ticker)],
        "bybit": [("/v5/market/tickers", _bybit_tickers)],
        "generic": [("/rest/ticker/{symbol}", _generic_ticker)],
    }.get(sim.venue, [])
    for path, handler in routes:
        app.router.add_get(path, _guarded(sim, handler))


def _guarded(sim: Any, handler: Callable[[Any, web.Request], Awaitable[web.Response]]) -> Handler:
    async def serve(request: web.Request) -> web.Response:
        stats, faults = sim.stats, sim.faults
        stats.rest_requests += 1
        response: web.Response
        if faults.rest_rate_limit:
            stats.rest_refused += 1
            refused = getattr(sim, "_rest_limited", 0) + 1
            sim._rest_limited = refused
            status = 418 if sim.venue == "binance" and refused > 3 else 429
            response = web.json_response({"code": -1003, "msg": "Too many requests."}, status=status,
                                         headers={"Retry-After": "1"})
        elif faults.rest_error:
            stats.rest_refused += 1
            response = web.json_response({"error": "internal error (simulated)"}, status=500)
        else:
            sim._rest_limited = 0
            response = await handler(sim, request)
        stats.rest_log.append((asyncio.get_running_loop().time(), response.status))
        return response
    return serve


def _tick(sim: Any, symbol: str) -> Any | None:
    if not sim.market.trades(symbol):
        return None
    sim.stats.rest_symbols[symbol] = sim.stats.rest_symbols.get(symbol, 0) + 1
    return sim.market.tick(symbol, time.time())


async def _polygon_trade(sim: Any, request: web.Request) -> web.Response:
    return _polygon(sim, request, quote=False)


async def _polygon_nbbo(sim: Any, request: web.Request) -> web.Response:
    return _polygon(sim, request, quote=True)


def _polygon(sim: Any, request: web.Request, quote: bool) -> web.Response:
    if sim.api_key is not None and request.query.get("apiKey") != sim.api_key:
        return web.json_response({"status": "ERROR", "request_id": "sim", "error": "Unknown API Key"}, status=401)
    ticker = request.match_info["ticker"]
    tick = _tick(sim, ticker)
    if tick is None:
        return web.json_response({"status": "NOT_FOUND", "request_id": "sim", "message": "Data not found."}, status=404)
    ns = tick.ts_ms * 1_000_000
    if quote:
        results = {"T": ticker, "p": tick.bid, "s": 1, "P": tick.ask, "S": 2, "t": ns, "x": 19, "X": 11, "q": tick.seq}
    else:
        results = {"T": ticker, "p": tick.price, "s": tick.size, "t": ns, "x": 4, "q": tick.seq, "i": str(tick.seq)}
    return web.json_response({"status": "OK", "request_id": "sim", "results": results})


async def _binance_book_ticker(sim: Any, request: web.Request) -> web.Response:
    if "symbols" in request.query:
        try:
            symbols = json.loads(request.query["symbols"])
            if not isinstance(symbols, list):
                raise ValueError
        except ValueError:
            return web.json_response({"code": -1100, "msg": "Illegal characters found in parameter 'symbols'."},
                                     status=400)
    elif "symbol" in request.query:
        symbols = None
    else:
        symbols = sorted(sim.market.symbols)
    rows = []
    for symbol in symbols if symbols is not None else [request.query["symbol"]]:
        tick = _tick(sim, str(symbol))
        if tick is None:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        rows.append({"symbol": symbol, "bidPrice": f"{tick.bid:.8f}", "bidQty": "1.00000000",
                     "askPrice": f"{tick.ask:.8f}", "askQty": "2.00000000"})
    return web.json_response(rows if symbols is not None else rows[0])


async def _bybit_tickers(sim: Any, request: web.Request) -> web.Response:
    category = request.query.get("category")
    if category not in ("spot", "linear", "inverse"):
        return web.json_response({"retCode": 10001, "retMsg": "params error: category", "result": {},
                                  "retExtInfo": {}, "time": int(time.time() * 1000)})
    wanted = [request.query["symbol"]] if "symbol" in request.query else sorted(sim.market.symbols)
    rows = []
    for symbol in wanted:
        tick = _tick(sim, symbol)
        if tick is None:
            return web.json_response({"retCode": 10001, "retMsg": "Not supported symbols", "result": {},
                                      "retExtInfo": {}, "time": int(time.time() * 1000)})
        rows.append({"symbol": symbol, "bid1Price": str(tick.bid), "bid1Size": "1", "ask1Price": str(tick.ask),
                     "ask1Size": "2", "lastPrice": str(tick.price), "volume24h": "100"})
    return web.json_response({"retCode": 0, "retMsg": "OK", "result": {"category": category, "list": rows},
                              "retExtInfo": {}, "time": int(time.time() * 1000)})


async def _generic_ticker(sim: Any, request: web.Request) -> web.Response:
    symbol = request.match_info["symbol"]
    tick = _tick(sim, symbol)
    if tick is None:
        return web.json_response({"error": "unknown product"}, status=404)
    return web.json_response({"product_id": symbol, "price": str(tick.price), "best_bid": str(tick.bid),
                              "best_ask": str(tick.ask), "ts": tick.ts_ms})
