"""The ``feedwatch`` command line as real subprocesses: check-config, run, demo, web config."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import bcrypt
import pytest

from exporter.simulator.server import Simulator
from tests.waiting import async_wait_for, free_port

FEEDWATCH = [sys.executable, "-m", "exporter.cli"]
REPO = Path(__file__).resolve().parents[2]


def feedwatch(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*FEEDWATCH, *args], capture_output=True, text=True, timeout=timeout)


# --- check-config, --version ------------------------------------------------------------------

def test_check_config_names_every_bad_key_and_exits_non_zero(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "thresholds: {degraded: 5m, stale: 1m}\n"
        "feeds:\n"
        "  - name: stocks\n"
        "    kind: polygon\n"
        "    url: wss://socket.polygon.io/stocks\n"
        "    symbolz: [AAPL]\n"
        "    channels: [T, X]\n"
        "    heartbeat_timeout: soon\n"
    )
    result = feedwatch("check-config", str(bad))
    assert result.returncode == 1
    err = result.stderr
    assert "feeds[0].symbolz: unknown key" in err
    assert "feeds[0].channels[1]: unknown channel 'X'" in err
    assert "feeds[0].heartbeat_timeout: invalid duration 'soon'" in err
    assert "thresholds: thresholds must satisfy" in err
    listed = [line for line in err.splitlines() if line.startswith("  ")]
    assert f"{len(listed)} problem(s)" in err   # all reported at once, not just the first


def test_check_config_summarises_a_valid_file(tmp_path):
    good = tmp_path / "good.yml"
    good.write_text(
        "feeds:\n"
        "  - {name: stocks, kind: polygon, url: 'wss://x/stocks', api_key: k, symbols: [AAPL, MSFT], market: us-equities}\n"
    )
    result = feedwatch("check-config", str(good))
    assert result.returncode == 0, result.stderr
    assert "OK: 1 feed(s), 2 symbol(s)" in result.stdout
    assert "stocks (polygon): 2 symbol(s) on 1 connection(s), market us-equities (holidays known to 2036-12-31)" \
        in result.stdout


def test_check_config_shows_a_shards_share(tmp_path):
    config = tmp_path / "sharded.yml"
    config.write_text(
        "feeds:\n"
        "  - {name: stocks, kind: polygon, url: 'wss://x/stocks', api_key: k, symbols: [AAPL, MSFT, NVDA, TSLA]}\n"
        "  - {name: one, kind: polygon, url: 'wss://x/stocks', api_key: k, symbols: [IBM]}\n"
    )
    from exporter.sharding import owner

    for index in range(3):
        mine = [s for s in ("AAPL", "MSFT", "NVDA", "TSLA") if owner("stocks", s, 3) == index]
        result = feedwatch("check-config", str(config), "--shard", f"{index}/3")
        assert result.returncode == 0, result.stderr
        assert f"OK: shard {index}/3: " in result.stdout and f"{len(mine) + (owner('one', 'IBM', 3) == index)} of 5 symbol(s)" \
            in result.stdout, result.stdout
        assert ("standby" in result.stdout) == (owner("one", "IBM", 3) != index or not mine), result.stdout
    result = feedwatch("check-config", str(config), "--shard", "3/3")
    assert result.returncode == 1 and "--shard: shard index 3 is out of range" in result.stderr


def test_example_configs_are_valid():
    assert feedwatch("check-config", str(REPO / "examples" / "demo.yml")).returncode == 0
    result = subprocess.run([*FEEDWATCH, "check-config", str(REPO / "examples" / "polygon.yml")],
                            capture_output=True, text=True, timeout=30,
                            env={"POLYGON_API_KEY": "example", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr


def test_missing_environment_variable_is_a_config_error():
    result = subprocess.run([*FEEDWATCH, "check-config", str(REPO / "examples" / "polygon.yml")],
                            capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert "feeds[0].api_key: environment variable POLYGON_API_KEY is not set" in result.stderr


def test_version():
    from exporter import __version__

    result = feedwatch("--version")
    # Running from the checkout: revision and branch come from git (exporter/version.py).
    revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    branch = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    assert result.returncode == 0
    assert result.stdout.strip() == f"feedwatch {__version__} (revision {revision}, branch {branch})"


# --- feedwatch run ----------------------------------------------------------------------------

@pytest.fixture
async def venue():
    sim = Simulator("polygon", ("AAPL", "MSFT"), rate=20, api_key="K")
    await sim.start()
    yield sim
    await sim.stop()


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "feedwatch.yml"
    path.write_text(
        "feeds:\n"
        "  - name: stocks\n"
        "    kind: polygon\n"
        f"    url: {url}\n"
        "    api_key: ${TEST_KEY}\n"
        "    symbols: [AAPL, MSFT]\n"
        "    reconnect: {initial_delay: 100ms, max_delay: 1s}\n"
    )
    return path


async def start_run(*args: str, env_key: str = "K") -> asyncio.subprocess.Process:
    import os

    return await asyncio.create_subprocess_exec(
        *FEEDWATCH, "run", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TEST_KEY": env_key})


async def stop(proc: asyncio.subprocess.Process, signal_it: bool = True) -> tuple[int, str]:
    """SIGTERM (unless it is expected to exit by itself), then its exit status and stderr."""
    if signal_it and proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    except asyncio.TimeoutError:
        proc.kill()
        _, err = await proc.communicate()
    return proc.returncode, err.decode()


async def test_run_serves_metrics_with_data_and_exits_zero_on_sigterm(tmp_path, venue):
    port = free_port()
    proc = await start_run("-c", str(write_config(tmp_path, venue.ws_url)),
                           "--web.listen-address", f"127.0.0.1:{port}", "--log.format", "json")
    try:
        async with aiohttp.ClientSession() as http:
            async def scrape() -> str:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    return await resp.text() if resp.status == 200 else ""

            def updates(text: str, symbol: str) -> float:
                m = re.search(rf'^feedwatch_symbol_updates_total{{feed="stocks",symbol="{symbol}"}} (\S+)$', text, re.M)
                return float(m.group(1)) if m else 0.0

            text = await async_wait_for(
                lambda: _when(scrape(), lambda t: updates(t, "AAPL") > 0 and updates(t, "MSFT") > 0),
                timeout=20, what="/metrics with updates for both symbols")
            assert re.search(r'^feedwatch_feed_up{feed="stocks",connection="0"} 1(\.0)?$', text, re.M)
            assert re.search(r'^feedwatch_feed_connects_total{feed="stocks"} 1(\.0)?$', text, re.M)
            assert "feedwatch_build_info" in text
    finally:
        rc, err = await stop(proc)
    assert rc == 0, err
    records = [json.loads(line) for line in err.splitlines()]   # --log.format json: every line is JSON
    assert {"level": "info", "logger": "exporter.commands.run", "msg": "stopped"}.items() <= records[-1].items()
    # The collector was tuned once started (exporter/gctune.py): the values read back from gc.
    from exporter.gctune import THRESHOLDS

    tuned = [r for r in records if r["msg"].startswith("garbage collector tuned")]
    assert len(tuned) == 1 and tuned[0]["gc_thresholds"] == list(THRESHOLDS) and tuned[0]["gc_frozen"] > 10_000, tuned
    # The compiled formatter (exporter/_fill.c, built by the editable install) is the one in use, and said so.
    assert [r["formatter"] for r in records if r["msg"].startswith("/metrics formatting")] == ["c"]
    await async_wait_for(lambda: venue.stats.connections_open == 0, what="socket closed by the exporter")


async def _when(coro, predicate):
    value = await coro
    return value if predicate(value) else None


async def test_run_with_an_invalid_config_exits_one_naming_the_key(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("feeds:\n  - {name: s, kind: polygon, url: 'ws://x', symbls: [A]}\n")
    proc = await start_run("-c", str(path))
    rc, err = await stop(proc, signal_it=False)
    assert rc == 1
    assert "feeds[0].symbls: unknown key" in err


async def test_run_refuses_a_tick_sink_with_nowhere_to_write(tmp_path):
    """No journal file (no trading state file, no journal.path) and no tick_sink.path: refused at
    start with the key, not a traceback and not a file in some working directory."""
    path = tmp_path / "ticks.yml"
    path.write_text("feeds:\n  - {name: s, kind: polygon, url: 'ws://127.0.0.1:9', api_key: k, symbols: [A]}\n"
                    "tick_sink: {}\n")
    proc = await start_run("-c", str(path), "--web.listen-address", f"127.0.0.1:{free_port()}")
    rc, err = await stop(proc, signal_it=False)
    assert rc == 1, err
    assert "refusing to start: tick_sink.path: no SQLite file to write ticks to" in err
    assert "Traceback" not in err


async def test_web_config_basic_auth_and_tls(tmp_path, venue):
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web_config = tmp_path / "web.yml"
    web_config.write_text(
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    port = free_port()
    proc = await start_run("-c", str(write_config(tmp_path, venue.ws_url)), "--web.config.file", str(web_config),
                           "--web.listen-address", f"127.0.0.1:{port}")
    trust = ssl.create_default_context(cafile=str(cert))
    url = f"https://127.0.0.1:{port}/metrics"
    try:
        async with aiohttp.ClientSession() as http:
            async def status(user: str | None = None, password: str = "") -> int:
                headers = {}
                if user is not None:
                    headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
                async with http.get(url, ssl=trust, headers=headers) as resp:
                    return resp.status

            assert await async_wait_for(status, timeout=20, what="https server up") == 401
            assert await status("prometheus", "wrong") == 401
            assert await status("nobody", "s3cret") == 401
            assert await status("prometheus", "s3cret") == 200
            assert await status("prometheus", "s3cret") == 200   # the cached path
            assert await status("prometheus", "wrong") == 401    # the cache holds successes only
            with pytest.raises(aiohttp.ClientError):            # plain HTTP is not served
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    await resp.read()
    finally:
        rc, err = await stop(proc)
    assert rc == 0, err


async def test_web_config_rejects_plain_passwords(tmp_path, venue):
    web_config = tmp_path / "web.yml"
    web_config.write_text("basic_auth_users:\n  prometheus: hunter2\nunknown: 1\n")
    proc = await start_run("-c", str(write_config(tmp_path, venue.ws_url)), "--web.config.file", str(web_config))
    rc, err = await stop(proc, signal_it=False)
    assert rc == 1
    assert "basic_auth_users.prometheus: expected a bcrypt hash" in err
    assert "unknown: unknown key" in err


# --- feedwatch demo ---------------------------------------------------------------------------

async def test_demo_runs_bounded_and_shows_a_state_change():
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *FEEDWATCH, "demo", "--duration", "11", "--web.listen-address", f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out_text, err_text = out.decode(), err.decode()
    assert proc.returncode == 0, err_text
    assert f"http://127.0.0.1:{port}/metrics" in out_text
    assert f"http://127.0.0.1:{port}/api/v1/status" in out_text
    assert "stocks up | healthy 5 degraded 0" in out_text          # the live summary, before...
    assert "stocks up | healthy 4 degraded 1" in out_text          # ...and after AAPL stalled
    assert "AAPL on stocks: healthy -> degraded" in err_text       # the transition, logged
    assert "demo stopped" in out_text
