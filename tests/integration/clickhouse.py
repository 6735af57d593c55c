"""A throwaway ClickHouse server for tests: Debian's ``clickhouse-server`` (18.16), our own directory.

Never the system service: a minimal config (HTTP and native ports free a moment ago, on
127.0.0.1 only; data, logs and temp files in a temporary directory; one ``default`` user without
a password, loopback only) and ``clickhouse-server --config-file`` on it. ``kill()`` SIGKILLs
the server as a crash or the OOM killer would; ``start()`` brings the same data directory back.
``scripts/ensure-tools.sh`` installs the package. Starting, stopping, killing and the log tail
are ``DatabaseServer``'s (tests/integration/dbserver.py).
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request

from tests.integration.dbserver import DatabaseServer
from tests.waiting import free_port

CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{root}/server.log</log><errorlog>{root}/server.err.log</errorlog><console>0</console></logger>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <path>{root}/data/</path>
    <tmp_path>{root}/tmp/</tmp_path>
    <user_files_path>{root}/user_files/</user_files_path>
    <format_schema_path>{root}/format_schemas/</format_schema_path>
    <users_config>{root}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <max_concurrent_queries>20</max_concurrent_queries>
</yandex>
"""

USERS = """<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>1000000000</max_memory_usage></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"""


def binary() -> str:
    found = shutil.which("clickhouse-server") or ("/usr/sbin/clickhouse-server"
                                                  if os.path.exists("/usr/sbin/clickhouse-server") else None)
    if found is None:
        raise AssertionError("clickhouse-server not found: run scripts/ensure-tools.sh (Debian package clickhouse-server)")
    return found


class ClickHouseServer(DatabaseServer):
    program = "clickhouse-server"
    logs = ("server.err.log", "stdout.log")

    def __init__(self) -> None:
        super().__init__("feedwatch-ch-")
        self.binary = binary()
        self.http_port = free_port()
        self.tcp_port = free_port()
        for sub in ("data", "tmp", "user_files", "format_schemas"):
            (self.root / sub).mkdir()
        (self.root / "config.xml").write_text(CONFIG.format(root=self.root, http_port=self.http_port,
                                                            tcp_port=self.tcp_port))
        (self.root / "users.xml").write_text(USERS)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        """Start the server and wait until its HTTP interface answers a query."""
        self.launch([self.binary, f"--config-file={self.root / 'config.xml'}"], "stdout.log", 90,
                    f"ClickHouse on port {self.http_port}")

    def answers(self) -> bool:
        try:
            return self.query("SELECT 1").strip() == "1"
        except (OSError, urllib.error.URLError):
            return False

    def query(self, sql: str) -> str:
        """Run one statement over HTTP (POST: a GET is read-only) and return its text output."""
        request = urllib.request.Request(self.url + "/", data=sql.encode())
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode()
