"""Real ``feedwatch run`` and ``feedwatch simulate`` processes on 127.0.0.1, several at a time.

For the scaling tests (sharded and redundant replicas, HA Prometheus, remote storage)::

    sim = start_simulator("stocks", ["--venue", "polygon", "--rate", "5"], workdir)
    replica = start_exporter(config_path, workdir, "shard-0", "--shard", "0/3", env={"SIM_URL": sim.ws_url})
    wait_ready(replica)
    samples = replica.samples()               # [(name, labels, value)] of one scrape of /metrics
    replica.stop()                            # SIGTERM, then SIGKILL if it lingers; kill() is SIGKILL

Every process logs into ``workdir``; ``describe()`` gives a log tail for assertion messages.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.stack import SimulatorProcess, _feedwatch, _start_simulator
from tests.waiting import free_port, wait_for


def start_simulator(name: str, args: list[str], workdir: Path) -> SimulatorProcess:
    """``feedwatch simulate ARGS`` on free ports; returns once it prints its URLs."""
    return _start_simulator(name, args, workdir)


def simulator_state(sim: SimulatorProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"{sim.control_url}/state", timeout=5) as resp:
        return json.load(resp)


def simulator_fault(sim: SimulatorProcess, name: str, symbol: str | None = None) -> dict[str, Any]:
    url = f"{sim.control_url}/faults/{name}" + (f"?{urllib.parse.urlencode({'symbol': symbol})}" if symbol else "")
    with urllib.request.urlopen(urllib.request.Request(url, method="POST", data=b""), timeout=5) as resp:
        return json.load(resp)


def stop_popen(popen: subprocess.Popen, timeout: float = 10.0) -> None:
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout)
    if popen.stdout is not None:
        popen.stdout.close()


@dataclass
class ExporterProcess:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as resp:
            return resp.read().decode()

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(self.metrics())
                for s in family.samples]

    def describe(self, lines: int = 20) -> str:
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:] if self.log_path.exists() else []
        return f"--- {self.name} log ---\n" + "\n".join(tail)

    def stop(self) -> None:
        stop_popen(self.popen)

    def kill(self) -> None:
        """SIGKILL: the process dies without closing anything (a crashed replica)."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)


def start_exporter(config_path: Path, workdir: Path, name: str, *args: str,
                   env: Mapping[str, str] | None = None, port: int = 0) -> ExporterProcess:
    """``feedwatch run -c CONFIG ARGS`` on a free port (or ``port``); does not wait for it."""
    port = port or free_port()
    log_path = workdir / f"{name}.log"
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            _feedwatch("run", "-c", str(config_path), "--web.listen-address", f"127.0.0.1:{port}", *args),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    return ExporterProcess(name, popen, port, log_path)


def wait_ready(process: ExporterProcess, timeout: float = 30.0) -> None:
    """Until ``/-/ready`` answers 200 (every feed connected); fails with the log if it exits."""
    def ready() -> bool:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited with {process.popen.returncode}\n{process.describe()}")
        try:
            with urllib.request.urlopen(f"{process.url}/-/ready", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    wait_for(ready, timeout=timeout, interval=0.1, what=f"{process.name} ready")
