"""Run Prometheus and Alertmanager beside feedwatch on 127.0.0.1, from the committed configs.

Used by ``feedwatch demo`` (when the binaries are installed) and by the end-to-end tests
(``tests/integration/stack.py``). Nothing here invents configuration: the running copies are
*derived* from ``prometheus/prometheus.yml``, ``prometheus/rules/*.yml`` and
``alertmanager/alertmanager.yml`` by substituting only

- addresses: the exporter, Alertmanager and Prometheus targets (ports picked at run time), the
  rule and template paths, and the webhook the notifications go to (set through
  ``feedwatch alertmanager-config``'s own environment variable, FEEDWATCH_WEBHOOK_URL);
- intervals: scrape and evaluation every second;
- time compression by ``time_scale`` (30: 1m -> 2s) of the rules' ``for:`` durations and of
  Alertmanager's group_wait and group_interval (30s -> 1s, 1m -> 2s). The rule
  expressions stay byte-for-byte identical, so thresholds inside them (FeedSilent's 120 s, the
  5-minute rate windows) are *not* compressed; the exporter's own thresholds are compressed in
  its config instead. promtool tests cover the real ``for:`` values.

``WebhookReceiver`` is an aiohttp server that records every notification (and can print each as
it arrives, which is what the demo shows).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import socket
import subprocess
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


def compress_for(rules_text: str, time_scale: float) -> str:
    """The rule file with every ``for:`` divided by ``time_scale``; nothing else changes."""
    def shorten(match: re.Match[str]) -> str:
        return match.group(1) + prom_duration(prom_seconds(match.group(2)) / time_scale) + match.group(3)

    return _FOR_LINE.sub(shorten, rules_text)


def derive_rules(out_dir: Path, time_scale: float, rules_dir: Path = PROMETHEUS_DIR / "rules") -> Path:
    """Copy every committed rule file into ``out_dir`` with compressed ``for:``; returns out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(rules_dir.glob("*.yml")):
        (out_dir / path.name).write_text(compress_for(path.read_text(), time_scale))
    return out_dir


def derive_prometheus_config(*, exporter: str, alertmanager: str, prometheus: str, rules_dir: Path,
                             interval: str = "1s",
                             base: Path = PROMETHEUS_DIR / "prometheus.yml") -> dict[str, Any]:
    """prometheus.yml with targets, rule path and intervals substituted (host:port targets)."""
    config = yaml.safe_load(base.read_text())
    config["global"].update(scrape_interval=interval, evaluation_interval=interval, scrape_timeout=interval)
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    config["rule_files"] = [str(rules_dir / "*.yml")]
    targets = {"feedwatch": exporter, "alertmanager": alertmanager, "prometheus": prometheus}
    for job in config["scrape_configs"]:
        if job["job_name"] in targets:
            job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
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

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)


def _spawn(name: str, args: list[str], url: str, log_path: Path, env: Mapping[str, str] | None = None) -> Process:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as out:
        popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env={**os.environ, **env} if env else None)
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
        raise RuntimeError(f"{process.name} exited with {process.popen.returncode}:\n{process.log_tail()}")
    try:
        with urllib.request.urlopen(f"{process.url}/-/ready", timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


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

class AlertingDemo:
    """``feedwatch demo`` component: Prometheus + Alertmanager + a printing webhook.

    Joins the demo only when both binaries are installed (otherwise says so and is skipped).
    ``for:`` durations and Alertmanager's grouping waits are compressed 30x, so
    an alert fires and resolves within the demo's scenario; each notification is printed as it
    arrives.
    """

    name = "prometheus+alertmanager"
    time_scale = 30.0

    def __init__(self, ctx: Any) -> None:
        self.processes: list[Process] = []
        self.webhook: WebhookReceiver | None = None
        self.workdir: Path | None = None

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

        self.workdir = Path(tempfile.mkdtemp(prefix="feedwatch-demo-"))
        self.webhook = WebhookReceiver(on_notification=lambda note: ctx.say(format_notification(note)))
        await self.webhook.start()
        am_port, prom_port = free_port(9093), free_port(9090)
        exporter = ctx.exporter.base_url.split("://", 1)[1]
        am = start_alertmanager(derive_alertmanager_config(self.webhook.url, self.time_scale),
                                self.workdir / "alertmanager", am_port)
        self.processes.append(am)
        rules = derive_rules(self.workdir / "rules", self.time_scale)
        prom_config = derive_prometheus_config(exporter=exporter, alertmanager=f"127.0.0.1:{am_port}",
                                               prometheus=f"127.0.0.1:{prom_port}", rules_dir=rules)
        prom = start_prometheus(prom_config, self.workdir / "prometheus", prom_port)
        self.processes.append(prom)
        deadline = time.monotonic() + 30.0
        for process in self.processes:
            while not is_ready(process):
                if time.monotonic() > deadline:
                    raise OSError(f"{process.name} did not become ready; log: {process.log_path}")
                await asyncio.sleep(0.2)
        ctx.urls.append(("prometheus", f"{prom.url}/alerts"))
        ctx.urls.append(("alertmanager", am.url))
        ctx.urls.append(("notifications", f"printed here (webhook {self.webhook.url})"))

    async def stop(self) -> None:
        for process in reversed(self.processes):
            await asyncio.to_thread(process.stop)
        if self.webhook is not None:
            await self.webhook.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
