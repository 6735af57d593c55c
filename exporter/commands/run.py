"""``feedwatch run -c FILE``: the exporter.

Wiring: config -> ``Service`` (book, feed runners, sweeper, watchlist) -> ``web.app.create_app``
-> ``web.app.serve`` (aiohttp; TLS and basic auth from ``--web.config.file``). SIGINT or
SIGTERM stops it cleanly: the HTTP server first (no scrape sees a half-stopped book), then the
runners (sockets closed with reason ``shutdown``); the exit status is 0. SIGHUP (``systemctl
reload``) and ``POST /-/reload`` re-read the configuration file and apply it without a restart
(``exporter/reload.py``); the command-line flags still override it.

Flags follow the Prometheus exporter conventions::

    --config.file, -c          the YAML configuration (docs/configuration.md)
    --web.listen-address       overrides the config's `listen` (default ":10119")
    --web.telemetry-path       overrides the config's `telemetry_path` (default "/metrics")
    --web.config.file          exporter-toolkit web config: TLS, basic auth, headers, rate limit
                               (exporter/web/webconfig.py); re-read while running, so certificates
                               rotate without a restart (exporter/web/webaccess.py)
    --shard INDEX/COUNT        overrides the config's `shard`: watch this replica's share only
                               (exporter/sharding.py, docs/scaling.md)
    --reset-trading-state      replace a missing or damaged trading state file with an empty one
                               (moved aside, never deleted); a sound file is kept
    --log.level, --log.format  see exporter/commands/__init__.py

A trading state file that cannot be used (missing while its backup exists, truncated, corrupt)
stops the start with exit status 1 and one log line naming the file and the ways to recover
(exporter/trading/store.py, docs/runbook.md#trading-state-file). The soft open files limit is
raised to the hard one at start (exporter/web/guard.py). Once started, the garbage collector is
tuned for a long-running process: start-up objects frozen, young passes rarer
(exporter/gctune.py; logged once with what was set).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from typing import Callable

from aiohttp import web

from exporter import fill, gctune
from exporter.commands import common_flags, report_problems, stop_event
from exporter.commands.helptext import HelpFormatter, config_epilog
from exporter.config import Config, ConfigError, listen_address, load_file
from exporter.reload import Reloader, restart_only
from exporter.sharding import Shard

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", parents=[common_flags()], help="run the exporter",
                                   description="Run the exporter: watch the configured feeds, serve /metrics.",
                                   formatter_class=HelpFormatter, epilog=config_epilog)
    add_web_flags(parser)
    parser.add_argument("-c", "--config.file", dest="config_file", required=True, metavar="FILE",
                        help="the YAML configuration file (required; docs/configuration.md)")
    parser.add_argument("--shard", dest="shard", default=None, metavar="INDEX/COUNT",
                        help="run as shard INDEX of COUNT replicas (0-based, e.g. 1/3): watch only the symbols "
                             "this shard owns (default: the config's shard, '0/1'; docs/scaling.md)")
    parser.add_argument("--reset-trading-state", dest="reset_trading_state", action="store_true",
                        help="if the trading state file is missing or damaged, move it aside and start with "
                             "empty trading state instead of refusing to start (a sound file is kept)")
    parser.set_defaults(func=main)


def add_web_flags(parser: argparse.ArgumentParser, listen_default: str | None = None) -> None:
    """The exporter's HTTP flags (shared with the demo)."""
    web_group = parser.add_argument_group("web")
    web_group.add_argument("--web.listen-address", dest="listen", default=listen_default, metavar="HOST:PORT",
                           help="address to listen on, host:port (default: the config's listen, ':10119')")
    web_group.add_argument("--web.telemetry-path", dest="telemetry_path", default=None, metavar="PATH",
                           help="path under which to expose metrics (default: the config's telemetry_path, '/metrics')")
    web_group.add_argument("--web.config.file", dest="web_config_file", default=None, metavar="FILE",
                           help="exporter-toolkit web configuration (TLS, basic auth; default: none)")


def apply_web_flags(config: Config, args: argparse.Namespace) -> Config:
    changes = {}
    if args.listen:
        listen_address(args.listen)  # raises ValueError with the address in the message
        changes["listen"] = args.listen
    if args.telemetry_path:
        if not args.telemetry_path.startswith("/"):
            raise ValueError(f"--web.telemetry-path must start with '/', got {args.telemetry_path!r}")
        changes["telemetry_path"] = args.telemetry_path
    shard = shard_flag(args)
    if shard:
        changes["shard"] = shard
    return dataclasses.replace(config, **changes) if changes else config


def shard_flag(args: argparse.Namespace) -> str | None:
    """``--shard``, checked (ValueError naming the flag); None when not given."""
    shard = getattr(args, "shard", None)
    if not shard:
        return None
    try:
        Shard.parse(shard)
    except ValueError as exc:
        raise ValueError(f"--shard: {exc}") from None
    return shard.strip()


def load_config(args: argparse.Namespace, environ=None) -> Config:
    """The file with the command line's overrides; the symbol caps count the --shard's share."""
    return apply_web_flags(load_file(args.config_file, environ, shard=shard_flag(args)), args)


class _EarlyHangup:
    """SIGHUP before the event loop handles it (while the file is read, the app starts): its
    default action would kill the process, so it is noted here and honoured once running."""

    def __init__(self) -> None:
        self.seen = False
        signal.signal(signal.SIGHUP, self._note)

    def _note(self, signum: int, frame: object) -> None:
        self.seen = True


def main(args: argparse.Namespace) -> int:
    early = _EarlyHangup()
    try:
        config = load_config(args)
        web_access = load_web_config(args.web_config_file)
    except ConfigError as exc:
        report_problems(f"feedwatch: invalid configuration ({len(exc.errors)} problem(s)):", exc.errors)
        return 1
    except ValueError as exc:
        print(f"feedwatch: {exc}", file=sys.stderr)
        return 1
    load = lambda: load_config(args)  # noqa: E731 (what a reload re-reads)
    return asyncio.run(serve(config, web_access, load=load, source=args.config_file, early=early,
                             reset_trading_state=args.reset_trading_state))


def load_web_config(path: str | None):
    """The web config file, read and checked (ConfigError), as a ``WebAccess`` that re-reads it."""
    if not path:
        return None
    from exporter.web.webaccess import WebAccess

    return WebAccess(path)


class Exporter:
    """The service plus its HTTP server; ``start``/``stop`` (used by ``run`` and ``demo``).

    With ``load`` (a function that reads the configuration file again) it also reloads:
    ``await exporter.reload(trigger)``, SIGHUP and ``POST /-/reload`` all end up there.
    """

    def __init__(self, config: Config, web_access=None, clock=None, *, reset_trading_state: bool = False,
                 load: Callable[[], Config] | None = None, source: str = "the configuration file") -> None:
        from exporter.clock import SystemClock
        from exporter.service import Service

        self.shard = Shard.parse(config.shard)
        self.web_access = web_access   # a web.webaccess.WebAccess, or None
        self.reset_trading_state = reset_trading_state
        self.clock = clock or SystemClock()
        self.service = Service(config, self.clock, shard=self.shard)
        self.config = self.service.config  # this shard's share of it
        self.reloader = Reloader(load, self.apply, self.clock, source) if load is not None else None
        self.port = 0
        self.scheme = "https" if web_access is not None and web_access.ssl_context is not None else "http"
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._started = asyncio.Event()

    @property
    def base_url(self) -> str:
        host, _ = listen_address(self.config.listen)
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"{self.scheme}://{host}:{self.port}"

    async def start(self) -> None:
        from prometheus_client import REGISTRY

        from exporter.trading.tracker import attach
        from exporter.web.app import create_app, serve
        from exporter.web.guard import raise_open_files_limit

        raise_open_files_limit()
        try:
            # The trading state first: a damaged file stops the start before anything listens.
            attach(self.config, self.clock.time(), reset_state=self.reset_trading_state)
            reloader = self.reloader
            app = self.app = create_app(
                self.service.book, self.config, self.clock, registry=REGISTRY, service=self.service,
                renderers=(self.shard.render, *((reloader.render,) if reloader is not None else ())),
                reload=self.reload if reloader is not None else None)
            ssl_context = None
            if self.web_access is not None:
                from exporter.web.webaccess import install

                install(app, self.web_access)
                ssl_context = self.web_access.ssl_context
            self._runner, self.port = await serve(app, self.config.listen, ssl_context)
            # Feeds connect only once the port is ours: a taken port fails fast, venue untouched.
            await self.service.start()
        except BaseException:
            await self.stop()
            raise
        self._started.set()
        log.info("serving %s%s", self.base_url, self.config.telemetry_path,
                 extra={"listen": self.config.listen, "tls": self.scheme == "https"})

    async def reload(self, trigger: str) -> list[str]:
        """Re-read the configuration file and apply it; the problems if it was not applied."""
        if self.reloader is None:
            return ["this exporter was started without a configuration file to re-read"]
        await self._started.wait()  # a SIGHUP during start-up waits for the start to finish
        problems = await self.reloader.reload(trigger)
        if self.app is not None:
            from exporter.web.app import notify_reload

            notify_reload(self.app, not problems, problems, trigger)  # the incident journal records it
        return problems

    async def apply(self, config: Config) -> list[str]:
        """Put a loaded configuration into effect, whole, or return why not (nothing changed).

        Sharded, the file is cut to this replica's share exactly as at the start (the shard
        itself is one of the things only a restart changes).
        """
        problems = restart_only(self.config, config) + self.service.check(config)
        if problems:
            return problems
        await self.service.apply(config)
        self.config = self.service.config  # this shard's share of it
        if self.app is not None:
            from exporter.web.app import RELOAD_HOOKS

            for hook in self.app[RELOAD_HOOKS]:
                hook(self.config)
        return []

    async def stop(self) -> None:
        from exporter.trading.tracker import detach

        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.service.stop()
        detach(self.config)  # closes the state file (and writes its backup) if start opened it


async def serve(config: Config, web_access=None, *, reset_trading_state: bool = False,
                load: Callable[[], Config] | None = None, source: str = "the configuration file",
                early: _EarlyHangup | None = None) -> int:
    from exporter.trading.store import StateFileError

    stopping = stop_event()
    try:
        exporter = Exporter(config, web_access, reset_trading_state=reset_trading_state, load=load, source=source)
    except ValueError as exc:  # a setting that depends on several sections (tick_sink.path: nowhere to write)
        log.error("refusing to start: %s", exc)
        return 1
    reloads: set[asyncio.Task[list[str]]] = set()

    def reload_on_sighup() -> None:
        log.info("SIGHUP: reloading %s", source, extra={"trigger": "SIGHUP", "file": source})
        task = asyncio.create_task(exporter.reload("SIGHUP"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop = asyncio.get_running_loop()
    if load is not None:
        loop.add_signal_handler(signal.SIGHUP, reload_on_sighup)
        if early is not None and early.seen:  # the file may have changed after it was read
            reload_on_sighup()
    try:
        await exporter.start()
    except StateFileError as exc:
        log.error("refusing to start: %s", exc, extra={"file": exc.path})
        return 1
    except OSError as exc:  # the port is taken, the certificate unreadable, ...
        log.error("cannot serve on %s: %s", config.listen, exc, extra={"listen": config.listen})
        return 1
    # Started: what is alive now lives as long as the process; the collector stops rescanning it
    # and runs its young passes less often (exporter/gctune.py, measured there).
    tuned = gctune.apply()
    log.info("garbage collector tuned: %d start-up objects frozen, thresholds %s", tuned["gc_frozen"],
             tuned["gc_thresholds"], extra=tuned)
    if fill.ACCELERATED:
        log.info("/metrics formatting: compiled (exporter._fill)", extra={"formatter": "c"})
    else:   # the same text, at more CPU per scrape of many symbols (docs/deployment.md)
        log.info("/metrics formatting: Python's % (exporter._fill was not built: no C compiler when the "
                 "package was installed); the same text, at more CPU per scrape", extra={"formatter": "python"})
    await stopping.wait()
    if load is not None:
        loop.remove_signal_handler(signal.SIGHUP)
    if reloads:  # let a reload in flight finish rather than leave a half-applied configuration
        await asyncio.gather(*reloads, return_exceptions=True)
    log.info("shutting down")
    await exporter.stop()
    log.info("stopped")
    return 0
