"""``is_ready`` believes only its own Prometheus.

The demo prefers port 9090. A Prometheus that fails at start (a broken install) leaves that port
to whoever takes it next: on a shared machine another demo's or test's Prometheus. Asking
``/-/ready`` alone, the demo took that one's answer for its own and ran on (seen in the suite:
``test_demo_cleanup`` got "feedwatch demo is running" with a Prometheus that had exited). The
answer counts only when the server's ``config.file`` flag is the one this process was started with.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from exporter.alerting.stack import Process, is_ready


def serve_prometheus_like(config_file: str) -> ThreadingHTTPServer:
    """A stand-in for someone else's Prometheus on a port: ready, with its own config file."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/-/ready":
                body = b"Prometheus Server is Ready.\n"
            elif self.path == "/api/v1/status/flags":
                body = json.dumps({"status": "success", "data": {"config.file": config_file}}).encode()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def alive(tmp_path: Path):
    """A child that is still running (as a failing ``prometheus`` script is, for a moment)."""
    popen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield popen
    popen.kill()
    popen.wait(10)


@pytest.mark.parametrize("theirs, ready", [("/elsewhere/prometheus.yml", False), ("OURS", True)])
def test_a_prometheus_answering_on_the_port_counts_only_if_it_runs_our_config(tmp_path, alive, theirs, ready):
    ours = str(tmp_path / "prometheus.yml")
    server = serve_prometheus_like(ours if theirs == "OURS" else theirs)
    try:
        alive.args = ["prometheus", f"--config.file={ours}", "--web.listen-address=127.0.0.1:9090"]
        process = Process("prometheus", alive, f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "log")
        assert is_ready(process) is ready
    finally:
        server.shutdown()
        server.server_close()
