"""``feedwatch demo``: see feedwatch work in under a minute, on one machine, offline.

Starts a Polygon-dialect simulator and the exporter in this process with compressed thresholds
(``examples/demo.yml``: degraded 5 s, stale 10 s, critical 30 s), then plays a scenario: a symbol
stalls, the feed drops and reconnects, the symbol resumes. It prints the URLs to open and a
one-line live summary (in place on a terminal)::

    stocks up | healthy 4 degraded 1 stale 0 critical 0 | reconnects 1

State changes are logged as they happen. Ctrl-C (or ``--duration``) stops everything cleanly.

The demo is a list of *components* (``COMPONENTS``), started in order and stopped in reverse.
Each is a factory ``(DemoContext) -> Component | None`` (None: cannot run here, e.g. a binary
is missing; it says why itself). A component adds its URLs to ``ctx.urls`` and may read what
earlier ones published in the context (``ctx.sim``, ``ctx.exporter``). More parts of the stack
(Prometheus, Alertmanager) join the demo by adding their factory to the list, before the
scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, TextIO

from exporter import resources
from exporter.alerting.stack import AlertingDemo, StackError
from exporter.commands import common_flags, stop_event
from exporter.config import ConfigError
from exporter.simulator import trading as trading_demo
from exporter.simulator.timeline import Step, Timeline

log = logging.getLogger(__name__)

DEFAULT_CONFIG = resources.path(resources.EXAMPLES, "demo.yml")
DEMO_API_KEY = "demo-key"


@dataclass
class DemoContext:
    """What the components share."""

    args: argparse.Namespace
    out: TextIO
    stopping: asyncio.Event
    urls: list[tuple[str, str]] = field(default_factory=list)
    sim: Any = None          # exporter.simulator.server.Simulator
    control: Any = None      # exporter.simulator.control.ControlServer
    config: Any = None       # exporter.config.Config
    exporter: Any = None     # exporter.commands.run.Exporter
    extras: dict[str, Any] = field(default_factory=dict)  # for components added later

    def say(self, text: str) -> None:
        summary = self.extras.get("summary")
        if summary is not None:
            summary.clear_line()
        print(text, file=self.out, flush=True)


class Component(Protocol):
    name: str

    async def start(self, ctx: DemoContext) -> None: ...

    async def stop(self) -> None: ...


# --- the components ---------------------------------------------------------------------------

class SimulatorComponent:
    name = "simulator"

    def __init__(self, ctx: DemoContext) -> None:
        self.sim = None
        self.control = None

    async def start(self, ctx: DemoContext) -> None:
        from exporter.simulator.control import ControlServer
        from exporter.simulator.server import Simulator

        self.sim = ctx.sim = Simulator("polygon", (), rate=ctx.args.rate, api_key=DEMO_API_KEY)
        await self.sim.start()
        self.control = ctx.control = ControlServer(self.sim)
        await self.control.start()
        ctx.urls.append(("simulator (ws)", self.sim.ws_url))
        ctx.urls.append(("simulator control", f"{self.control.url}/state"))

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.stop()
        if self.sim is not None:
            await self.sim.stop()


class ExporterComponent:
    name = "exporter"

    def __init__(self, ctx: DemoContext) -> None:
        self.exporter = None

    async def start(self, ctx: DemoContext) -> None:
        from exporter.commands.run import Exporter, load_config

        environ = {**os.environ, "DEMO_FEED_URL": ctx.sim.ws_url, **ctx.extras.get("environ", {})}
        ctx.config = load_config(ctx.args, environ)
        self.exporter = ctx.exporter = Exporter(ctx.config)
        await self.exporter.start()
        base = self.exporter.base_url
        ctx.urls.append(("exporter", f"{base}/"))
        ctx.urls.append(("metrics", f"{base}{ctx.config.telemetry_path}"))
        ctx.urls.append(("status page", f"{base}/status"))
        ctx.urls.append(("status API", f"{base}/api/v1/status"))

    async def stop(self) -> None:
        if self.exporter is not None:
            await self.exporter.stop()


# (seconds after start, fault, symbol, what the viewer should see)
SCENARIO: list[tuple[float, str, str | None, str]] = [
    (3.0, "stall", "AAPL", "AAPL stops updating: degraded after 5 s, stale after 10 s"),
    (17.0, "drop", None, "the feed's connection drops: feedwatch reconnects and resubscribes"),
    (22.0, "resume", None, "AAPL trades again: back to healthy"),
    (30.0, "garbage", None, "the venue sends undecodable frames: counted as decode errors, survived"),
    (34.0, "resume", None, "clean frames again"),
]
SCENARIO_CYCLE = 45.0  # then it plays again


class ScenarioComponent(Timeline):
    """Plays ``SCENARIO``'s faults on the demo's simulator, again every ``SCENARIO_CYCLE`` seconds."""

    name = "scenario"
    cycle = SCENARIO_CYCLE

    def steps(self, ctx: DemoContext) -> list[Step]:
        return [(at, description, functools.partial(ctx.sim.fault, fault, symbol))
                for at, fault, symbol, description in SCENARIO]


class SummaryComponent:
    """The one-line live summary: rewritten in place on a terminal, printed on change otherwise."""

    name = "summary"

    def __init__(self, ctx: DemoContext) -> None:
        self.ctx = ctx
        self.tty = ctx.out.isatty()
        self.task: asyncio.Task[None] | None = None
        self.last = ""
        self.shown = False

    async def start(self, ctx: DemoContext) -> None:
        ctx.extras["summary"] = self
        self.task = asyncio.create_task(self._refresh(), name="demo-summary")

    def line(self) -> str:
        from exporter.book import STATE_NAMES, STATES

        service = self.ctx.exporter.service
        now = service.clock.time()
        parts = []
        for name, feed in service.book.feeds.items():
            counts = feed.state_counts(now)
            states = " ".join(f"{STATE_NAMES[s]} {counts[s]}" for s in STATES if s != -1 or counts[s])
            parts.append(f"{name} {'up' if feed.is_up() else 'DOWN'} | {states} | "
                         f"reconnects {feed.reconnect_attempts} | decode errors {feed.errors.get('decode', 0)}")
        return "  ||  ".join(parts)

    def clear_line(self) -> None:
        if self.tty and self.shown:
            self.ctx.out.write("\r\x1b[K")
            self.ctx.out.flush()
            self.shown = False

    async def _refresh(self) -> None:
        out = self.ctx.out
        await asyncio.sleep(1.0)  # after the URLs are printed
        while True:
            line = self.line()
            if self.tty:
                out.write("\r\x1b[K" + line + time.strftime("  %H:%M:%S"))
                out.flush()
                self.shown = True
            elif line != self.last:
                print(line, file=out, flush=True)
            self.last = line
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.clear_line()


# Started in this order, stopped in reverse. Parts of the stack that can join the demo (e.g.
# Prometheus and Alertmanager when their binaries are installed) add their factory here,
# after the exporter and before the scenario.
COMPONENTS: list[Callable[[DemoContext], Component | None]] = [
    SimulatorComponent,
    trading_demo.DemoBot,               # the trading bot's event stream (sets DEMO_BOT_URL)
    ExporterComponent,
    AlertingDemo.factory,               # Prometheus + Alertmanager, notifications printed (when installed)
    ScenarioComponent,
    trading_demo.DemoTradingScenario,   # walks the bot through every Trading* alert
    SummaryComponent,
]


# --- the command ------------------------------------------------------------------------------

def register(subparsers: argparse._SubParsersAction) -> None:
    from exporter.commands.run import add_web_flags

    parser = subparsers.add_parser(
        "demo", parents=[common_flags()], help="simulator + exporter with a scripted scenario",
        description="Run a simulated venue and the exporter with compressed thresholds, and watch "
                    "symbols go degraded, stale and healthy again within a minute.")
    add_web_flags(parser, listen_default="127.0.0.1:10119")
    parser.add_argument("--config", dest="config_file", default=str(DEFAULT_CONFIG), metavar="FILE",
                        help=f"demo configuration (default: {DEFAULT_CONFIG})")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop after this many seconds (default: run until Ctrl-C)")
    parser.add_argument("--rate", type=float, default=5.0, metavar="PER_SECOND",
                        help="simulated updates per second per symbol (default: 5)")
    parser.add_argument("--rules", dest="rules_dir", default=None, metavar="DIR",
                        help="directory of Prometheus rule files (*.yml) the demo's Prometheus loads, "
                             "their for: compressed like the bundled ones (default: the bundled "
                             "prometheus/rules)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    return asyncio.run(run_demo(args))


class _LineAwareHandler(logging.Handler):
    """Clears the live summary line before a log record so the two do not interleave."""

    def __init__(self, inner: logging.Handler, ctx: DemoContext) -> None:
        super().__init__(inner.level)
        self.inner = inner
        self.ctx = ctx

    def emit(self, record: logging.LogRecord) -> None:
        summary = self.ctx.extras.get("summary")
        if summary is not None:
            summary.clear_line()
        self.inner.handle(record)


async def run_demo(args: argparse.Namespace, out: TextIO | None = None) -> int:
    ctx = DemoContext(args=args, out=out or sys.stdout, stopping=stop_event())
    root = logging.getLogger()
    wrapped = [(h, _LineAwareHandler(h, ctx)) for h in list(root.handlers)]
    for inner, outer in wrapped:
        root.removeHandler(inner)
        root.addHandler(outer)
    started: list[Component] = []
    status = 0
    try:
        for factory in COMPONENTS:
            component = factory(ctx)
            if component is None:
                continue
            # Stopped even when its start fails half-way: a started Alertmanager, a temp dir.
            started.append(component)
            await component.start(ctx)
        ctx.say("feedwatch demo is running:")
        for label, url in ctx.urls:
            ctx.say(f"  {label:<18} {url}")
        ctx.say("Ctrl-C stops everything.")
        try:
            await asyncio.wait_for(ctx.stopping.wait(), args.duration)
        except asyncio.TimeoutError:
            pass
    except ConfigError as exc:
        for error in exc.errors:
            print(f"feedwatch demo: {error}", file=sys.stderr)
        status = 1
    except (OSError, ValueError, RuntimeError) as exc:  # StackError (a RuntimeError): a binary failed to start
        print(f"feedwatch demo: {exc}", file=sys.stderr)
        status = 1
    finally:
        for component in reversed(started):
            try:
                await component.stop()
            except Exception:
                log.exception("demo: stopping %s failed", component.name)
        for inner, outer in wrapped:
            root.removeHandler(outer)
            root.addHandler(inner)
    if status == 0:
        ctx.say("demo stopped")
    return status
