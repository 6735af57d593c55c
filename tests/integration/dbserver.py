"""What the tests' throwaway database servers share: a temporary directory of their own, one
server process started there from Debian's binary (its output in a log file beside its data),
a wait until it answers, a stop, a crash on demand, and the log's last lines for a failure.

``PostgresCluster`` (tests/integration/postgres.py) and ``ClickHouseServer``
(tests/integration/clickhouse.py) say how theirs is prepared, started and asked whether it
answers; a module's fixture is ``with PostgresCluster.running() as pg: yield pg``.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator, TypeVar

from tests.waiting import wait_for

S = TypeVar("S", bound="DatabaseServer")


class DatabaseServer:
    program = "server"                  # the binary's name, in messages
    stop_signal = signal.SIGTERM        # the server's own clean and quick shutdown
    stop_timeout = 30.0                 # then SIGKILL
    logs: tuple[str, ...] = ()          # files in ``root`` whose last lines explain a failure

    def __init__(self, prefix: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.proc: subprocess.Popen | None = None

    @classmethod
    @contextlib.contextmanager
    def running(cls: type[S]) -> Iterator[S]:
        """A new server, prepared and started; stopped and its directory removed afterwards."""
        server = cls()
        try:
            server.prepare()
            server.start()
            yield server
        finally:
            server.cleanup()

    def prepare(self) -> None:
        """What is done once, before the first start (PostgreSQL's ``initdb``)."""

    def start(self) -> None:
        raise NotImplementedError

    def answers(self) -> bool:
        """Whether the server answers a query now (False while it is starting up)."""
        raise NotImplementedError

    def launch(self, argv: list[str], output: str, timeout: float, what: str, **popen: Any) -> None:
        """Run ``argv`` in ``root``, its output appended to the file ``output`` there, and wait
        until the server answers (or its process ends: an error with the log's tail)."""
        with open(self.root / output, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.root, **popen)
        wait_for(self.accepting, timeout=timeout, interval=0.1, what=what)

    def accepting(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.program} exited with {self.proc.returncode}: {self.log_tail()}")
        return self.answers()

    def accepting_safely(self) -> bool:
        """Whether the server answers (False instead of an error when it is down)."""
        try:
            return self.proc is not None and self.proc.poll() is None and self.accepting()
        except AssertionError:
            return False

    def kill(self) -> None:
        """SIGKILL the server, as a crash or the OOM killer would, and wait for it to be gone;
        ``start()`` brings the same data directory back."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(20)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` of each log file there is."""
        tails = []
        for name in self.logs:
            try:
                tails.append("\n".join((self.root / name).read_text(errors="replace").splitlines()[-lines:]))
            except OSError:
                pass
        return "\n".join(tails)
