"""A throwaway PostgreSQL cluster for tests: Debian's server binaries, our own data directory.

Never the system service: ``initdb`` makes a cluster in a temporary directory, ``postgres`` runs
it on a free port on 127.0.0.1 (its socket in the same directory), as the unprivileged
``postgres`` user when the tests run as root (PostgreSQL refuses to run as root). ``kill()``
SIGKILLs the postmaster, as a crash or the OOM killer would; ``start()`` brings the same data
directory back (crash recovery included). ``scripts/ensure-tools.sh`` installs the package.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.waiting import free_port, wait_for


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    postgres = shutil.which("postgres")
    if postgres:
        return Path(postgres).resolve().parent
    raise AssertionError("PostgreSQL server binaries not found: run scripts/ensure-tools.sh (Debian package postgresql)")


class PostgresCluster:
    def __init__(self) -> None:
        self.bin = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="feedwatch-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.dsn = f"host=127.0.0.1 port={self.port} dbname=postgres user=feedwatch connect_timeout=2"

    def _demote(self) -> None:
        if self.user is not None:
            os.setgid(self.user.pw_gid)
            os.setuid(self.user.pw_uid)

    def init(self) -> None:
        subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "feedwatch", "-A", "trust",
                        "--no-sync", "-E", "UTF8", "--locale=C"],
                       check=True, capture_output=True, preexec_fn=self._demote, cwd=self.root)

    def start(self) -> None:
        """Start the server on its port and wait until it accepts connections."""
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
             "-k", str(self.root), "-c", "fsync=off", "-c", "full_page_writes=off"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._demote, cwd=self.root)
        log.close()
        wait_for(self.accepting, timeout=60, interval=0.1, what=f"PostgreSQL on port {self.port}")

    def accepting(self) -> bool:
        import psycopg

        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"postgres exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            with psycopg.connect(self.dsn) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def accepting_safely(self) -> bool:
        """Whether the server answers (False instead of an error when it is down)."""
        try:
            return self.proc is not None and self.proc.poll() is None and self.accepting()
        except AssertionError:
            return False

    def kill(self) -> None:
        """SIGKILL the postmaster, then wait until its children (backends) are gone too."""
        assert self.proc is not None
        pid = self.proc.pid
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        # Backends notice the postmaster's death and exit; a new postmaster refuses to start while
        # they still hold the old shared memory.
        wait_for(lambda: not any(_alive(c) for c in children), timeout=30, what="the old backends to exit")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.root / "server.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.dsn) as conn:
            return conn.execute(sql, params).fetchall()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
