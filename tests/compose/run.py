"""``make compose-test``: the unchanged docker-compose.yml on a real Docker engine.

Image registries are unreachable here, so the images the compose file names are built locally
under those names ("stand-ins"), then the stack runs as a user would run it:

 1. tools      Debian's docker.io, docker-compose (v1; a v2 ``docker compose`` is used instead
               when present) and debootstrap, installed with apt when missing (as root)
 2. dockerd    a daemon of our own, in a network namespace of its own (the stack's published
               ports and dockerd's iptables rules stay inside it; a veth pair and a MASQUERADE
               rule let builds reach the package mirrors): its own socket, exec root and pidfile
               in a temporary directory, its data root in the cache (built images survive for the
               next run), no default bridge, compose networks from an address pool of its own
 3. base       a minimal Debian bookworm made with debootstrap, loaded with ``docker import``
 4. images     built side by side: the Dockerfile's Python base (Debian's python3, trusting the
               host's CA store so pip reaches the index through an intercepting proxy), then
               feedwatch:local from the repository's own Dockerfile; prom/prometheus and
               prom/alertmanager from Debian's packages of exactly the pinned releases
               (tests/compose/standins/). A stand-in is rebuilt only when its recipe changes.
 5. grafana    Grafana has no build here: its provisioning is validated structurally instead
 6. stall      the exporter and the simulators up; once the exporter has AAPL's prices, AAPL is
               stalled through the simulator's control API (docker-compose exec, as the docs say)
 7. up         every other service but grafana (``up`` with the service list), plus what
               docs/deployment.md tells a user to add in docker-compose.override.yml to turn
               notifications on: Alertmanager's config rendered by ``feedwatch alertmanager-config``
               with a webhook, mounted read-only; and two test services: the webhook receiver
               (tests/compose/webhook.py) and a second exporter with basic auth on
               (``--web.config.file``) that relies on the image's own HEALTHCHECK
 8. healthy    every service's health check turns healthy
 9. inspect    every container runs as a non-root user, on a read-only root filesystem, with
               every bind mount read-only (docker inspect); the basic-auth exporter refuses an
               anonymous request (401) while its health check passes; the image's exporter
               has its compiled formatter (exporter._fill, built by the Dockerfile)
10. notify     Watchdog, then FeedSymbolStale for AAPL reach the webhook receiver on the compose
               network: exporter -> Prometheus -> Alertmanager -> webhook, with the committed
               thresholds and for: (AAPL degraded after 180 s, for: 1m, group_wait 30s)
11. ha up      the ``ha`` profile added to the running stack, not after a teardown (it shares the
               simulators, the webhook receiver and the built images; no second start-up):
               ``--profile ha up`` of its two exporter shards, two Prometheus, two Alertmanagers
               and VictoriaMetrics (built as a stand-in like the others); the override gives the
               Alertmanagers the webhook config; every health check healthy; the step-9 checks on
               each of them
12. ha         the profile works as docs/scaling.md says: the two shards watch every symbol exactly
               once between them; both Prometheus scrape both shards; the Alertmanagers form a
               cluster of two; the Watchdog of the pair reaches the webhook with ``cluster`` and
               without ``replica``, once; VictoriaMetrics holds one copy of every symbol's series
13. teardown   ``down -v`` (with the profile), the daemon stopped, the namespace and the host's
               rules removed (also after a failure)

Each step prints a progress line; a failure prints the step, the services' logs and the daemon's
log tail, and exits 1. Bounded: every wait has a deadline. FEEDWATCH_COMPOSE_CACHE sets the cache
(default /var/cache/feedwatch-compose-test); FEEDWATCH_COMPOSE_KEEP=1 leaves the stack and the
daemon running for a look (the socket is printed).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import bcrypt
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROJECT = "fwct"
CACHE = Path(os.environ.get("FEEDWATCH_COMPOSE_CACHE", "/var/cache/feedwatch-compose-test"))
BASE_TAG = "feedwatch-standin/debian:bookworm"
ADDRESS_POOL = "base=172.30.0.0/16,size=24"
SERVICES = ["simulator", "simulator-bot", "feedwatch", "prometheus", "alertmanager"]
TEST_SERVICES = ["webhook", "feedwatch-auth"]
# The `ha` profile (docker-compose.yml), in start order.
HA_SERVICES = ["feedwatch-shard-0", "feedwatch-shard-1", "alertmanager-a", "alertmanager-b", "victoriametrics",
               "prometheus-a", "prometheus-b"]
HA_PROFILE = ("--profile", "ha")
STALLED = "AAPL"
STEPS = 13
AUTH_USER, AUTH_PASSWORD = "healthcheck", secrets.token_hex(12)

START = time.monotonic()
TIMINGS: list[tuple[str, float]] = []


class StepFailed(Exception):
    pass


def say(text: str) -> None:
    print(f"[compose-test {time.monotonic() - START:6.1f}s] {text}", flush=True)


def run(*args: str, check: bool = True, capture: bool = True, timeout: float = 600,
        env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=capture, text=True, timeout=timeout, env=env, input=input)
    if check and done.returncode != 0:
        detail = (done.stdout or "")[-3000:] + (done.stderr or "")[-3000:] if capture else ""
        raise StepFailed(f"{' '.join(args[:6])}{' ...' if len(args) > 6 else ''} exited {done.returncode}\n{detail}")
    return done


def wait_until(what: str, condition: Callable[[], Any], timeout: float, interval: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise StepFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- the daemon ---------------------------------------------------------------------------------

class Daemon:
    """A dockerd of our own, in a network namespace of its own, and the commands that talk to it.

    The namespace keeps the stack's published ports (127.0.0.1:9090, 9093, 10119) and dockerd's
    iptables rules inside it: nothing on the host can take a port the stack needs, and the stack
    takes none from the host. A veth pair and one MASQUERADE rule on the host give builds their
    way out to the package mirrors; both are removed at the end.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.socket = workdir / "docker.sock"
        self.pidfile = workdir / "docker.pid"
        self.log = workdir / "dockerd.log"
        self.popen: subprocess.Popen | None = None
        tag = os.getpid()
        self.netns = f"fwct-{tag}"
        self.veth = (f"fwct{tag}h"[-15:], f"fwct{tag}n"[-15:])
        base = f"10.213.{tag % 256}.{4 * ((tag // 256) % 64)}"
        octets = base.split(".")
        self.subnet = f"{base}/30"
        self.host_ip = ".".join(octets[:3] + [str(int(octets[3]) + 1)])
        self.ns_ip = ".".join(octets[:3] + [str(int(octets[3]) + 2)])
        self.host_rules: list[tuple[str, ...]] = []
        self.ip_forward: str | None = None
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "COMPOSE_PROJECT_NAME": PROJECT,
                    "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(12), "DOCKER_BUILDKIT": "0"}
        self.compose_cmd: list[str] = []

    def _network(self) -> None:
        host, inside = self.veth
        mtu = Path(f"/sys/class/net/{default_interface()}/mtu").read_text().strip()
        run("ip", "netns", "add", self.netns)
        run("ip", "link", "add", host, "mtu", mtu, "type", "veth", "peer", "name", inside, "mtu", mtu)
        run("ip", "link", "set", inside, "netns", self.netns)
        run("ip", "addr", "add", f"{self.host_ip}/30", "dev", host)
        run("ip", "link", "set", host, "up")
        ns = ("ip", "netns", "exec", self.netns)
        run(*ns, "ip", "link", "set", "lo", "up")
        run(*ns, "ip", "addr", "add", f"{self.ns_ip}/30", "dev", inside)
        run(*ns, "ip", "link", "set", inside, "up")
        run(*ns, "ip", "route", "add", "default", "via", self.host_ip)
        self.ip_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
        for rule in (("-t", "nat", "POSTROUTING", "-s", self.subnet, "-j", "MASQUERADE"),
                     ("-t", "filter", "FORWARD", "-i", host, "-j", "ACCEPT"),
                     ("-t", "filter", "FORWARD", "-o", host, "-j", "ACCEPT")):
            run("iptables", rule[0], rule[1], "-I", *rule[2:])
            self.host_rules.append(rule)

    def start(self) -> None:
        self._network()
        (CACHE / "docker").mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.popen = subprocess.Popen(
                # nsenter, not `ip netns exec`: that one also remounts /sys, hiding the cgroup
                # mounts dockerd needs (it exits "Unable to find ... cgroup in mounts").
                ["nsenter", f"--net=/run/netns/{self.netns}",
                 "dockerd", "--host", f"unix://{self.socket}", "--data-root", str(CACHE / "docker"),
                 "--exec-root", str(self.workdir / "exec"), "--pidfile", str(self.pidfile),
                 "--bridge", "none", "--default-address-pool", ADDRESS_POOL],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

        def answers() -> bool:
            if self.popen.poll() is not None:
                raise StepFailed(f"dockerd exited with {self.popen.returncode}:\n{self.log_tail()}")
            return self.docker("version", check=False).returncode == 0

        wait_until("dockerd to answer", answers, timeout=60, interval=0.5)
        self.compose_cmd = self._pick_compose()

    def _pick_compose(self) -> list[str]:
        forced = os.environ.get("FEEDWATCH_COMPOSE")
        candidates = [forced.split()] if forced else [["docker", "compose"], ["docker-compose"]]
        for cmd in candidates:
            if shutil.which(cmd[0]) and run(*cmd, "version", check=False, env=self.env).returncode == 0:
                return cmd
        raise StepFailed("no compose: neither `docker compose` (v2) nor `docker-compose` (v1) runs")

    def docker(self, *args: str, check: bool = True, timeout: float = 600, **kw: Any) -> subprocess.CompletedProcess:
        return run("docker", *args, check=check, timeout=timeout, env=self.env, **kw)

    def compose(self, files: list[Path], *args: str, check: bool = True, timeout: float = 600,
                **kw: Any) -> subprocess.CompletedProcess:
        flags = [a for f in files for a in ("-f", str(f))]
        return run(*self.compose_cmd, "--project-directory", str(ROOT), "-p", PROJECT, *flags, *args,
                   check=check, timeout=timeout, env=self.env, **kw)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        for rule in reversed(self.host_rules):
            run("iptables", rule[0], rule[1], "-D", *rule[2:], check=False)
        if self.ip_forward is not None:
            Path("/proc/sys/net/ipv4/ip_forward").write_text(self.ip_forward)
        run("ip", "link", "del", self.veth[0], check=False)
        run("ip", "netns", "del", self.netns, check=False)


def unmount_under(path: Path) -> None:
    """Unmount what dockerd left mounted in its exec root (it keeps exec/netns/default bound)."""
    prefix = str(path) + "/"
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for target in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        run("umount", "--lazy", target, check=False)


def default_interface() -> str:
    """The interface of the host's default route (its MTU is what the veth pair must use)."""
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            return fields[0]
    raise StepFailed("no default route: the builds need the package mirrors")


# --- images -------------------------------------------------------------------------------------

def debian_mirror() -> str:
    """The Debian mirror apt already uses (deb822 sources), else deb.debian.org."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


def image_label(daemon: Daemon, tag: str) -> str | None:
    done = daemon.docker("image", "inspect", "-f", '{{index .Config.Labels "org.feedwatch.standin"}}', tag,
                         check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def build_base(daemon: Daemon) -> str:
    if image_label(daemon, BASE_TAG) is not None:
        return "cached"
    rootfs = CACHE / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    run("debootstrap", "--variant=minbase", "bookworm", str(rootfs), debian_mirror(), timeout=900)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(["docker", "import", "--change", "LABEL org.feedwatch.standin=debootstrap",
                               "--change", 'CMD ["bash"]', "-", BASE_TAG],
                              stdin=tar.stdout, capture_output=True, text=True, env=daemon.env, timeout=600)
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)
    if imported.returncode != 0 or tar.returncode != 0:
        raise StepFailed(f"docker import failed: {imported.stderr}")
    return "built"


def build_standin(daemon: Daemon, tag: str, recipe: str, context_files: dict[str, bytes], **fields: str) -> str:
    """Build ``tag`` from a stand-in Dockerfile unless an image from the same recipe exists."""
    dockerfile = (HERE / "standins" / recipe).read_text().format(base=BASE_TAG, **fields)
    digest = hashlib.sha256(dockerfile.encode() + b"".join(sorted(context_files.values()))).hexdigest()[:16]
    if image_label(daemon, tag) == digest:
        return "cached"
    context = Path(tempfile.mkdtemp(prefix="ctx-", dir=daemon.workdir))
    (context / "Dockerfile").write_text(dockerfile + f"\nLABEL org.feedwatch.standin={digest}\n")
    for name, content in context_files.items():
        (context / name).write_bytes(content)
    daemon.docker("build", "--network", "host", "-q", "-t", tag, str(context), timeout=900)
    return "built"


def compose_images() -> dict[str, str]:
    config = yaml.safe_load(COMPOSE_FILE.read_text())
    return {name: service["image"] for name, service in config["services"].items()}


def dockerfile_base() -> str:
    bases = {line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("FROM ")}
    (base,) = bases
    return base


# --- the run's own files (what a user adds in docker-compose.override.yml) --------------------

def write_override(workdir: Path) -> Path:
    """Notifications on (as docs/deployment.md shows), the webhook receiver, a basic-auth exporter."""
    generated = workdir / "generated"
    env = {**os.environ, "FEEDWATCH_WEBHOOK_URL": "http://webhook:8080/alerts"}
    run(str(Path(sys.executable).parent / "feedwatch"), "alertmanager-config",
        "--templates", "/etc/alertmanager/templates/*.tmpl", "--output", str(generated / "alertmanager.yml"),
        env=env)
    os.chown(generated / "alertmanager.yml", 65534, 65534)   # Alertmanager runs as nobody; the file is 0600
    generated.chmod(0o755)

    receiver = workdir / "webhook"
    receiver.mkdir(mode=0o755)
    shutil.copy(HERE / "webhook.py", receiver / "webhook.py")
    (receiver / "webhook.py").chmod(0o644)

    auth = workdir / "auth"
    auth.mkdir(mode=0o755)
    hashed = bcrypt.hashpw(AUTH_PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    (auth / "web.yml").write_text(f"basic_auth_users:\n  {AUTH_USER}: '{hashed}'\n")
    (auth / "password").write_text(AUTH_PASSWORD + "\n")
    (auth / "feedwatch.yml").write_text(
        'listen: ":10119"\n'
        "feeds:\n"
        "  - {name: stocks, kind: polygon, url: 'ws://simulator:8765/stocks', api_key: demo, symbols: [MSFT]}\n")
    for path in auth.iterdir():
        path.chmod(0o644)

    images = compose_images()
    override = {
        "services": {
            "alertmanager": {
                "command": ["--config.file=/etc/alertmanager-generated/alertmanager.yml",
                            "--storage.path=/alertmanager"],
                "volumes": [f"{generated}:/etc/alertmanager-generated:ro"],
            },
            # The ha profile's cluster: the same rendered config, mounted over the committed file,
            # so the committed command lines (their cluster flags) run unchanged.
            **{name: {"volumes": [f"{generated / 'alertmanager.yml'}:/etc/alertmanager/alertmanager.yml:ro"]}
               for name in ("alertmanager-a", "alertmanager-b")},
            "webhook": {
                "image": dockerfile_base(),
                "command": ["python", "/srv/webhook.py", "8080"],
                "user": "65534:65534",
                "read_only": True,
                "volumes": [f"{receiver}:/srv:ro"],
                "healthcheck": {"test": ["CMD", "python", "-c",
                                         "import socket; socket.create_connection(('127.0.0.1', 8080), 2).close()"],
                                "interval": "5s", "timeout": "3s", "retries": 3},
            },
            # The basic-auth exporter keeps the image's own HEALTHCHECK (no healthcheck key here).
            "feedwatch-auth": {
                "image": images["feedwatch"],
                "command": ["run", "-c", "/etc/feedwatch-auth/feedwatch.yml",
                            "--web.config.file", "/etc/feedwatch-auth/web.yml"],
                "environment": {"FEEDWATCH_WEB_CONFIG_FILE": "/etc/feedwatch-auth/web.yml",
                                "FEEDWATCH_HEALTHCHECK_USER": AUTH_USER,
                                "FEEDWATCH_HEALTHCHECK_PASSWORD_FILE": "/etc/feedwatch-auth/password"},
                "read_only": True,
                "tmpfs": ["/tmp"],
                "security_opt": ["no-new-privileges:true"],
                "volumes": [f"{auth}:/etc/feedwatch-auth:ro"],
                "depends_on": {"simulator": {"condition": "service_healthy"}},
            },
        },
    }
    path = workdir / "docker-compose.override.yml"
    path.write_text(yaml.safe_dump(override, sort_keys=False))
    return path


# --- checks -------------------------------------------------------------------------------------

def container_ids(daemon: Daemon, files: list[Path], services: list[str]) -> dict[str, str]:
    ids = {}
    for service in services:
        cid = daemon.compose(files, *HA_PROFILE, "ps", "-q", service).stdout.strip()
        if not cid:
            raise StepFailed(f"service {service} has no container")
        ids[service] = cid
    return ids


def inspect(daemon: Daemon, cid: str) -> dict[str, Any]:
    return json.loads(daemon.docker("inspect", cid).stdout)[0]


def all_healthy(daemon: Daemon, ids: dict[str, str]) -> bool:
    waiting = []
    for service, cid in ids.items():
        state = inspect(daemon, cid)["State"]
        if state["Status"] in ("exited", "dead") or state.get("Restarting"):
            raise StepFailed(f"{service} is {state['Status']} (exit code {state.get('ExitCode')})")
        health = state.get("Health")
        if health is None:
            raise StepFailed(f"{service} has no health check")
        if health["Status"] != "healthy":
            waiting.append(f"{service}={health['Status']}")
    if waiting:
        say("  waiting: " + ", ".join(waiting))
    return not waiting


def check_hardening(daemon: Daemon, ids: dict[str, str]) -> list[str]:
    """Non-root user, read-only root filesystem, read-only bind mounts: the problems found."""
    problems = []
    for service, cid in ids.items():
        info = inspect(daemon, cid)
        user = info["Config"].get("User") or ""
        uid = daemon.docker("exec", cid, "id", "-u", check=False).stdout.strip()
        if user.split(":")[0] in ("", "0", "root") or uid in ("", "0"):
            problems.append(f"{service}: runs as root (User={user!r}, id -u={uid!r})")
        if not info["HostConfig"].get("ReadonlyRootfs"):
            problems.append(f"{service}: root filesystem is writable")
        for mount in info["Mounts"]:
            if mount["Type"] == "bind" and mount.get("RW", True):
                problems.append(f"{service}: bind mount {mount['Source']} -> {mount['Destination']} is writable")
    return problems


def symbol_updates(daemon: Daemon, cid: str, symbol: str) -> float:
    """The exporter's update count for a stocks symbol, from its /metrics (0 while unknown)."""
    done = daemon.docker("exec", cid, "python", "-c", "import urllib.request; print(urllib.request.urlopen("
                         "'http://127.0.0.1:10119/metrics', timeout=5).read().decode())", check=False, timeout=60)
    prefix = f'feedwatch_symbol_updates_total{{feed="stocks",symbol="{symbol}"}} '
    for line in done.stdout.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return 0.0


def python_in(daemon: Daemon, cid: str, code: str) -> str:
    return daemon.docker("exec", cid, "python", "-c", code, timeout=60).stdout


def notifications(daemon: Daemon, webhook: str) -> list[dict[str, Any]]:
    out = python_in(daemon, webhook, "import urllib.request; "
                    "print(urllib.request.urlopen('http://127.0.0.1:8080/alerts', timeout=5).read().decode())")
    return json.loads(out)


def firing(notes: list[dict[str, Any]], alertname: str, **labels: str) -> list[dict[str, Any]]:
    return [alert for note in notes for alert in note.get("alerts", [])
            if alert["labels"].get("alertname") == alertname and alert.get("status") == "firing"
            and all(alert["labels"].get(k) == v for k, v in labels.items())]


def fetch_in(daemon: Daemon, cid: str, url: str) -> str:
    """GET ``url`` from inside a container (the webhook's: Python, on the compose network)."""
    return daemon.docker("exec", cid, "python", "-c", "import sys, urllib.request; sys.stdout.write("
                         "urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())", url, timeout=60).stdout


def promql(daemon: Daemon, cid: str, base: str, query: str) -> list[dict[str, Any]]:
    """An instant query's result vector (Prometheus and VictoriaMetrics answer the same API)."""
    body = json.loads(fetch_in(daemon, cid, f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query})))
    if body.get("status") != "success":
        raise StepFailed(f"{base}: {query} failed: {body}")
    return body["data"]["result"]


def watched_symbols(metrics: str, feed: str) -> list[str]:
    """The symbols of ``feed`` an exporter's /metrics has a state for (repeats kept)."""
    return re.findall(rf'^feedwatch_symbol_state{{feed="{re.escape(feed)}",symbol="([^"]+)"}} ', metrics, re.M)


def configured_symbols(feed: str) -> list[str]:
    (symbols,) = [f["symbols"] for f in yaml.safe_load((ROOT / "deploy/feedwatch.yml").read_text())["feeds"]
                  if f["name"] == feed]
    return symbols


def validate_grafana() -> list[str]:
    """Grafana cannot run here: its provisioning checked against Grafana's file formats, the
    compose mounts and the dashboards (tests/unit/test_compose.py and test_dashboards.py check more)."""
    problems = []
    grafana = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["grafana"]
    mounts = {v.split(":")[0].removeprefix("./").rstrip("/"): v.split(":")[1]
              for v in grafana["volumes"] if v.startswith("./")}
    if mounts.get("grafana/provisioning") != "/etc/grafana/provisioning":
        problems.append("grafana/provisioning is not mounted at /etc/grafana/provisioning")
    dashboards_dir = mounts.get("grafana/dashboards")
    provider_file = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/feedwatch.yml").read_text())
    datasource_file = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
    for name, doc, key in (("dashboards", provider_file, "providers"), ("datasources", datasource_file, "datasources")):
        if doc.get("apiVersion") != 1 or not isinstance(doc.get(key), list) or not doc[key]:
            problems.append(f"provisioning/{name}: expected apiVersion 1 and a non-empty {key} list")
    for provider in provider_file.get("providers", []):
        if provider.get("type") != "file" or provider.get("options", {}).get("path") != dashboards_dir:
            problems.append(f"provider {provider.get('name')}: not a file provider reading {dashboards_dir}")
    uids = set()
    for ds in datasource_file.get("datasources", []):
        uids.add(ds.get("uid"))
        if ds.get("type") != "prometheus" or ds.get("url") != "http://prometheus:9090":
            problems.append(f"datasource {ds.get('name')}: expected type prometheus at http://prometheus:9090")
    if None in uids:
        problems.append("a provisioned datasource has no uid")
    boards = sorted((ROOT / "grafana/dashboards").glob("*.json"))
    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home not in {f"{dashboards_dir}/{b.name}" for b in boards}:
        problems.append(f"the home dashboard {home} is not a provisioned dashboard")
    for path in boards:
        board = json.loads(path.read_text())
        if not board.get("uid") or not board.get("title"):
            problems.append(f"{path.name}: no uid or title")

        def refs(node: Any) -> list[dict[str, Any]]:
            if isinstance(node, dict):
                found = [node["datasource"]] if isinstance(node.get("datasource"), dict) else []
                return found + [r for value in node.values() for r in refs(value)]
            if isinstance(node, list):
                return [r for value in node for r in refs(value)]
            return []

        allowed = uids | {"${datasource}", "-- Grafana --"}
        for ref in refs(board):
            if ref.get("uid") not in allowed:
                problems.append(f"{path.name}: datasource {ref.get('uid')!r} is neither provisioned nor the variable")
    return problems


def print_logs(daemon: Daemon, files: list[Path]) -> None:
    """Each service's log tail and health-check output, for the failure report."""
    for service in SERVICES + TEST_SERVICES + HA_SERVICES:
        cid = daemon.compose(files, *HA_PROFILE, "ps", "-q", service, check=False).stdout.strip()
        if not cid:
            print(f"--- {service}: no container ---", file=sys.stderr)
            continue
        logs = daemon.docker("logs", "--tail", "40", cid, check=False, timeout=60)
        state = daemon.docker("inspect", "-f", "{{.State.Status}} {{json .State.Health}}", cid, check=False).stdout
        print(f"--- {service}: {state.strip()[:1500]}\n{logs.stdout[-4000:]}{logs.stderr[-4000:]}",
              file=sys.stderr, flush=True)


# --- the run ------------------------------------------------------------------------------------

def step(number: int, name: str, action: Callable[[], str | None]) -> None:
    say(f"step {number}/{STEPS} {name}: ...")
    began = time.monotonic()
    try:
        result = action()
    except StepFailed as exc:
        raise StepFailed(f"step {number}/{STEPS} {name} failed: {exc}") from None
    except subprocess.TimeoutExpired as exc:
        raise StepFailed(f"step {number}/{STEPS} {name} failed: {exc}") from None
    took = time.monotonic() - began
    TIMINGS.append((name, took))
    say(f"step {number}/{STEPS} {name}: ok in {took:.1f}s" + (f" ({result})" if result else ""))


def ensure_tools() -> str:
    needed = {"dockerd": "docker.io", "docker": "docker.io", "docker-compose": "docker-compose",
              "debootstrap": "debootstrap", "iptables": "iptables", "ip": "iproute2", "nsenter": "util-linux"}
    missing = sorted({pkg for binary, pkg in needed.items() if shutil.which(binary) is None})
    if not missing:
        return "present"
    if os.geteuid() != 0:
        raise StepFailed(f"missing {', '.join(missing)}; install: sudo apt-get install --no-install-recommends "
                         + " ".join(missing))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", "update", "-qq", env=env, timeout=600)
    run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, env=env, timeout=900)
    return "installed " + " ".join(missing)


def _try_lock(lock: Any) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def main() -> int:
    if os.geteuid() != 0:
        print("compose-test: dockerd needs root (run as root, as CI does)", file=sys.stderr)
        return 1
    keep = os.environ.get("FEEDWATCH_COMPOSE_KEEP") == "1"

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")   # unwinds through the teardown below

    signal.signal(signal.SIGTERM, interrupted)
    # One daemon per data root: a second compose-test on this machine waits for the first.
    CACHE.mkdir(parents=True, exist_ok=True)
    lock = open(CACHE / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say(f"another compose-test is using {CACHE}: waiting for it (at most 20 minutes)")
        wait_until(f"the lock on {CACHE}", lambda: _try_lock(lock), timeout=1200, interval=5)
    workdir = Path(tempfile.mkdtemp(prefix="fwct-", dir="/tmp"))
    workdir.chmod(0o755)
    daemon = Daemon(workdir)
    files = [COMPOSE_FILE]
    failed: str | None = None
    try:
        step(1, "tools", ensure_tools)

        def start() -> str:
            daemon.start()
            version = daemon.docker("version", "-f", "{{.Server.Version}}").stdout.strip()
            return f"dockerd {version} on {daemon.socket}; compose: {' '.join(daemon.compose_cmd)}"
        step(2, "dockerd", start)
        step(3, "base", lambda: build_base(daemon))

        def images() -> str:
            # Four independent chains, built side by side: most of the time is apt and pip downloads.
            tags = compose_images()
            ca = Path("/etc/ssl/certs/ca-certificates.crt").read_bytes()

            def python_and_project() -> str:
                how = build_standin(daemon, dockerfile_base(), "python.Dockerfile", {"host-ca-certificates.crt": ca})
                daemon.docker("build", "--network", "host", "-q", "-t", tags["feedwatch"], str(ROOT), timeout=900)
                return f"{dockerfile_base()} {how}, {tags['feedwatch']} built from the Dockerfile"

            def operator_image(service: str) -> str:
                version = tags[service].rsplit(":v", 1)[1]
                return f"{tags[service]} {build_standin(daemon, tags[service], f'{service}.Dockerfile', {}, version=version)}"

            pool = ThreadPoolExecutor(max_workers=4)
            try:
                futures = [pool.submit(python_and_project), pool.submit(operator_image, "prometheus"),
                           pool.submit(operator_image, "alertmanager"), pool.submit(operator_image, "victoriametrics")]
                return "; ".join(f.result() for f in futures)
            finally:
                # Stopped or failed: do not wait for the other builds; the teardown stops dockerd.
                pool.shutdown(wait=False, cancel_futures=True)
        step(4, "images", images)

        def grafana() -> str:
            problems = validate_grafana()
            if problems:
                raise StepFailed("; ".join(problems))
            return "provisioning matches the mounts and the dashboards"
        step(5, "grafana", grafana)

        def stall() -> str:
            # The exporter and the simulators first, so AAPL is seen healthy, then stalled: the
            # rules' 180 s + for: 1m run while the rest of the stack comes up and is inspected.
            files.append(write_override(workdir))
            daemon.compose(files, "up", "-d", "--no-build", "feedwatch", timeout=300)
            exporter = daemon.compose(files, "ps", "-q", "feedwatch").stdout.strip()
            updates = lambda: symbol_updates(daemon, exporter, STALLED)  # noqa: E731
            wait_until(f"the exporter to receive {STALLED}", lambda: updates() > 0, timeout=120)
            out = daemon.compose(files, "exec", "-T", "simulator", "python", "-c",
                                 "import sys, urllib.request; print(urllib.request.urlopen(urllib.request.Request("
                                 "sys.argv[1], method='POST', data=b'')).read().decode())",
                                 f"http://127.0.0.1:8775/faults/stall?symbol={STALLED}", timeout=60).stdout
            stalled = json.loads(out)["faults"]["stalled"]
            if STALLED not in stalled:
                raise StepFailed(f"the simulator did not stall {STALLED}: {out[:500]}")
            return f"{STALLED} had {updates():.0f} updates; stalled now: {', '.join(stalled)}"
        step(6, "stall", stall)

        def up() -> str:
            daemon.compose(files, "up", "-d", "--no-build", *SERVICES, *TEST_SERVICES, timeout=300)
            return " ".join(SERVICES + TEST_SERVICES) + " (grafana left out)"
        step(7, "up", up)

        ids: dict[str, str] = {}

        def healthy() -> str:
            ids.update(container_ids(daemon, files, SERVICES + TEST_SERVICES))
            wait_until("every health check", lambda: all_healthy(daemon, ids), timeout=240, interval=3)
            return f"{len(ids)} services healthy"
        step(8, "healthy", healthy)

        def hardening() -> str:
            problems = check_hardening(daemon, ids)
            if problems:
                raise StepFailed("\n  " + "\n  ".join(problems))
            code = ("import urllib.request, urllib.error\n"
                    "try:\n urllib.request.urlopen('http://127.0.0.1:10119/-/healthy', timeout=5); print(200)\n"
                    "except urllib.error.HTTPError as e:\n print(e.code)")
            status = python_in(daemon, ids["feedwatch-auth"], code).strip()
            if status != "401":
                raise StepFailed(f"feedwatch-auth answered an anonymous request with {status}, expected 401")
            log = inspect(daemon, ids["feedwatch-auth"])["State"]["Health"]["Log"][-1]["Output"].strip()
            formatter = python_in(daemon, ids["feedwatch"], "import exporter.fill as f; print(f.ACCELERATED)").strip()
            if formatter != "True":
                raise StepFailed(f"the image's exporter runs without its C formatter (exporter._fill): {formatter!r}")
            return (f"non-root, read-only root, read-only mounts; basic auth on and its probe says {log!r}; "
                    "the C formatter built in")
        step(9, "inspect", hardening)

        def notify() -> str:
            wait_until("Watchdog at the webhook",
                       lambda: firing(notifications(daemon, ids["webhook"]), "Watchdog"), timeout=180, interval=5)
            say(f"  Watchdog notified; {STALLED} turns degraded 180 s after its stall, FeedSymbolStale "
                "fires 1 m later, Alertmanager groups for 30 s")
            alerts = wait_until(f"FeedSymbolStale for {STALLED} at the webhook",
                                lambda: firing(notifications(daemon, ids["webhook"]), "FeedSymbolStale",
                                               symbol=STALLED, feed="stocks"),
                                timeout=420, interval=5)
            return f"FeedSymbolStale {alerts[0]['labels'].get('severity')}: {alerts[0]['annotations']['description']}"
        step(10, "notify", notify)

        def ha_up() -> str:
            # On top of the running stack: the profile's services share its simulators, webhook
            # receiver and images; the default services are up to date and left alone.
            daemon.compose(files, *HA_PROFILE, "up", "-d", "--no-build", *HA_SERVICES, timeout=420)
            ha_ids = container_ids(daemon, files, HA_SERVICES)
            ids.update(ha_ids)
            wait_until("every ha health check", lambda: all_healthy(daemon, ha_ids), timeout=240, interval=3)
            problems = check_hardening(daemon, ha_ids)
            if problems:
                raise StepFailed("\n  " + "\n  ".join(problems))
            return f"{len(ha_ids)} services healthy; non-root, read-only root, read-only mounts"
        step(11, "ha up", ha_up)

        def ha() -> str:
            web = ids["webhook"]
            # Every symbol exactly once between the two shards, each shard saying which it is.
            symbols = configured_symbols("stocks")
            shares: dict[str, list[str]] = {}
            for index in ("0", "1"):
                metrics = fetch_in(daemon, web, f"http://feedwatch-shard-{index}:10119/metrics")
                if f'feedwatch_shard_info{{shard="{index}",shards="2"}} 1' not in metrics:
                    raise StepFailed(f"feedwatch-shard-{index} does not say it is shard {index} of 2")
                shares[index] = watched_symbols(metrics, "stocks")
            both = shares["0"] + shares["1"]
            if sorted(both) != sorted(symbols):
                raise StepFailed(f"the shards' symbols {shares} are not {symbols}, each once")

            # Both Prometheus scrape both shards, labelled.
            for member in ("a", "b"):
                base = f"http://prometheus-{member}:9090"
                wait_until(f"prometheus-{member} scraping both shards",
                           lambda: sorted(s["metric"].get("shard", "") for s in
                                          promql(daemon, web, base, 'up{job="feedwatch"} == 1')) == ["0", "1"],
                           timeout=90)

            # The Alertmanagers are one cluster of two.
            def cluster(member: str) -> dict[str, Any]:
                return json.loads(fetch_in(daemon, web, f"http://alertmanager-{member}:9093/api/v2/status"))["cluster"]
            for member in ("a", "b"):
                wait_until(f"alertmanager-{member} in a ready cluster of two",
                           lambda: (c := cluster(member))["status"] == "ready" and len(c["peers"]) == 2, timeout=90)

            # The pair's Watchdog (it carries `cluster`, the single Prometheus' does not) reaches the
            # webhook through the cluster, without `replica`.
            def pair_watchdogs() -> list[dict[str, Any]]:
                return [a for a in firing(notifications(daemon, web), "Watchdog") if "cluster" in a["labels"]]
            first = wait_until("the HA pair's Watchdog at the webhook", pair_watchdogs, timeout=120, interval=3)
            first_at = time.monotonic()
            if any("replica" in a["labels"] for a in first) or first[0]["labels"]["cluster"] != "feedwatch":
                raise StepFailed(f"the pair's Watchdog has the wrong labels: {first[0]['labels']}")

            # VictoriaMetrics: one copy of each symbol's series although both members write it,
            # without `replica`, with the shard that watches it. (Its queries see samples 30 s
            # after they arrive: -search.latencyOffset.)
            vm = "http://victoriametrics:8428"
            query = 'feedwatch_symbol_state{job="feedwatch",feed="stocks"}'
            series = wait_until("every symbol's series in VictoriaMetrics",
                                lambda: (r := promql(daemon, web, vm, query)) and len(r) >= len(symbols) and r,
                                timeout=150, interval=5)
            labels = [s["metric"] for s in series]
            if sorted(m["symbol"] for m in labels) != sorted(symbols):
                raise StepFailed(f"VictoriaMetrics holds {len(labels)} series, not one per symbol: {labels}")
            for m in labels:
                if "replica" in m or m.get("cluster") != "feedwatch" or m["symbol"] not in shares[m.get("shard", "")]:
                    raise StepFailed(f"VictoriaMetrics series with the wrong labels: {m}")

            # Once: the second Alertmanager waits its peer timeout (15 s) for the first one's
            # notification log before it would send the same Watchdog; wait that out, then count.
            peer_timeout = 15
            wait_until("the Alertmanagers' peer timeout to pass", lambda: time.monotonic() - first_at > peer_timeout + 5,
                       timeout=peer_timeout + 10, interval=1)
            # (Its next repeat is 5 minutes away: Alertmanager's repeat_interval for the Watchdog.)
            sent = pair_watchdogs()
            if len(sent) != 1:
                raise StepFailed(f"the pair's Watchdog was notified {len(sent)} times: {sent}")
            return (f"shard 0 watches {', '.join(sorted(shares['0']))}, shard 1 {', '.join(sorted(shares['1']))}; "
                    f"both Prometheus scrape both; 2 Alertmanagers in one cluster; the pair's Watchdog notified "
                    f"once; VictoriaMetrics: {len(labels)} symbol series, one per symbol")
        step(12, "ha", ha)
    except StepFailed as exc:
        failed = str(exc)
    except (Exception, KeyboardInterrupt) as exc:  # a bug here, or stopped: still tear down, still fail loudly
        failed = f"{type(exc).__name__}: {exc}"
    finally:
        if failed:
            print(f"\ncompose-test FAILED: {failed}\n", file=sys.stderr, flush=True)
            if daemon.compose_cmd and len(files) > 1:
                print_logs(daemon, files)
            print("--- dockerd log ---\n" + daemon.log_tail(), file=sys.stderr, flush=True)
        if keep:
            say(f"FEEDWATCH_COMPOSE_KEEP=1: left running; DOCKER_HOST=unix://{daemon.socket}, "
                f"stop with: kill $(cat {daemon.pidfile})")
        else:
            def teardown() -> str:
                if daemon.compose_cmd and len(files) > 1:
                    daemon.compose(files, *HA_PROFILE, "down", "-v", "--remove-orphans", "--timeout", "10",
                                   check=False, timeout=300)
                daemon.stop()
                unmount_under(workdir)
                try:
                    shutil.rmtree(workdir)
                except OSError as exc:
                    raise StepFailed(f"cannot remove {workdir}: {exc}") from None
                return "stack removed, dockerd stopped, namespace and host rules removed"
            try:
                step(13, "teardown", teardown)
            except StepFailed as exc:
                failed = failed or str(exc)
    total = time.monotonic() - START
    say("timings: " + ", ".join(f"{name} {took:.0f}s" for name, took in TIMINGS) + f"; total {total:.0f}s")
    # A closing line CI reads like a test runner's: steps passed, steps failed.
    print(f"compose-test: {len(TIMINGS)} passed, {1 if failed else 0} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
