"""The whole alerting pipeline on 127.0.0.1 for end-to-end tests: simulator(s) -> exporter ->
Prometheus -> Alertmanager -> a webhook receiver that records every notification.

Real binaries throughout: ``feedwatch simulate`` and ``feedwatch run`` as subprocesses, Debian's
``prometheus`` and ``prometheus-alertmanager``, and an aiohttp webhook (in a background thread,
so sync and async tests alike can use it). Every process dies with the test run, even a killed
one (``alertstack.die_with_parent``). If Prometheus or Alertmanager is missing the stack
fails with the apt-get line to fix it; it never skips.

Configs are *derived* from the committed ones (``exporter/alerting/stack.py`` does it and says
exactly what changes): the same rule files with ``for:`` divided by ``time_scale`` (default 30:
1m -> 2s; the expressions are identical), scrape and evaluation every second, Alertmanager
rendered by the real ``alertmanager-config`` logic with a webhook channel and its group_wait and
group_interval divided by the same ``time_scale`` (30s -> 1s, 1m -> 2s). The exporter's own thresholds are compressed in its config (``E2E_EXPORTER_CONFIG``:
degraded 5s, stale 8s), so a stalled symbol alerts within about ten seconds.

API::

    with running_stack(tmp_path) as stack:          # or start_stack(...) / stack.stop()
        stack.fault("stocks", "stall", "AAPL")      # the simulator's control API (value= too)
        alert = stack.wait_for_alert(lambda a: a["labels"]["alertname"] == "FeedSymbolStale",
                                     timeout=30, what="FeedSymbolStale")
        stack.query('feedwatch_symbol_state{symbol="AAPL"}')    # Prometheus instant query
        stack.received            # every webhook notification (Alertmanager's JSON), in order
        stack.alerts()            # every alert of every notification, flattened
        stack.prometheus_url, stack.alertmanager_url, stack.exporter_url
        stack.simulators["stocks"].ws_url / .control_url

``start_stack`` arguments: ``exporter_config`` (YAML text; simulator URLs arrive as environment
variables ``SIM_<NAME>_URL``, and ``SIM_<NAME>_CONTROL_URL`` for the simulator's HTTP server with
its REST snapshots, expanded by the exporter's own ``${...}`` support), ``simulators``
(name -> ``feedwatch simulate`` arguments, ``--port``/``--control-port`` are added),
``time_scale``, ``alertmanager_env`` (extra FEEDWATCH_* channel variables), ``interval``
(scrape and evaluation, default 1s; None keeps the committed ones: 5s for the feedwatch job and
the critical-path rule groups, 15s for the rest), ``scrape_proxy`` (Prometheus scrapes the
exporter through a ``TcpProxy`` the test can cut: ``stack.proxy``).

The exporter can be killed and started again on the same port, config and state file:
``stack.kill_exporter()`` (SIGKILL) and ``stack.start_exporter()``.

``trading_stack(workdir, state_file=..., api=..., liveness=...)`` is the trading end-to-end
stack (a price feed and the bot's event stream, ``trading_config``), ready when Prometheus has
the bot's equity and both prices healthy.

``python -m tests.integration.stack`` measures condition-to-notification delays with the
committed timings (time_scale 1, 15s scrape and evaluation; the exporter's thresholds stay
compressed, which does not change the delay after a threshold is crossed). It takes about
twelve minutes; the figures are recorded in docs/alerting.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from exporter.alerting import stack as alertstack
from tests.integration.tcpproxy import TcpProxy
from tests.waiting import free_port, wait_for

E2E_API_KEY = "e2e-key"

# Three symbols on one Polygon-dialect feed. No `market:`: always open, at any hour.
E2E_EXPORTER_CONFIG = """
thresholds: {degraded: 5s, stale: 8s, critical: 1h}
feeds:
  - name: stocks
    kind: polygon
    url: ${SIM_STOCKS_URL}
    api_key: e2e-key
    channels: [T, Q]
    symbols: [AAPL, MSFT, NVDA]
    ping_interval: 1s
    heartbeat_timeout: 5s
    silence_timeout: 60s
    reconnect: {initial_delay: 200ms, max_delay: 1s, reset_after: 5s}
"""

E2E_SIMULATORS: dict[str, list[str]] = {
    "stocks": ["--venue", "polygon", "--symbols", "AAPL,MSFT,NVDA", "--rate", "10",
               "--api-key", E2E_API_KEY, "--seed", "7"],
}


# The trading stack (``trading_stack``): a Polygon-dialect price feed ``crypto`` (BTCUSDT, ETHUSDT)
# and the trading simulator as the bot's event stream ``bot``, whose account ``demo`` maps both
# symbols to ``crypto``. {liveness} and {trading} are filled in by ``trading_config``.
TRADING_EXPORTER_CONFIG = """
thresholds: {{degraded: 3s, stale: 5s, critical: 1h}}
feeds:
  - name: crypto
    kind: polygon
    url: ${{SIM_CRYPTO_URL}}
    api_key: e2e-key
    channels: [Q]
    symbols: [BTCUSDT, ETHUSDT]{liveness}
    reconnect: {{initial_delay: 200ms, max_delay: 1s, reset_after: 5s}}
  - name: bot
    kind: trading
    url: ${{SIM_BOT_URL}}{liveness}
    reconnect: {{initial_delay: 200ms, max_delay: 1s, reset_after: 5s}}
trading:{trading}
  accounts:
    - name: demo
      symbols: {{BTCUSDT: crypto, ETHUSDT: crypto}}
"""

TRADING_SIMULATORS: dict[str, list[str]] = {
    "crypto": ["--venue", "polygon", "--symbols", "BTCUSDT,ETHUSDT", "--rate", "10", "--api-key", E2E_API_KEY,
               "--seed", "5"],
    "bot": ["--venue", "trading", "--symbols", "BTCUSDT,ETHUSDT", "--rate", "5", "--seed", "9"],
}


def trading_config(*, state_file: Path | None = None, api: str | None = None, liveness: bool = True) -> str:
    """The trading stack's exporter config. ``liveness``: pings every 1s and a 5s deadline on both
    feeds (False: the committed defaults); ``state_file``: the trading state file; ``api``: the
    trading push API's settings, a YAML flow mapping (``{token: t, hmac_secret: s}``)."""
    indent = "\n    "
    trading = "".join(f"\n  {line}" for line in (
        ([f"state_file: {state_file}"] if state_file is not None else []) + ([f"api: {api}"] if api else [])))
    return TRADING_EXPORTER_CONFIG.format(
        liveness=f"{indent}ping_interval: 1s{indent}heartbeat_timeout: 5s" if liveness else "", trading=trading)


@contextlib.contextmanager
def trading_stack(workdir: Path, *, state_file: Path | None = None, api: str | None = None, liveness: bool = True,
                  **kwargs: Any) -> Iterator[Stack]:
    """``running_stack`` with the trading config and simulators (``trading_config``; other
    arguments go to ``start_stack``), yielded once Prometheus has the bot's equity and both
    prices healthy (within ``timeout``, 30 s by default)."""
    config = trading_config(state_file=state_file, api=api, liveness=liveness)
    with running_stack(workdir, exporter_config=config, simulators=TRADING_SIMULATORS, **kwargs) as stack:
        wait_for(lambda: stack.query('feedwatch_trading_equity{account="demo"}')
                 and len(stack.query('feedwatch_symbol_state{feed="crypto"} == 0')) == 2,
                 timeout=kwargs.get("timeout", 30.0), what="the bot's equity and two healthy prices in Prometheus")
        yield stack


class _LoopThread:
    """An asyncio loop in a daemon thread, for the webhook receiver."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="webhook-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass
class SimulatorProcess:
    name: str
    popen: subprocess.Popen[str]
    ws_url: str
    control_url: str
    log_path: Path


@dataclass
class Stack:
    workdir: Path
    prometheus: alertstack.Process
    alertmanager: alertstack.Process
    webhook: alertstack.WebhookReceiver
    exporter_url: str = ""
    exporter_popen: subprocess.Popen[bytes] | None = None
    simulators: dict[str, SimulatorProcess] = field(default_factory=dict)
    proxy: TcpProxy | None = None
    _sentinels: int = 0
    _exporter_args: list[str] = field(default_factory=list)
    _exporter_env: dict[str, str] = field(default_factory=dict)
    _loop: _LoopThread | None = None

    def start_exporter(self, timeout: float = 30.0) -> None:
        """Start ``feedwatch run`` (again) with the stack's config, port and environment, and wait
        until it answers /-/ready. Its output is appended to exporter.log."""
        with open(self.workdir / "exporter.log", "ab") as log:
            self.exporter_popen = subprocess.Popen(_feedwatch(*self._exporter_args), stdout=log,
                                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                   env=self._exporter_env,
                                                   preexec_fn=alertstack.die_with_parent())

        def exporter_ready() -> bool:
            if self.exporter_popen.poll() is not None:  # type: ignore[union-attr]
                raise RuntimeError(f"exporter exited:\n{(self.workdir / 'exporter.log').read_text()}")
            return _ready(f"{self.exporter_url}/-/ready")

        wait_for(exporter_ready, timeout=timeout, what="the exporter's /-/ready")

    def kill_exporter(self) -> None:
        """SIGKILL the exporter: no shutdown, no goodbye, as in a crash or an OOM kill."""
        assert self.exporter_popen is not None and self.exporter_popen.poll() is None
        self.exporter_popen.kill()
        self.exporter_popen.wait(10)

    def cut_scrapes(self) -> None:
        """Prometheus loses its target: the scrape proxy refuses connections (the exporter runs on)."""
        assert self.proxy is not None and self._loop is not None, "start_stack(scrape_proxy=True)"
        self._loop.run(self.proxy.cut())

    def restore_scrapes(self) -> None:
        assert self.proxy is not None and self._loop is not None
        self._loop.run(self.proxy.restore())

    @property
    def prometheus_url(self) -> str:
        return self.prometheus.url

    @property
    def alertmanager_url(self) -> str:
        return self.alertmanager.url

    @property
    def received(self) -> list[dict[str, Any]]:
        return self.webhook.received

    def alerts(self, since: int = 0) -> list[dict[str, Any]]:
        """Alerts of the notifications received from index ``since`` on, flattened."""
        return alertstack.notification_alerts(self.webhook.received[since:])

    def wait_for_alert(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0,
                       what: str = "a notification", since: int = 0) -> dict[str, Any]:
        """The first notified alert (from notification ``since`` on) matching ``predicate``."""
        def find() -> dict[str, Any] | None:
            return next((a for a in self.alerts(since) if predicate(a)), None)

        try:
            return wait_for(find, timeout=timeout, interval=0.1, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nreceived so far:\n{self.describe_received()}\n"
                                 f"{self.logs()}") from None

    def unresolved(self, alertname_prefix: str) -> list[str]:
        """Alerts whose latest notification (of those named ``alertname_prefix*``) is still "firing".

        Alertmanager notifies a resolution in a later group flush than the one that resolved the
        alert, so "resolved in Alertmanager" and "resolution notified" are different moments; a
        test that breaks something again must wait for the second or it sees the previous
        episode's resolution arrive inside its own window.
        """
        latest: dict[str, str] = {}
        for alert in self.alerts():
            if alert["labels"]["alertname"].startswith(alertname_prefix):
                latest[alert["fingerprint"]] = alert["status"]
        return sorted(fp for fp, status in latest.items() if status == "firing")

    def wait_quiet(self, alertname_prefix: str, timeout: float = 30.0) -> None:
        """Until no ``alertname_prefix*`` alert is active in Alertmanager or awaiting its resolution notice."""
        def quiet() -> bool:
            active = [a for a in self.alertmanager_alerts()
                      if a["labels"]["alertname"].startswith(alertname_prefix)]
            return not active and not self.unresolved(alertname_prefix)

        try:
            wait_for(quiet, timeout=timeout, interval=0.2,
                     what=f"every {alertname_prefix}* alert resolved and its resolution notified")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nreceived so far:\n{self.describe_received()}") from None

    def describe_received(self) -> str:
        return "\n".join(alertstack.format_notification(n) for n in self.webhook.received) or "(nothing)"

    def logs(self, lines: int = 15) -> str:
        parts = [f"--- {p.name} log ---\n{p.log_tail(lines)}" for p in (self.prometheus, self.alertmanager)]
        exporter_log = self.workdir / "exporter.log"
        if exporter_log.exists():
            tail = exporter_log.read_text(errors="replace").splitlines()[-lines:]
            parts.append("--- exporter log ---\n" + "\n".join(tail))
        return "\n".join(parts)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """A Prometheus instant query's result vector."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def prometheus_alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.prometheus_url}/api/v1/alerts", timeout=5) as resp:
            return json.load(resp)["data"]["alerts"]

    def alertmanager_alerts(self) -> list[dict[str, Any]]:
        """Alertmanager's view (``status.state``: active / suppressed, ``status.inhibitedBy``)."""
        with urllib.request.urlopen(f"{self.alertmanager_url}/api/v2/alerts", timeout=5) as resp:
            return json.load(resp)

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """POST alerts to Alertmanager's API (as Prometheus would)."""
        req = urllib.request.Request(f"{self.alertmanager_url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200

    def flush_group(self, labels: Mapping[str, str], timeout: float = 30.0) -> None:
        """Wait until the Alertmanager group that ``labels`` select has notified every change made
        to it before this call.

        A test asserting that something was *not* notified must not just wait a while (on a loaded
        machine a flush can come late, and the test would pass without having looked). Instead a
        sentinel alert with ``labels`` and a unique ``sentinel`` label joins the group; once a
        notification carries it, the group has flushed after everything that came before. The
        sentinel is then resolved; ``alerts()`` callers should skip alerts with a ``sentinel``
        label.
        """
        self._sentinels += 1
        sentinel = {**labels, "sentinel": str(self._sentinels)}
        now = time.time()

        def alert(ends: float) -> dict[str, Any]:
            return {"labels": sentinel, "startsAt": _iso(now - 1), "endsAt": _iso(ends)}

        self.post_alerts([alert(now + 300)])
        try:
            self.wait_for_alert(lambda a: a["labels"].get("sentinel") == sentinel["sentinel"],
                                timeout=timeout, what=f"the sentinel of {dict(labels)}")
        finally:
            self.post_alerts([alert(time.time() - 0.5)])

    def fault(self, simulator: str, name: str, symbol: str | None = None,
              value: float | None = None) -> dict[str, Any]:
        """Switch a fault on a simulator (POST /faults/NAME); returns its state after the change."""
        url = f"{self.simulators[simulator].control_url}/faults/{name}"
        query = {k: v for k, v in (("symbol", symbol), ("value", value)) if v is not None}
        if query:
            url += "?" + urllib.parse.urlencode(query)
        req = urllib.request.Request(url, method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.load(resp)

    def stop(self) -> None:
        processes: list[Any] = [self.prometheus, self.alertmanager]
        for process in processes:
            process.stop()
        for popen in [self.exporter_popen] + [s.popen for s in self.simulators.values()]:
            if popen is not None and popen.poll() is None:
                popen.terminate()
                try:
                    popen.wait(10)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait(5)
            if popen is not None and popen.stdout is not None:
                popen.stdout.close()
        if self._loop is not None:
            if self.proxy is not None:
                self._loop.run(self.proxy.stop())
            self._loop.run(self.webhook.stop())
            self._loop.close()


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat()


def _feedwatch(*args: str) -> list[str]:
    """The ``feedwatch`` command line run by this interpreter (no reliance on PATH)."""
    return [sys.executable, "-c", "import sys; from exporter.cli import main; sys.exit(main())", *args]


def _start_simulator(name: str, args: list[str], workdir: Path) -> SimulatorProcess:
    log_path = workdir / f"simulator-{name}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(_feedwatch("simulate", *args, "--port", "0", "--control-port", "0"),
                                 stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True,
                                 preexec_fn=alertstack.die_with_parent())
    urls: dict[str, str] = {}
    deadline = time.monotonic() + 20
    assert popen.stdout is not None
    while len(urls) < 2:
        line = popen.stdout.readline()  # the simulator prints its two URLs, flushed, then nothing
        if not line:
            raise RuntimeError(f"simulator {name} exited before listening:\n{log_path.read_text()}")
        key, _, value = line.strip().partition(": ")
        if key in ("ws", "control"):
            urls[key] = value
        if time.monotonic() > deadline:
            raise RuntimeError(f"simulator {name} printed no URLs in 20s")
    return SimulatorProcess(name, popen, urls["ws"], urls["control"], log_path)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def start_stack(workdir: Path, *, exporter_config: str | None = E2E_EXPORTER_CONFIG,
                simulators: Mapping[str, list[str]] | None = None, time_scale: float = 30.0,
                alertmanager_env: Mapping[str, str] | None = None, timeout: float = 30.0,
                interval: str | None = "1s", scrape_proxy: bool = False) -> Stack:
    """Start everything (see the module docstring); the caller must ``stop()`` it."""
    for names in (alertstack.PROMETHEUS_BINARIES, alertstack.ALERTMANAGER_BINARIES):
        if alertstack.find_binary(names) is None:
            raise RuntimeError(f"{names[0]} is not installed: the end-to-end tests need it "
                               f"({alertstack.INSTALL_HINT})")
    simulators = E2E_SIMULATORS if simulators is None else simulators
    loop = _LoopThread()
    webhook = alertstack.WebhookReceiver()
    loop.run(webhook.start())
    am_port, prom_port = free_port(), free_port()
    am = alertstack.start_alertmanager(
        alertstack.derive_alertmanager_config(webhook.url, time_scale, alertmanager_env),
        workdir / "alertmanager", am_port)
    stack = Stack(workdir, prometheus=None, alertmanager=am, webhook=webhook, _loop=loop)  # type: ignore[arg-type]
    try:
        exporter_target = "127.0.0.1:1"  # nothing listens: FeedwatchExporterDown, if no exporter
        if exporter_config is not None:
            env = dict(os.environ)
            for name, args in simulators.items():
                sim = _start_simulator(name, args, workdir)
                stack.simulators[name] = sim
                env[f"SIM_{name.upper()}_URL"] = sim.ws_url
                env[f"SIM_{name.upper()}_CONTROL_URL"] = sim.control_url  # its REST snapshots too
            config_path = workdir / "feedwatch.yml"
            config_path.write_text(exporter_config)
            port = free_port()
            stack._exporter_args = ["run", "-c", str(config_path), "--web.listen-address", f"127.0.0.1:{port}"]
            stack._exporter_env = env
            stack.exporter_url = f"http://127.0.0.1:{port}"
            stack.start_exporter(timeout)
            exporter_target = f"127.0.0.1:{port}"
            if scrape_proxy:
                stack.proxy = TcpProxy("127.0.0.1", port)
                loop.run(stack.proxy.start())
                exporter_target = stack.proxy.address
        rules = alertstack.derive_rules(workdir / "rules", time_scale, interval=interval)
        prom_config = alertstack.derive_prometheus_config(
            exporter=exporter_target, alertmanager=f"127.0.0.1:{am_port}",
            prometheus=f"127.0.0.1:{prom_port}", rules_dir=rules, interval=interval)
        stack.prometheus = alertstack.start_prometheus(prom_config, workdir / "prometheus", prom_port)
        wait_for(lambda: alertstack.is_ready(am), timeout=timeout, what="Alertmanager /-/ready")
        wait_for(lambda: alertstack.is_ready(stack.prometheus), timeout=timeout, what="Prometheus /-/ready")
        if exporter_config is not None:
            # Hand over the stack only once the exporter is scraped. FeedwatchExporterDown's
            # absent() variant keeps its real 1m for: (Prometheus scrapes nothing for its first
            # ~5s), but a first scrape slower than the 1s timeout on a loaded machine would page
            # for a moment: wait until no such page is active either.
            wait_for(lambda: stack.query('up{job="feedwatch"} == 1'), timeout=timeout,
                     what="Prometheus scraping the exporter")
            wait_for(lambda: not [a for a in stack.alertmanager_alerts()
                                  if a["labels"]["alertname"] == "FeedwatchExporterDown"],
                     timeout=timeout, what="no FeedwatchExporterDown in Alertmanager")
    except BaseException:
        if stack.prometheus is None:
            stack.prometheus = am  # stop() stops both; stopping twice is harmless
        stack.stop()
        raise
    return stack


@contextlib.contextmanager
def running_stack(workdir: Path, **kwargs: Any) -> Iterator[Stack]:
    """``start_stack`` as a context manager that always stops everything."""
    stack = start_stack(workdir, **kwargs)
    try:
        yield stack
    finally:
        stack.stop()


def measure(workdir: Path) -> None:
    """Condition -> notification delays with the committed for:, grouping and a 15s interval."""
    # Thresholds far enough apart for the real for: values (warning 1m, critical 30s) to play
    # out in order; the delays measured are from each threshold crossing, so their values do not
    # matter otherwise.
    degraded, stale = 5.0, 100.0
    config = E2E_EXPORTER_CONFIG.replace("{degraded: 5s, stale: 8s, critical: 1h}",
                                         "{degraded: 5s, stale: 100s, critical: 1h}")
    assert config != E2E_EXPORTER_CONFIG

    def first(stack: Stack, since: int, name: str, status: str, **labels: str) -> dict[str, Any]:
        return stack.wait_for_alert(
            lambda a: a["labels"]["alertname"] == name and a["status"] == status
            and all(a["labels"].get(k) == v for k, v in labels.items()),
            timeout=600, since=since, what=f"{name} {status} {labels}")

    with running_stack(workdir, exporter_config=config, time_scale=1.0, interval="15s", timeout=120) as stack:
        wait_for(lambda: len(stack.query('feedwatch_symbol_state{feed="stocks"} == 0')) == 3,
                 timeout=120, what="three healthy symbols")
        mark, t0 = len(stack.received), time.time()
        stack.fault("stocks", "stall", "AAPL")
        warning = first(stack, mark, "FeedSymbolStale", "firing", severity="warning")
        critical = first(stack, mark, "FeedSymbolStale", "firing", severity="critical")
        print(f"FeedSymbolStale warning: {warning['_received_at'] - t0 - degraded:.0f}s after degraded", flush=True)
        print(f"FeedSymbolStale critical: {critical['_received_at'] - t0 - stale:.0f}s after stale", flush=True)
        t1 = time.time()
        stack.fault("stocks", "resume")
        resolved = first(stack, mark, "FeedSymbolStale", "resolved", severity="critical")
        print(f"FeedSymbolStale resolved: {resolved['_received_at'] - t1:.0f}s after AAPL resumed", flush=True)
        wait_for(lambda: not [a for a in stack.alertmanager_alerts()
                              if a["labels"]["alertname"].startswith("FeedSymbol")],
                 timeout=300, what="symbol alerts resolved")
        mark, t2 = len(stack.received), time.time()
        stack.fault("stocks", "reject_auth")
        stack.fault("stocks", "drop")
        down = first(stack, mark, "FeedDown", "firing")
        print(f"FeedDown: {down['_received_at'] - t2:.0f}s after the feed was cut off", flush=True)


if __name__ == "__main__":
    import signal
    import tempfile

    # SIGTERM unwinds like Ctrl-C, so the stack's processes are stopped and the directory removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    with tempfile.TemporaryDirectory(prefix="feedwatch-measure-") as tmp:
        measure(Path(tmp))
