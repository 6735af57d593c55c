"""HTTP control API for a running simulator (aiohttp): switch faults, read counters.

    POST /faults/stall?symbol=AAPL     stop one symbol's updates (socket stays open)
    POST /faults/stall_all             stop every update (socket stays open)
    POST /faults/resume[?symbol=AAPL]  clear every fault (or one symbol's stall, freeze and skew)
    POST /faults/drop                  abort the open connections (no close frame)
    POST /faults/reject_auth           refuse logins from now on
    POST /faults/max_connections       refuse logins as over the connection limit
    POST /faults/garbage               interleave undecodable frames
    POST /faults/bad_prices            send non-positive trades and crossed quotes
    POST /faults/ignore_pings          stop answering WebSocket pings
    POST /faults/accept_and_drop       accept each new connection, then cut it at once
    POST /faults/freeze?symbol=AAPL    one symbol's price stops changing; its updates keep flowing
    POST /faults/skew?symbol=S[&value=1.05]   one symbol's prices off by a ratio on this venue
    POST /faults/flood[?value=2000000] batches stamped when due at that many events/s, sent as
                                       fast as the client takes them (a client that cannot keep up
                                       falls behind)
    GET  /state                        JSON: connections, auth, faults, events sent per symbol,
                                       subscriptions (all, and per open connection), REST
                                       snapshots answered per symbol
    POST /scenarios/NAME[?account=A]   a dialect's scripted scenario (the trading bot's drawdown,
                                       kill_switch, ...: exporter/simulator/trading.py)
    GET  /v2/last/trade/{ticker} ...   the venue's REST snapshot (exporter/simulator/rest.py), for
                                       the exporter's REST fallback; faults rest_error, rest_rate_limit

Every POST answers with the state after the change, so a caller can read counters atomically
with the switch (``sent`` at the moment a stall took effect, for example).
"""

from __future__ import annotations

from aiohttp import web

from exporter.simulator.base import FAULT_VALUES, FAULTS, SYMBOL_FAULTS
from exporter.simulator.rest import add_rest_routes
from exporter.simulator.server import Simulator

SIMULATOR = web.AppKey("simulator", Simulator)


async def _state(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIMULATOR].state())


async def _fault(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    name = request.match_info["name"]
    try:
        raw = request.query.get("value")
        try:
            value = float(raw) if raw else None
        except ValueError:
            raise ValueError(f"value must be a number, got {raw!r}") from None
        sim.fault(name, request.query.get("symbol") or None, value)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(sim.state())


async def _scenario(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    try:
        result = sim.dialect_class.scenario(sim, request.match_info["name"], dict(request.query))
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({**sim.state(), "scenario": result})


async def _index(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    lines = [f"feedwatch simulator ({sim.venue}) at {sim.ws_url}", "", "GET  /state"]
    lines += [f"POST /faults/{name}" + ("?symbol=SYMBOL" if name in SYMBOL_FAULTS else "")
              + ("&value=" if name in SYMBOL_FAULTS and name in FAULT_VALUES else "?value=" if name in FAULT_VALUES else "")
              + ("VALUE" if name in FAULT_VALUES else "") for name in FAULTS]
    lines += [f"POST /scenarios/{name}[?account=ACCOUNT]" for name in sim.dialect_class.scenarios]
    return web.Response(text="\n".join(lines) + "\n")


def create_control_app(sim: Simulator) -> web.Application:
    app = web.Application()
    app[SIMULATOR] = sim
    app.router.add_get("/", _index)
    app.router.add_get("/state", _state)
    app.router.add_post("/faults/{name}", _fault)
    app.router.add_post("/scenarios/{name}", _scenario)
    add_rest_routes(app, sim)
    return app


class ControlServer:
    """Serves the control app on host:port (0 = any free port)."""

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(create_control_app(self.sim), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if server is not None and server.sockets:  # port 0: learn the one the OS picked
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
