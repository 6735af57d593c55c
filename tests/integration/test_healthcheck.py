"""The image's HEALTHCHECK and ``feedwatch healthcheck`` against a real ``feedwatch run``.

With ``--web.config.file`` turning basic auth on, every request gets 401 (``/-/healthy``
included, as with Prometheus), and the image's old probe (a bare ``urllib`` GET) turned the
container unhealthy. The HEALTHCHECK command is read from the Dockerfile itself and run here as
Docker would run it in the image (its PATH holds the package's virtualenv), with the settings a
user gives the container through the environment. The compose test runs it in a real container.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest

from exporter.simulator.server import Simulator
from tests.integration.test_cli import start_run, stop, write_config
from tests.waiting import async_wait_for, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse"


def dockerfile_healthcheck() -> list[str]:
    """The exec-form command of the Dockerfile's HEALTHCHECK instruction."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    (line,) = [ln for ln in text.splitlines() if ln.startswith("HEALTHCHECK ")]
    return json.loads(line.split(" CMD ", 1)[1])


@pytest.fixture
async def venue():
    sim = Simulator("polygon", ("AAPL",), rate=5, api_key="K")
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
def tls_files(tmp_path):
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=feedwatch", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def write_web_config(tmp_path: Path, tls: tuple[Path, Path] | None = None) -> Path:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    path = tmp_path / "web.yml"
    text = f"basic_auth_users:\n  healthcheck: '{hashed}'\n"
    if tls:
        text += f"tls_server_config:\n  cert_file: {tls[0]}\n  key_file: {tls[1]}\n"
    path.write_text(text)
    return path


async def run_check(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run a probe as the image does: the package's bin directory first on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDWATCH_")}
    full_env.update(env, PATH=f"{bin_dir}:{os.environ['PATH']}")
    proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, env=full_env)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode()


async def started(tmp_path: Path, venue: Simulator, web_config: Path) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    proc = await start_run("-c", str(write_config(tmp_path, venue.ws_url)), "--web.config.file", str(web_config),
                           "--web.listen-address", f"127.0.0.1:{port}")
    return proc, port


async def test_the_images_healthcheck_passes_with_basic_auth_on(tmp_path, venue):
    web_config = write_web_config(tmp_path)
    secret = tmp_path / "healthcheck-password"
    secret.write_text(PASSWORD + "\n")
    proc, port = await started(tmp_path, venue, web_config)
    env = {"FEEDWATCH_HEALTHCHECK_URL": f"http://127.0.0.1:{port}/-/healthy",
           "FEEDWATCH_WEB_CONFIG_FILE": str(web_config),
           "FEEDWATCH_HEALTHCHECK_USER": "healthcheck", "FEEDWATCH_HEALTHCHECK_PASSWORD_FILE": str(secret)}
    try:
        # Auth really is on: an anonymous probe is refused.
        rc, out = await async_wait_for(
            lambda: _settled(run_check(["feedwatch", "healthcheck", "--url", env["FEEDWATCH_HEALTHCHECK_URL"]], {})),
            timeout=30, what="the exporter answering")
        assert rc == 1 and "401" in out, out
        rc, out = await run_check(dockerfile_healthcheck(), env)
        assert rc == 0, out
        assert "200" in out
    finally:
        code, err = await stop(proc)
    assert code == 0, err


async def _settled(coro):
    """(rc, out) once the server answers at all (a refused connection means: not up yet)."""
    rc, out = await coro
    return None if "Connection refused" in out else (rc, out)


async def test_healthcheck_says_what_is_wrong(tmp_path, venue, tls_files):
    web_config = write_web_config(tmp_path, tls=tls_files)
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password")
    right = tmp_path / "right"
    right.write_text(PASSWORD)
    proc, port = await started(tmp_path, venue, web_config)
    url = f"http://127.0.0.1:{port}/-/healthy"   # TLS on: the check switches to https by itself
    base = ["feedwatch", "healthcheck", "--url", url, "--web.config.file", str(web_config)]
    try:
        rc, out = await async_wait_for(
            lambda: _settled(run_check([*base, "--user", "healthcheck", "--password-file", str(right)], {})),
            timeout=30, what="the exporter answering over TLS")
        assert (rc, out.strip()) == (0, f"healthy: https://127.0.0.1:{port}/-/healthy: 200 OK")

        rc, out = await run_check(base, {})
        assert rc == 1
        assert "turns basic auth on" in out and "FEEDWATCH_HEALTHCHECK_PASSWORD_FILE" in out

        rc, out = await run_check([*base, "--user", "healthcheck", "--password-file", str(wrong)], {})
        assert rc == 1 and "401" in out and "wrong" in out, out

        rc, out = await run_check([*base, "--user", "healthcheck", "--password-file", str(tmp_path / "none")], {})
        assert rc == 1 and "cannot read the password file" in out, out
    finally:
        code, err = await stop(proc)
    assert code == 0, err
    rc, out = await run_check([*base, "--user", "healthcheck", "--password-file", str(right)], {})
    assert rc == 1 and re.search(r"unhealthy: https://127\.0\.0\.1:\d+/-/healthy: .*refused", out), out
