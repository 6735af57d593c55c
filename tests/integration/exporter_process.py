"""``feedwatch run`` as a real subprocess for chaos tests: start, wait until it serves, read its
memory from /proc, SIGKILL or SIGTERM it, and collect its exit status and log.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tests.waiting import free_port, wait_for

FEEDWATCH = [sys.executable, "-m", "exporter.cli"]


class ExporterProcess:
    """One ``feedwatch run -c <config>``; the log goes to a file (a pipe nobody reads could fill)."""

    def __init__(self, config: Path, *args: str, open_files: int | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.TemporaryFile()
        limit = open_files

        def lower_open_files() -> None:  # in the child, before exec: a hard limit it cannot raise
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self.proc = subprocess.Popen(
            [*FEEDWATCH, "run", "-c", str(config), "--web.listen-address", f"127.0.0.1:{self.port}", *args],
            stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=lower_open_files)

    def wait_serving(self, timeout: float = 30.0) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"feedwatch exited with {self.proc.returncode}:\n{self.log()}")
            with urllib.request.urlopen(self.url + "/-/healthy", timeout=2) as response:
                return response.status == 200

        wait_for(healthy, timeout=timeout, what=f"feedwatch serving on {self.url}")

    def memory_kib(self, field: str = "VmRSS") -> int:
        """VmRSS (now) or VmHWM (the peak so far) of the process, from /proc."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.proc.pid}/status")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(15)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(15)

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


def run_to_exit(config: Path, *args: str, timeout: float = 30.0) -> tuple[int, str]:
    """``feedwatch run`` expected to refuse to start: its exit status and log."""
    done = subprocess.run([*FEEDWATCH, "run", "-c", str(config), "--web.listen-address",
                           f"127.0.0.1:{free_port()}", *args], capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def stop_all(processes: list[ExporterProcess]) -> None:
    for process in processes:
        if process.proc.poll() is None:
            process.stop()
