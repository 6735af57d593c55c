"""``feedwatch simulate``: a venue simulator on 127.0.0.1 with fault injection.

    feedwatch simulate --venue polygon --symbols AAPL,MSFT --rate 50 --port 0 --api-key K \\
        --fault stall:AAPL --control-port 0

prints, once listening (stdout, one line each, flushed)::

    ws: ws://127.0.0.1:41233
    control: http://127.0.0.1:41234

Faults can be switched at run time over the control URL (``POST /faults/stall?symbol=AAPL``,
``GET /state``; see ``exporter/simulator/control.py``). Dialects with scripted scenarios (the
trading bot: ``drawdown``, ``kill_switch``, ...) take ``--scenario NAME[:ACCOUNT]``, applied in order
once listening, or ``POST /scenarios/NAME`` later::

    feedwatch simulate --venue trading --api-key K --scenario drawdown --scenario api_errors:desk

Runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from exporter.commands import common_flags, stop_event
from exporter.commands.helptext import HelpFormatter, simulate_epilog
from exporter.simulator.base import names as dialect_names, parse_fault


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate", parents=[common_flags()], help="run a venue simulator with fault injection",
        description="Serve a venue's WebSocket dialect on 127.0.0.1 with random-walk prices and "
                    "switchable faults (listed below, with each venue's scripted scenarios).",
        formatter_class=HelpFormatter, epilog=simulate_epilog)
    add_simulator_flags(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, metavar="PORT",
                        help="WebSocket port (default: 0, any free port)")
    parser.add_argument("--control-port", type=int, default=0, metavar="PORT",
                        help="HTTP control API port (default: 0, any free port)")
    parser.set_defaults(func=main)


def add_simulator_flags(parser: argparse.ArgumentParser) -> None:
    # Names only (entry points, nothing imported): plugin dialects are choices too.
    parser.add_argument("--venue", default="polygon", choices=dialect_names(),
                        help="dialect to speak (default: polygon)")
    parser.add_argument("--symbols", default="", metavar="SYMBOL,...",
                        help="comma-separated symbols that trade (default: any symbol subscribed)")
    parser.add_argument("--rate", type=float, default=10.0, metavar="PER_SECOND",
                        help="updates per second per subscribed symbol (default: 10)")
    parser.add_argument("--api-key", default=None, metavar="KEY", help="the only key accepted (default: any)")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="random seed for prices (default: a different walk each run)")
    parser.add_argument("--ping-interval", type=float, default=None, metavar="SECONDS",
                        help="send WebSocket pings this often and drop clients that do not answer "
                             "(default: the venue's habit)")
    parser.add_argument("--fault", action="append", default=[], metavar="NAME[:SYMBOL][:VALUE]",
                        help="a fault active from the start, e.g. stall:AAPL, skew:BTCUSDT:1.02, garbage "
                             "(repeatable; the faults are listed below; default: none)")
    parser.add_argument("--scenario", action="append", default=[], metavar="NAME[:ACCOUNT]",
                        help="a scripted scenario applied once listening, for one account or every "
                             "bot, e.g. kill_switch (repeatable; each venue's are listed below; default: none)")


def main(args: argparse.Namespace) -> int:
    try:
        for spec in args.fault:
            parse_fault(spec)
        from exporter.simulator import base

        dialect = base.get(args.venue)
        for spec in args.scenario:
            dialect.check_scenario(spec.partition(":")[0])
    except ValueError as exc:
        print(f"feedwatch simulate: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    from exporter.simulator.control import ControlServer
    from exporter.simulator.server import Simulator

    stopping = stop_event()
    symbols = tuple(s.strip() for s in args.symbols.split(",") if s.strip())
    sim = Simulator(args.venue, symbols, rate=args.rate, api_key=args.api_key, host=args.host,
                    port=args.port, seed=args.seed, faults=args.fault, ping_interval=args.ping_interval)
    control = ControlServer(sim, args.host, args.control_port)
    try:
        await sim.start()
        await control.start()
    except OSError as exc:
        print(f"feedwatch simulate: cannot listen: {exc}", file=sys.stderr)
        await sim.stop()
        return 1
    for spec in args.scenario:
        name, _, account = spec.partition(":")
        sim.dialect_class.scenario(sim, name, {"account": account} if account else {})
    print(f"ws: {sim.ws_url}", flush=True)
    print(f"control: {control.url}", flush=True)
    await stopping.wait()
    await control.stop()
    await sim.stop()
    return 0
