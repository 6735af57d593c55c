"""A venue that lives in another installed package, found through the entry points.

``tests/plugins/feedwatch-echo`` is a third-party plugin as someone would publish it: an adapter
(``feedwatch.venues``) and a simulator dialect (``feedwatch.dialects``), importing only
feedwatch's public building blocks. It is built and installed for real (pip, into a throwaway
directory put on the subprocesses' PYTHONPATH, so the test venv itself never changes), then
used by real ``feedwatch`` processes: ``check-config`` lists it among the kinds, and a loopback
feed of kind ``echo`` against ``feedwatch simulate --venue echo`` fills /metrics.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.waiting import free_port, wait_for

pytestmark = pytest.mark.integration

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "feedwatch-echo"
FEEDWATCH = [sys.executable, "-m", "exporter.cli"]


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(PLUGIN)], check=True, capture_output=True, timeout=300)
    assert list(target.glob("feedwatch_venue_echo-*.dist-info/entry_points.txt")), "the plugin's metadata"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(target), env.get("PYTHONPATH", "")) if p)
    return env


def feedwatch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FEEDWATCH, *args], capture_output=True, text=True, timeout=60, env=env)


def test_check_config_lists_the_plugin_kind_and_checks_its_keys(plugin_env, tmp_path):
    typo = tmp_path / "typo.yml"
    typo.write_text("feeds:\n  - {name: e, kind: ech0, url: 'ws://127.0.0.1:1', symbols: [AAPL]}\n")
    result = feedwatch(plugin_env, "check-config", str(typo))
    assert result.returncode == 1
    assert re.search(r"feeds\[0\]\.kind: unknown feed kind 'ech0' \(known kinds: [^)]*\becho\b", result.stderr), \
        result.stderr

    bad = tmp_path / "bad.yml"
    bad.write_text("feeds:\n  - {name: e, kind: echo, url: 'ws://127.0.0.1:1', symbols: [AAPL], greeting: '',"
                   " greetin: x}\n")
    result = feedwatch(plugin_env, "check-config", str(bad))
    assert result.returncode == 1
    assert "feeds[0].greetin: unknown key (did you mean 'greeting'?)" in result.stderr   # the plugin's Options
    assert "feeds[0].greeting: must not be empty" in result.stderr                       # its check_config

    good = tmp_path / "good.yml"
    good.write_text("feeds:\n  - {name: e, kind: echo, url: 'ws://127.0.0.1:1', symbols: [AAPL, MSFT]}\n")
    result = feedwatch(plugin_env, "check-config", str(good))
    assert result.returncode == 0, result.stderr
    assert "e (echo): 2 symbol(s)" in result.stdout


def test_help_lists_the_plugin_venue_and_dialect(plugin_env):
    """--help shows what is installed: the plugin's kind in run's list, its dialect in simulate's."""
    result = feedwatch(plugin_env, "simulate", "--help")
    assert result.returncode == 0, result.stderr
    assert "--venue {binance,bybit,echo,generic,polygon,trading}" in " ".join(result.stdout.split())
    assert re.search(r"^  echo +\S", result.stdout, re.M), result.stdout
    result = feedwatch(plugin_env, "run", "--help")
    assert "binance, bybit, echo, generic, polygon, trading" in result.stdout


def test_without_the_plugin_the_kind_is_unknown(tmp_path):
    """The control case: the kind comes from the installed plugin, nothing in feedwatch knows it."""
    good = tmp_path / "good.yml"
    good.write_text("feeds:\n  - {name: e, kind: echo, url: 'ws://127.0.0.1:1', symbols: [AAPL]}\n")
    result = feedwatch(dict(os.environ), "check-config", str(good))
    assert result.returncode == 1
    assert "unknown feed kind 'echo'" in result.stderr


def test_a_plugin_venue_runs_end_to_end_on_loopback(plugin_env, tmp_path):
    simulator = subprocess.Popen([*FEEDWATCH, "simulate", "--venue", "echo", "--rate", "20"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=plugin_env)
    exporter = None
    try:
        line = simulator.stdout.readline()  # "ws: ws://127.0.0.1:PORT"; the process prints it once listening
        assert line.startswith("ws: "), (line, simulator.stderr.read() if simulator.poll() is not None else "")
        port = free_port()
        config = tmp_path / "echo.yml"
        config.write_text(f"listen: 127.0.0.1:{port}\n"
                          f"feeds:\n  - {{name: echoes, kind: echo, url: '{line[4:].strip()}', symbols: [AAPL, MSFT],"
                          f" greeting: hi}}\n")
        exporter = subprocess.Popen([*FEEDWATCH, "run", "-c", str(config)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True, env=plugin_env)

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return response.read().decode()

        def updated() -> dict[str, float]:
            counts = dict(re.findall(r'feedwatch_symbol_updates_total\{feed="echoes",symbol="(\w+)"\} (\S+)', scrape()))
            return counts if len(counts) == 2 and all(float(v) >= 3 for v in counts.values()) else {}

        wait_for(updated, timeout=30, what="AAPL and MSFT updates from the echo plugin venue")
        text = scrape()
        assert 'feedwatch_feed_up{feed="echoes",connection="0"} 1' in text
        assert 'feedwatch_symbol_state{feed="echoes",symbol="AAPL"} 0' in text
    finally:
        for process in (exporter, simulator):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
