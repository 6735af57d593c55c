"""A throwaway PostgreSQL cluster for tests: Debian's server binaries, our own data directory.

Never the system service: ``initdb`` makes a cluster in a temporary directory, ``postgres`` runs
it on a free port on 127.0.0.1 (its socket in the same directory), as the unprivileged
``postgres`` user when the tests run as root (PostgreSQL refuses to run as root). ``kill()``
SIGKILLs the postmaster, as a crash or the OOM killer would; ``start()`` brings the same data
directory back (crash recovery included). ``scripts/ensure-tools.sh`` installs the package.
Starting, stopping, killing and the log tail are ``DatabaseServer``'s (tests/integration/dbserver.py).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from tests.integration.dbserver import DatabaseServer
from tests.waiting import free_port, wait_for


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    postgres = shutil.which("postgres")
    if postgres:
        return Path(postgres).resolve().parent
    raise AssertionError("PostgreSQL server binaries not found: run scripts/ensure-tools.sh (Debian package postgresql)")


class PostgresCluster(DatabaseServer):
    program = "postgres"
    stop_signal = signal.SIGINT     # fast shutdown
    stop_timeout = 20.0
    logs = ("server.log",)

    def __init__(self) -> None:
        super().__init__("feedwatch-pg-")
        self.bin = _bindir()
        self.data = self.root / "data"
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.dsn = f"host=127.0.0.1 port={self.port} dbname=postgres user=feedwatch connect_timeout=2"

    def _demote(self) -> None:
        if self.user is not None:
            os.setgid(self.user.pw_gid)
            os.setuid(self.user.pw_uid)

    def prepare(self) -> None:
        """``initdb``: a new cluster in the data directory, ``feedwatch`` its trusted superuser."""
        subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "feedwatch", "-A", "trust",
                        "--no-sync", "-E", "UTF8", "--locale=C"],
                       check=True, capture_output=True, preexec_fn=self._demote, cwd=self.root)

    def start(self) -> None:
        """Start the server on its port and wait until it accepts connections."""
        self.launch([str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
                     "-k", str(self.root), "-c", "fsync=off", "-c", "full_page_writes=off"],
                    "server.log", 60, f"PostgreSQL on port {self.port}", preexec_fn=self._demote)

    def answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def kill(self) -> None:
        """SIGKILL the postmaster, then wait until its children (backends) are gone too."""
        assert self.proc is not None
        children = _children(self.proc.pid)
        super().kill()
        # Backends notice the postmaster's death and exit; a new postmaster refuses to start while
        # they still hold the old shared memory.
        wait_for(lambda: not any(_alive(c) for c in children), timeout=30, what="the old backends to exit")

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
