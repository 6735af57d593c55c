"""``feedwatch demo`` cleans up after itself, as a real subprocess with the real Prometheus and
Alertmanager.

- SIGKILLed, it leaves no Prometheus or Alertmanager running (they get SIGTERM from the kernel
  when it dies: PR_SET_PDEATHSIG), and the next demo removes the directory it left; before that,
  it opened without a false FeedwatchExporterDown.
- With a broken rule file, it exits non-zero naming the file and the error, with nothing left
  running and no directory left behind.

Each demo gets its own TMPDIR, so its processes are found by their working directory on the
command line, never confused with another demo on the same machine. (tests/integration/test_cli.py
runs the demo's ordinary bounded life; tests/unit/test_stack_derivation.py the construction that
keeps a starting demo from paging FeedwatchExporterDown.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from exporter.alerting import stack as alertstack
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

FEEDWATCH = [sys.executable, "-m", "exporter.cli"]


def _processes_under(directory: Path) -> dict[int, str]:
    """Live processes (zombies are dead) whose command line names ``directory``: pid -> command."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile
            continue
        if str(directory) in cmdline and state != "Z":
            found[int(entry.name)] = cmdline
    return found


def _demo(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    return subprocess.Popen([*FEEDWATCH, "demo", "--web.listen-address", "127.0.0.1:0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, env=env)


def test_a_sigkilled_demo_leaves_no_prometheus_or_alertmanager(tmp_path: Path) -> None:
    demo = _demo(tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(demo.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        # The scenario stalls AAPL 3 s in: its stale-price notification shows the whole pipeline
        # working. By then a false FeedwatchExporterDown at start-up would have been printed too
        # (it came 3 s after the start, one run in four, before the fix).
        wait_for(lambda: any("FIRING FeedSymbolStale" in line for line in lines), timeout=90, interval=0.2,
                 what="the demo's first FeedSymbolStale notification")
        assert not [line for line in lines if "FeedwatchExporterDown" in line], "".join(lines)

        children = _processes_under(tmp_path)
        names = sorted(Path(cmd.split()[0]).name for cmd in children.values())
        assert names == ["prometheus", "prometheus-alertmanager"], children
        (workdir,) = tmp_path.glob(alertstack.DEMO_DIR_PREFIX + "*")

        demo.send_signal(signal.SIGKILL)
        demo.wait(10)
        wait_for(lambda: not _processes_under(tmp_path), timeout=30, interval=0.1,
                 what=f"the demo's Prometheus and Alertmanager to die with it: {children}")
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
        for pid in _processes_under(tmp_path):  # only if the test failed: leave nothing behind
            os.kill(pid, signal.SIGKILL)

    # The killed demo could not remove its working directory; the next demo does.
    assert workdir.exists()
    assert alertstack.sweep_demo_dirs(tmp_path) == [workdir]
    assert not workdir.exists()


def test_a_broken_rule_file_stops_the_demo_and_leaves_nothing(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "broken.yml").write_text("groups:\n  - name: broken\n    rules:\n      - alert: Broken\n"
                                      "        expr: up ==\n        for: 1m\n")
    demo = _demo(tmp_path, "--rules", str(rules), "--duration", "60")
    try:
        out, err = demo.communicate(timeout=90)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
        leftovers = _processes_under(tmp_path)
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
    assert demo.returncode == 1, out + err
    message = [line for line in err.splitlines() if not line.startswith("ts=")]
    assert message[0] == "feedwatch demo: prometheus exited with status 1 at start:", err
    assert f"{rules / 'broken.yml'}: 5:15: group \"broken\", rule 1, \"Broken\": could not parse expression" in err
    assert leftovers == {}, "Alertmanager (or Prometheus) survived the failed start"
    assert not list(tmp_path.glob(alertstack.DEMO_DIR_PREFIX + "*")), "the working directory was left behind"
    assert "feedwatch demo is running" not in out
