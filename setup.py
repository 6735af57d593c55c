"""The build-time stamp and the optional C extension; everything else about the package is in
pyproject.toml.

Wheels and sdists carry ``exporter/build_info.json``: the revision and branch they were built
from, which ``exporter.version.build_info()`` reads for ``feedwatch_build_info``. They come from
``FEEDWATCH_BUILD_REVISION`` / ``FEEDWATCH_BUILD_BRANCH`` when set (the Dockerfile's build
arguments: its context has no .git), else from git, else from a stamp the source already
carries (a wheel built from an sdist), else ``unknown``. The source tree itself is never written.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
STAMP = Path("exporter") / "build_info.json"


def _git(*args: str) -> str | None:
    if not (HERE / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def build_info() -> dict[str, str]:
    try:
        carried = json.loads((HERE / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        carried = {}
    return {
        "revision": os.environ.get("FEEDWATCH_BUILD_REVISION") or _git("rev-parse", "HEAD")
        or carried.get("revision") or "unknown",
        "branch": os.environ.get("FEEDWATCH_BUILD_BRANCH") or _git("rev-parse", "--abbrev-ref", "HEAD")
        or carried.get("branch") or "unknown",
    }


def _write(root: str) -> None:
    path = Path(root) / STAMP
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(build_info()) + "\n", encoding="utf-8")


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:   # an editable install reads git from the checkout instead
            _write(self.build_lib)


class Sdist(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        _write(base_dir)


# ``exporter.fill``'s C implementation (exporter/_fill.c): the collector's formatting, 3-4x
# cheaper, and the gathering of its values. Optional: where no C compiler is found the build
# goes on without it, and ``fill`` is Python's own ``%`` (the same text), ``gather``
# ``map(attrgetter)``. Built for CPython's stable ABI (abi3): the wheel installs on any CPython
# from 3.11 on the platform it was built for. FEEDWATCH_NO_EXTENSIONS=1 builds a pure Python
# wheel (py3-none-any) for any platform instead.
FILL = Extension("exporter._fill", ["exporter/_fill.c"], optional=True, py_limited_api=True)
EXTENSIONS = [] if os.environ.get("FEEDWATCH_NO_EXTENSIONS") else [FILL]

setup(cmdclass={"build_py": BuildPy, "sdist": Sdist}, ext_modules=EXTENSIONS,
      options={"bdist_wheel": {"py_limited_api": "cp311"}} if EXTENSIONS else {})
