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

A frame recording (an incident's, from the journal, or a continuous one) is played back with its
original timing, ``--speed`` times faster; the venue dialect comes from the recording::

    feedwatch simulate --replay recordings/stocks-20240501T140307-3f2a9c1b7d4e.fwrec.gz --speed 2

Point a feed's ``url`` at the printed ``ws:`` address: the dialect answers auth and subscriptions
as usual, then every connection gets the recorded frames from the start; after the last one the
socket stays open and silent. ``GET /state`` on the control URL shows the replay's progress.

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
    parser.add_argument("--venue", default=None, choices=dialect_names(),
                        help="dialect to speak (default: polygon); with --replay, the recording's")
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
    parser.add_argument("--replay", metavar="FILE", default=None,
                        help="play a frame recording (.fwrec.gz) with its original timing instead of random "
                             "ticks (default: none, random ticks)")
    parser.add_argument("--speed", type=float, default=1.0, metavar="X",
                        help="with --replay: play this many times faster (default: 1, real time)")
    parser.add_argument("--scenario", action="append", default=[], metavar="NAME[:ACCOUNT]",
                        help="a scripted scenario applied once listening, for one account or every "
                             "bot, e.g. kill_switch (repeatable; each venue's are listed below; default: none)")


def main(args: argparse.Namespace) -> int:
    args.frames = None
    try:
        if args.replay is not None:
            from exporter.feeds.recorder import RecordingError, read_recording

            if args.speed <= 0:
                raise ValueError(f"--speed must be positive, got {args.speed}")
            try:
                header, args.frames = read_recording(args.replay)
            except RecordingError as exc:
                raise ValueError(str(exc)) from None
            args.venue = args.venue or header.get("kind") or "polygon"
            span = (args.frames[-1][0] - args.frames[0][0]) if args.frames else 0.0
            args.replay_summary = (f"replay: {args.replay} ({len(args.frames)} frames of {header.get('feed')} over "
                                   f"{span:.1f}s, speed {args.speed:g})")
        args.venue = args.venue or "polygon"
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
                    port=args.port, seed=args.seed, faults=args.fault, ping_interval=args.ping_interval,
                    replay=args.frames, replay_speed=args.speed)
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
    if args.frames is not None:
        print(args.replay_summary, flush=True)
    await stopping.wait()
    await control.stop()
    await sim.stop()
    return 0
