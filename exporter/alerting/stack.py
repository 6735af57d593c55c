"""Run Prometheus and Alertmanager beside feedwatch on 127.0.0.1, from the committed configs.

Used by ``feedwatch demo`` (when the binaries are installed) and by the end-to-end tests
(``tests/integration/stack.py``). Nothing here invents configuration: the running copies are
*derived* from ``prometheus/prometheus.yml``, ``prometheus/rules/*.yml`` and
``alertmanager/alertmanager.yml`` by substituting only

- addresses: the exporter, Alertmanager and Prometheus targets (ports picked at run time), the
  rule and template paths, and the webhook the notifications go to (set through
  ``feedwatch alertmanager-config``'s own environment variable, FEEDWATCH_WEBHOOK_URL);
- intervals: scrape and evaluation every second (every job's and every rule group's own
  interval too), unless the caller keeps the committed ones (``interval=None``: the
  real-settings measurements);
- time compression by ``time_scale`` (30: 1m -> 2s) of the rules' ``for:`` durations and of
  Alertmanager's group_wait and group_interval (30s -> 1s, 1m -> 2s). The rule
  expressions stay byte-for-byte identical, so thresholds inside them (FeedSilent's 120 s, the
  5-minute rate windows) are *not* compressed; the exporter's own thresholds are compressed in
  its config instead. promtool tests cover the real ``for:`` values. A ``for:`` marked
  ``# uncompressed`` keeps its real value: it guards against something the time scale does not
  speed up (FeedwatchExporterDown's absent() variant outlasts Prometheus's own start-up, which
  takes the same few seconds here as anywhere).

Every process started here dies with the process that started it, even on SIGKILL
(``PR_SET_PDEATHSIG``: Linux sends the child SIGTERM when its parent goes), so a killed demo or
test run leaves no Prometheus or Alertmanager behind.

``WebhookReceiver`` is an aiohttp server that records every notification (and can print each as
it arrives, which is what the demo shows).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml
from aiohttp import web

from exporter import resources
from exporter.alerting import receivers

log = logging.getLogger(__name__)

# The committed configs as shipped (exporter/resources: the repository's folders, or the wheel's copies).
PROMETHEUS_DIR = resources.path(resources.PROMETHEUS)
ALERTMANAGER_CONFIG = receivers.BASE_CONFIG

PROMETHEUS_BINARIES = ("prometheus",)
# Debian installs Alertmanager as prometheus-alertmanager; upstream tarballs call it alertmanager.
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")
INSTALL_HINT = "apt-get install prometheus prometheus-alertmanager"


def find_binary(names: tuple[str, ...]) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port(preferred: int = 0) -> int:
    """``preferred`` if it is free on 127.0.0.1, else any free port."""
    for port in ((preferred, 0) if preferred else (0,)):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise OSError("no free port on 127.0.0.1")


# --- deriving the configs -----------------------------------------------------------------------

_PROM_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_PROM_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def prom_seconds(text: str) -> float:
    """Seconds in a Prometheus duration (``1m30s``, ``500ms``)."""
    parts = _PROM_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _PROM_UNITS[u] for n, u in parts)


def prom_duration(seconds: float) -> str:
    millis = int(round(seconds * 1000))
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


_FOR_LINE = re.compile(r"^(\s*for:\s*)(\S+)(\s*(?:#.*)?)$", re.M)
_GROUP_INTERVAL_LINE = re.compile(r"^(\s*interval:\s*)(\S+)(\s*(?:#.*)?)$", re.M)
UNCOMPRESSED = "# uncompressed"


def compress_for(rules_text: str, time_scale: float) -> str:
    """The rule file with every ``for:`` divided by ``time_scale`` (except those marked
    ``# uncompressed``); nothing else changes."""
    def shorten(match: re.Match[str]) -> str:
        if UNCOMPRESSED in match.group(3):
            return match.group(0)
        return match.group(1) + prom_duration(prom_seconds(match.group(2)) / time_scale) + match.group(3)

    return _FOR_LINE.sub(shorten, rules_text)


def set_group_intervals(rules_text: str, interval: str) -> str:
    """The rule file with every group's own ``interval:`` set to ``interval``."""
    return _GROUP_INTERVAL_LINE.sub(lambda m: m.group(1) + interval + m.group(3), rules_text)


def derive_rules(out_dir: Path, time_scale: float, rules_dir: Path = PROMETHEUS_DIR / "rules",
                 interval: str | None = "1s") -> Path:
    """Copy every rule file of ``rules_dir`` into ``out_dir`` with compressed ``for:`` and, unless
    ``interval`` is None, every group evaluated at ``interval``; returns out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(rules_dir.glob("*.yml")):
        text = compress_for(path.read_text(), time_scale)
        (out_dir / path.name).write_text(text if interval is None else set_group_intervals(text, interval))
    return out_dir


def derive_prometheus_config(*, exporter: str, alertmanager: str, prometheus: str, rules_dir: Path,
                             interval: str | None = "1s",
                             base: Path = PROMETHEUS_DIR / "prometheus.yml") -> dict[str, Any]:
    """prometheus.yml with targets, rule path and (unless ``interval`` is None, which keeps the
    committed ones) every scrape and evaluation interval substituted (host:port targets)."""
    config = yaml.safe_load(base.read_text())
    if interval is not None:
        config["global"].update(scrape_interval=interval, evaluation_interval=interval, scrape_timeout=interval)
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    config["rule_files"] = [str(rules_dir / "*.yml")]
    targets = {"feedwatch": exporter, "alertmanager": alertmanager, "prometheus": prometheus}
    for job in config["scrape_configs"]:
        if job["job_name"] in targets:
            job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        if interval is not None:
            job.pop("scrape_interval", None)
            job.pop("scrape_timeout", None)
    return config


def speed_up_routes(config: dict[str, Any], time_scale: float) -> dict[str, Any]:
    """Divide group_wait and group_interval by ``time_scale`` on every route, in place.

    The same factor as the rules' for:, so the ratios that matter hold: a feed's outage still
    reaches Alertmanager well before its symbols' alerts, and a group still waits long enough
    after an inhibition lifts for symbols that recover with their feed to resolve unnotified.
    repeat_interval is left alone (tests and demos never run long enough to see a repeat,
    except Watchdog's, which stays 5m).
    """
    def visit(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route:
                route[key] = prom_duration(prom_seconds(str(route[key])) / time_scale)
        for child in route.get("routes", []) or []:
            visit(child)

    visit(config["route"])
    return config


def derive_alertmanager_config(webhook_url: str, time_scale: float,
                               environ: Mapping[str, str] | None = None,
                               base: Path = ALERTMANAGER_CONFIG) -> dict[str, Any]:
    """The committed config rendered with a webhook channel (as a user would), then sped up.

    The closed-market mute matches the alerts' ``market`` label (from the exporter's
    ``feedwatch_feed_info``), so a simulated always-open feed named "stocks" still alerts at night.
    """
    env = {"FEEDWATCH_WEBHOOK_URL": webhook_url, **(environ or {})}
    config, _ = receivers.render(base.read_text(), env, base.parent)
    return speed_up_routes(config, time_scale)


# --- processes ----------------------------------------------------------------------------------

@dataclass
class Process:
    """A started binary, its log file and its HTTP base URL."""

    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_errors(self) -> str:
        """The log's error lines (both binaries log logfmt), as ``msg: err``; else its tail."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        errors = []
        for line in lines:
            if "level=error" not in line:
                continue
            fields = dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line))
            text = ": ".join(json.loads(v) if v.startswith('"') else v
                             for v in (fields.get("msg"), fields.get("err")) if v)
            errors.append("  " + (text or line))
        return "\n".join(errors) or self.log_tail()

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)


class StackError(RuntimeError):
    """Prometheus or Alertmanager could not be started (the message says why, with its log)."""


# prctl(2) from the C library, resolved once here: the child calls it between fork and exec,
# where nothing that may take a lock (loading a library, importing) is safe.
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGTERM when this process dies, however it
    dies (SIGKILL included), or None where that cannot be promised.

    Linux ties the parent-death signal to the *thread* that forked, not the process: a child
    spawned from a worker thread would be killed when that thread ends. So it is only set for
    spawns from the main thread (the demo and the tests spawn from there); elsewhere the caller's
    own stop() is the only cleanup.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()

    def preexec() -> None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nobody would send the signal
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _spawn(name: str, args: list[str], url: str, log_path: Path, env: Mapping[str, str] | None = None) -> Process:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as out:
        popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 preexec_fn=die_with_parent(), env={**os.environ, **env} if env else None)
    return Process(name, popen, url, log_path)


def start_prometheus(config: dict[str, Any], workdir: Path, port: int, extra_args: tuple[str, ...] = (),
                     env: Mapping[str, str] | None = None) -> Process:
    """Prometheus with ``config`` written to workdir; ``env`` adds to its environment."""
    binary = find_binary(PROMETHEUS_BINARIES)
    if binary is None:
        raise FileNotFoundError(f"prometheus is not installed ({INSTALL_HINT})")
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    url = f"http://127.0.0.1:{port}"
    return _spawn("prometheus", [
        binary, f"--config.file={path}", f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url={url}",
        "--storage.tsdb.retention.time=1d",
        # Alerts that fire before Prometheus has discovered Alertmanager (its first seconds) are
        # dropped until the next resend, 1 minute by default; 2s keeps the demo and tests prompt.
        # Firing alerts stay valid for 4 resends (8s) in Alertmanager, ample for a 1s evaluation.
        "--rules.alert.resend-delay=2s",
        *extra_args,
    ], url, workdir / "prometheus.log", env)


def start_alertmanager(config: dict[str, Any] | Path, workdir: Path, port: int,
                       extra_args: tuple[str, ...] = (), cluster: tuple[str, ...] | None = None) -> Process:
    """Alertmanager with ``config`` (a parsed config, written to workdir, or a file used as is).

    ``cluster``: the ``--cluster.*`` flags of a member of an HA cluster; None runs it alone.
    """
    binary = find_binary(ALERTMANAGER_BINARIES)
    if binary is None:
        raise FileNotFoundError(f"prometheus-alertmanager is not installed ({INSTALL_HINT})")
    workdir.mkdir(parents=True, exist_ok=True)
    if isinstance(config, Path):
        path = config
    else:
        path = workdir / "alertmanager.yml"
        receivers.write(path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    url = f"http://127.0.0.1:{port}"
    return _spawn("alertmanager", [
        binary, f"--config.file={path}", f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url={url}",
        # Alone, no clustering: it would bind 0.0.0.0:9094 and gossip with nobody.
        *(cluster if cluster is not None else ("--cluster.listen-address=",)),
        *extra_args,
    ], url, workdir / "alertmanager.log")


def is_ready(process: Process) -> bool:
    """True once the process answers /-/ready; raises if it exited."""
    import urllib.error
    import urllib.request

    if process.popen.poll() is not None:
        raise StackError(f"{process.name} exited with status {process.popen.returncode} at start:\n"
                         f"{process.log_errors()}")
    try:
        with urllib.request.urlopen(f"{process.url}/-/ready", timeout=1) as resp:
            if resp.status != 200:
                return False
        return _answers_as(process)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _answers_as(process: Process) -> bool:
    """Whether the Prometheus answering at the process's URL runs its ``--config.file``.

    A port chosen free (the demo prefers 9090) can be taken by another Prometheus on the machine
    while ours fails at start; its "ready" is not ours. Alertmanager's API names no config file:
    it is taken at its word.
    """
    import urllib.request

    args = process.popen.args if isinstance(process.popen.args, (list, tuple)) else []
    ours = next((str(a).split("=", 1)[1] for a in args if str(a).startswith("--config.file=")), None)
    if process.name != "prometheus" or ours is None:
        return True
    with urllib.request.urlopen(f"{process.url}/api/v1/status/flags", timeout=1) as resp:
        return json.load(resp).get("data", {}).get("config.file") == ours


# --- the webhook receiver -----------------------------------------------------------------------

Notification = dict[str, Any]


class WebhookReceiver:
    """Records Alertmanager webhook notifications (POST /alerts) on 127.0.0.1.

    ``received`` holds every notification's JSON in arrival order (Alertmanager's webhook
    payload: ``status``, ``receiver``, ``groupLabels``, ``alerts`` with ``labels``,
    ``annotations``, ``startsAt``...), each with ``_received_at`` (time.time()) added.
    ``on_notification`` is called with each as it arrives.
    """

    def __init__(self, on_notification: Callable[[Notification], None] | None = None) -> None:
        self.on_notification = on_notification
        self.received: list[Notification] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.Response(status=400, text="expected JSON")
        body["_received_at"] = time.time()
        self.received.append(body)
        if self.on_notification is not None:
            try:
                self.on_notification(body)
            except Exception:  # a printing problem must not make Alertmanager retry
                log.exception("webhook: on_notification failed")
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/alerts", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def notification_alerts(received: list[Notification]) -> list[dict[str, Any]]:
    """Every alert in every notification, flattened, each with its notification's receiver and time."""
    out = []
    for note in received:
        for alert in note.get("alerts", []):
            out.append({**alert, "receiver": note.get("receiver"), "_received_at": note.get("_received_at")})
    return out


def format_notification(note: Notification) -> str:
    """One notification as a few readable lines (the demo prints these)."""
    group = note.get("groupLabels", {})
    head = (f"notification -> {note.get('receiver')}: {note.get('status', '?').upper()} "
            f"{group.get('alertname', '')}" + (f" on {group['feed']}" if group.get("feed") else ""))
    lines = [head]
    for alert in note.get("alerts", []):
        labels = alert.get("labels", {})
        text = alert.get("annotations", {}).get("description", "")
        if alert.get("status") == "resolved":
            what = " ".join(f"{k}={labels[k]}" for k in ("symbol", "feed", "connection", "account", "reason")
                            if labels.get(k))
            text = "resolved: " + (what or labels.get("instance") or labels.get("alertname", ""))
        lines.append(f"    [{labels.get('severity', '-')}] {text}")
    return "\n".join(lines)


# --- the demo component -------------------------------------------------------------------------

DEMO_DIR_PREFIX = "feedwatch-demo-"
DEMO_PID_FILE = "demo.pid"


def sweep_demo_dirs(tmp: Path | None = None) -> list[Path]:
    """Remove the working directories of demos that died without cleaning up (SIGKILL): those
    whose ``demo.pid`` names a process that no longer runs. Returns what was removed."""
    import tempfile

    removed = []
    for path in Path(tmp or tempfile.gettempdir()).glob(DEMO_DIR_PREFIX + "*"):
        try:
            pid = int((path / DEMO_PID_FILE).read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except (OSError, ValueError):  # no pid file (yet), not ours, or not readable: leave it
            continue
    return removed


class AlertingDemo:
    """``feedwatch demo`` component: Prometheus + Alertmanager + a printing webhook.

    Joins the demo only when both binaries are installed (otherwise says so and is skipped).
    ``for:`` durations and Alertmanager's grouping waits are compressed 30x, so
    an alert fires and resolves within the demo's scenario; each notification is printed as it
    arrives.

    Cleaning up, whatever happens: Prometheus and Alertmanager die with the demo even on SIGKILL
    (``die_with_parent``), and a later demo removes the working directory such a demo left
    (``sweep_demo_dirs``); if either fails to start, the other is stopped, the directory removed
    and the reason raised as a ``StackError``. Prometheus starts only once the exporter answers,
    so its first scrape succeeds, and FeedwatchExporterDown's absent() variant keeps its real 1m
    ``for:``, longer than Prometheus's own start-up: a demo never opens with a false
    FeedwatchExporterDown.
    """

    name = "prometheus+alertmanager"
    time_scale = 30.0

    def __init__(self, ctx: Any) -> None:
        self.processes: list[Process] = []
        self.webhook: WebhookReceiver | None = None
        self.workdir: Path | None = None
        self.rules_dir = Path(getattr(ctx.args, "rules_dir", None) or PROMETHEUS_DIR / "rules")

    @classmethod
    def factory(cls, ctx: Any) -> "AlertingDemo | None":
        missing = [names[0] for names in (PROMETHEUS_BINARIES, ALERTMANAGER_BINARIES)
                   if find_binary(names) is None]
        if missing:
            ctx.say(f"demo: {' and '.join(missing)} not installed, running without alerts ({INSTALL_HINT})")
            return None
        return cls(ctx)

    async def start(self, ctx: Any) -> None:
        import tempfile

        sweep_demo_dirs()
        self.workdir = Path(tempfile.mkdtemp(prefix=DEMO_DIR_PREFIX))
        (self.workdir / DEMO_PID_FILE).write_text(str(os.getpid()))
        try:
            await self._start(ctx, self.workdir)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, ctx: Any, workdir: Path) -> None:
        self.webhook = WebhookReceiver(on_notification=lambda note: ctx.say(format_notification(note)))
        await self.webhook.start()
        am_port, prom_port = free_port(9093), free_port(9090)
        exporter = ctx.exporter.base_url.split("://", 1)[1]
        am = start_alertmanager(derive_alertmanager_config(self.webhook.url, self.time_scale),
                                workdir / "alertmanager", am_port)
        self.processes.append(am)
        await self._until(lambda: is_ready(am), f"{am.name} did not become ready")
        # Prometheus's first scrape must find the exporter answering (it is started before this
        # component; this makes the order a guarantee).
        metrics_url = ctx.exporter.base_url + ctx.config.telemetry_path
        await self._until(lambda: _answers(metrics_url), f"the exporter does not answer at {metrics_url}")
        rules = derive_rules(workdir / "rules", self.time_scale, self.rules_dir)
        prom_config = derive_prometheus_config(exporter=exporter, alertmanager=f"127.0.0.1:{am_port}",
                                               prometheus=f"127.0.0.1:{prom_port}", rules_dir=rules)
        prom = start_prometheus(prom_config, workdir / "prometheus", prom_port)
        self.processes.append(prom)
        try:
            await self._until(lambda: is_ready(prom), f"{prom.name} did not become ready")
        except StackError as exc:  # name the rule files the user knows, not their working copies
            raise StackError(str(exc).replace(str(rules), str(self.rules_dir))) from None
        ctx.urls.append(("prometheus", f"{prom.url}/alerts"))
        ctx.urls.append(("alertmanager", am.url))
        ctx.urls.append(("notifications", f"printed here (webhook {self.webhook.url})"))

    @staticmethod
    async def _until(ready: Callable[[], bool], failure: str, timeout: float = 30.0) -> None:
        """Poll ``ready`` (blocking, so in a thread) until true; StackError at the deadline."""
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(ready):
            if time.monotonic() > deadline:
                raise StackError(f"{failure} within {timeout:g}s")
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        for process in reversed(self.processes):
            await asyncio.to_thread(process.stop)
        self.processes.clear()
        if self.webhook is not None:
            await self.webhook.stop()
            self.webhook = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def _answers(url: str) -> bool:
    """True once anything answers HTTP at ``url`` (any status: it is listening and serving)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False
