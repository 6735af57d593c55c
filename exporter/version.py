"""The version of feedwatch, in one place (``pyproject.toml`` reads it from here), and the build's
revision and branch (the ``feedwatch_build_info`` labels, ``feedwatch --version``).

Revision and branch come, in order, from:

1. ``exporter/build_info.json``, written into the package by the build (``setup.py``: from git,
   or from ``FEEDWATCH_BUILD_REVISION`` / ``FEEDWATCH_BUILD_BRANCH``, which the Dockerfile sets
   from its ``REVISION`` / ``BRANCH`` build arguments);
2. git, when running from a checkout (an editable install);
3. ``unknown``.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

__version__ = "0.1.0"

UNKNOWN = "unknown"
_PACKAGE = Path(__file__).resolve().parent
BUILD_INFO_FILE = _PACKAGE / "build_info.json"


@functools.cache
def build_info() -> dict[str, str]:
    """``{"version", "revision", "branch"}`` of the code running now (looked up once)."""
    revision = branch = None
    try:
        stamped = json.loads(BUILD_INFO_FILE.read_text(encoding="utf-8"))
        revision, branch = stamped.get("revision"), stamped.get("branch")
    except (OSError, ValueError, AttributeError):
        if (_PACKAGE.parent / ".git").exists():   # a checkout: ask git (a worktree's .git is a file)
            revision = _git("rev-parse", "HEAD")
            branch = _git("rev-parse", "--abbrev-ref", "HEAD")
    return {"version": __version__, "revision": revision or UNKNOWN, "branch": branch or UNKNOWN}


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=_PACKAGE.parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
