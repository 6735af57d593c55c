"""``feedwatch demo`` cleans up after a part of the stack fails to start.

Seen from a wheel: the demo stopped on a missing Alertmanager config and left its temporary
directory (and could leave a started Alertmanager) behind. Here Prometheus is made to fail the
way a broken install does (a ``prometheus`` on PATH that exits at once) after Alertmanager has
started: the demo must say what failed, exit non-zero, stop Alertmanager and remove its temp dir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (our own temp dir: nobody else's)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


def test_a_failing_prometheus_leaves_no_temp_dir_and_no_process(tmp_path):
    assert shutil.which("prometheus-alertmanager"), "apt-get install prometheus-alertmanager"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    broken = bin_dir / "prometheus"
    broken.write_text("#!/bin/sh\necho 'prometheus: refusing to start (test)' >&2\nexit 1\n")
    broken.chmod(0o755)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(scratch)}
    result = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "demo", "--duration", "30", "--web.listen-address", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=90, env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "prometheus exited" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert list(scratch.iterdir()) == [], "the demo left its temporary directory behind"
    assert processes_mentioning(str(scratch)) == []
