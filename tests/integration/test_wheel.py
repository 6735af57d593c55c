"""The package as a user gets it: sdist and wheel built, the wheel installed into a fresh virtualenv
outside the repository, every command run from an empty directory.

Seen before: ``pip install .`` then ``feedwatch alertmanager-config`` outside the clone failed on
a missing ``site-packages/alertmanager/alertmanager.yml``, and ``feedwatch demo`` on a missing
``site-packages/examples/demo.yml``: the wheel held only the code. Here the wheel's files are
compared with the repository's folders, and each command must work with nothing but the wheel.

``python -m build`` builds the sdist first and the wheel from it, so the sdist is proven complete
too. pip may fetch the dependencies from the index (its cache is usually warm).
"""

from __future__ import annotations

import asyncio
import email.parser
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import tomllib
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest

from exporter import resources
from exporter.version import __version__
from tests.waiting import async_wait_for, free_port, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
MAPPED = PYPROJECT["tool"]["setuptools"]["package-dir"]


def tracked_files(folder: str) -> set[str]:
    """Files git tracks under ``folder`` (relative to it), minus the mapping markers."""
    out = subprocess.run(["git", "ls-files", "--", folder], cwd=ROOT, capture_output=True, text=True, check=True)
    return {line[len(folder) + 1:] for line in out.stdout.splitlines()
            if not line.endswith("__init__.py") and (ROOT / line).exists()}


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]
    # No packaging deprecation (the TOML-table license did warn) and no "package would be ignored".
    for warning in ("SetuptoolsDeprecationWarning", "BuildBackendWarning", "DeprecationWarning", "deprecated"):
        assert warning not in log, "\n".join(line for line in log.splitlines() if warning in line)[:3000]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def installed(dist, tmp_path_factory) -> Path:
    """A fresh virtualenv outside the repository with only the wheel installed; its bin directory."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=True)
    done = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(dist["wheel"])],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return env_dir / "bin"


@pytest.fixture
def empty_dir(tmp_path) -> Path:
    path = tmp_path / "empty"
    path.mkdir()
    return path


def user_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a user of the wheel: its venv first on PATH, nothing of the repository."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("FEEDWATCH_")}
    env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", **extra)
    return env


def feedwatch(bin_dir: Path, cwd: Path, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir / "feedwatch"), *args], cwd=cwd, env=user_env(bin_dir, **env),
                          capture_output=True, text=True, timeout=timeout)


# --- what the archives hold -------------------------------------------------------------------------

def test_the_wheel_carries_every_shipped_file_and_the_license(dist):
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
        metadata = email.parser.Parser().parsestr(
            wheel.read(f"feedwatch-{__version__}.dist-info/METADATA").decode())
    for resource in resources.ALL:
        prefix = resource.package.replace(".", "/") + "/"
        shipped = {n[len(prefix):] for n in names if n.startswith(prefix) and not n.endswith("__init__.py")}
        assert shipped == tracked_files(MAPPED[resource.package]), resource.layout
    assert "exporter/web/static/status.html" in names
    assert "exporter/trading/schemas/trading-event.schema.json" in names
    assert f"feedwatch-{__version__}.dist-info/licenses/LICENSE" in names
    assert metadata["License-Expression"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    assert any(url.startswith("Source, https://") for url in metadata.get_all("Project-URL"))
    assert "Topic :: System :: Monitoring" in metadata.get_all("Classifier")


def test_every_code_module_is_in_the_wheel(dist):
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
    modules = {f"exporter/{p}" for p in tracked_files("exporter") if p.endswith(".py")}
    modules |= {"exporter/__init__.py"} | {f"exporter/{p.parent}/__init__.py".replace("/./", "/")
                                           for p in map(Path, tracked_files("exporter"))
                                           if (ROOT / "exporter" / p.parent / "__init__.py").exists()}
    assert modules - names == set()


def test_the_sdist_holds_the_sources_of_every_resource(dist):
    with tarfile.open(dist["sdist"]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    for folder in MAPPED.values():
        assert {f"{folder}/{f}" for f in tracked_files(folder)} <= names, folder
    assert {"LICENSE", "README.md", "pyproject.toml"} <= names


def test_the_wheel_carries_the_compiled_formatter_and_the_sdist_its_source(dist, installed, empty_dir):
    """exporter._fill (setup.py: optional, built where a C compiler is found, as here): in the wheel,
    compiled for CPython's stable ABI (any CPython from 3.11 on this platform); in the sdist, its C
    source; imported by the installed package."""
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        assert "exporter/_fill.abi3.so" in wheel.namelist()
    assert "-cp311-abi3-linux_" in dist["wheel"].name, dist["wheel"].name
    with tarfile.open(dist["sdist"]) as sdist:
        assert any(n.endswith("/exporter/_fill.c") for n in sdist.getnames())
    done = subprocess.run([str(installed / "python"), "-c", "import exporter.fill as f; print(f.ACCELERATED, f.fill)"],
                          cwd=empty_dir, env=user_env(installed), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("True <built-in function fill>"), done.stdout


def test_no_extensions_builds_a_pure_python_wheel_for_any_platform(dist, tmp_path):
    """FEEDWATCH_NO_EXTENSIONS=1 (docs/deployment.md): the wheel is py3-none-any, without the
    compiled module (``fill`` is then Python's ``%``: tests/unit/test_fill.py compares the two)."""
    env = {**os.environ, "FEEDWATCH_NO_EXTENSIONS": "1"}
    done = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(dist["sdist"])],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "exporter/fill.py" in names and not [n for n in names if n.endswith(".so")]


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def test_the_archives_say_which_revision_they_were_built_from(dist, installed, empty_dir):
    """setup.py stamps exporter/build_info.json into the sdist, and the wheel (built from the sdist,
    which has no .git) carries it on: feedwatch_build_info and --version name the build."""
    stamp = {"revision": git("rev-parse", "HEAD"), "branch": git("rev-parse", "--abbrev-ref", "HEAD")}
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        assert json.loads(wheel.read("exporter/build_info.json")) == stamp
    with tarfile.open(dist["sdist"]) as sdist:
        member = next(m for m in sdist.getmembers() if m.name.endswith("/exporter/build_info.json"))
        assert json.loads(sdist.extractfile(member).read()) == stamp
    done = feedwatch(installed, empty_dir, "--version")
    assert done.stdout.strip() == f"feedwatch {__version__} (revision {stamp['revision']}, branch {stamp['branch']})"


# --- the commands, from an empty directory ------------------------------------------------------------

def test_the_package_is_imported_from_the_venv_not_the_repository(installed, empty_dir):
    done = subprocess.run([str(installed / "python"), "-c", "import exporter, exporter.resources as r; "
                           "print(exporter.__file__); print(r.path(r.PROMETHEUS))"],
                          cwd=empty_dir, env=user_env(installed), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for line in done.stdout.splitlines():
        assert "site-packages" in line and str(ROOT) not in line


def test_alertmanager_config_renders_from_the_wheel(installed, empty_dir):
    done = feedwatch(installed, empty_dir, "alertmanager-config", FEEDWATCH_WEBHOOK_URL="http://127.0.0.1:9/x")
    assert done.returncode == 0, done.stderr
    assert "channels: webhook" in done.stderr
    (template,) = re.findall(r"^- (\S+\.tmpl)$", done.stdout, re.M)
    assert "site-packages/exporter/resources/alertmanager/templates" in template
    out = empty_dir / "alertmanager.yml"
    done = feedwatch(installed, empty_dir, "alertmanager-config", "--output", str(out), "--check")
    assert done.returncode == 0, done.stderr


def test_init_writes_rules_that_promtool_and_amtool_accept(installed, empty_dir):
    done = feedwatch(installed, empty_dir, "init", "stack")
    assert done.returncode == 0, done.stderr
    stack = empty_dir / "stack"
    for resource in resources.ALL:
        written = {str(p.relative_to(stack / resource.layout)) for p in (stack / resource.layout).rglob("*")
                   if p.is_file()}
        assert written == tracked_files(MAPPED[resource.package]), resource.layout
    tests = sorted(str(p.relative_to(stack / "prometheus")) for p in (stack / "prometheus" / "tests").glob("*.yml"))
    promtool = subprocess.run(["promtool", "test", "rules", *tests], cwd=stack / "prometheus",
                              capture_output=True, text=True, timeout=300)
    assert promtool.returncode == 0, promtool.stdout[-3000:] + promtool.stderr[-3000:]
    amtool = subprocess.run(["amtool", "check-config", "alertmanager/alertmanager.yml"], cwd=stack,
                            capture_output=True, text=True, timeout=60)
    assert amtool.returncode == 0, amtool.stdout + amtool.stderr
    again = feedwatch(installed, empty_dir, "init", "stack")
    assert again.returncode == 1 and "already exist" in again.stderr and "--force" in again.stderr
    assert feedwatch(installed, empty_dir, "init", "--force", "stack").returncode == 0


def test_mixin_writes_from_the_wheel_what_it_writes_from_the_checkout(installed, empty_dir, tmp_path):
    """`feedwatch mixin` reads the shipped rules, tests and dashboards from the installed package;
    its output for another job selector is the checkout's, byte for byte (tests/unit/test_mixin.py
    runs promtool on that output)."""
    options = ["--job-selector", 'job="md",env="prod"', "--runbook-base", "https://wiki.example.com/runbook"]
    done = feedwatch(installed, empty_dir, "mixin", "--out", "md", *options)
    assert done.returncode == 0, done.stderr
    here = subprocess.run([sys.executable, "-m", "exporter.cli", "mixin", "--out", str(tmp_path / "md"), *options],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert here.returncode == 0, here.stderr
    wheel_files = {p.relative_to(empty_dir / "md"): p.read_bytes() for p in (empty_dir / "md").rglob("*") if p.is_file()}
    checkout_files = {p.relative_to(tmp_path / "md"): p.read_bytes() for p in (tmp_path / "md").rglob("*") if p.is_file()}
    assert sorted(wheel_files) == sorted(checkout_files)
    assert len([p for p in wheel_files if p.parts[:2] == ("prometheus", "tests")]) > 0
    assert wheel_files == checkout_files


async def test_run_serves_metrics_and_the_status_page_from_the_wheel(installed, empty_dir):
    feedwatch_bin = str(installed / "feedwatch")
    sim_port, port = free_port(), free_port()
    env = user_env(installed)
    sim = await asyncio.create_subprocess_exec(
        feedwatch_bin, "simulate", "--venue", "polygon", "--port", str(sim_port), "--symbols", "AAPL,MSFT",
        "--api-key", "demo-key", cwd=empty_dir, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    assert feedwatch(installed, empty_dir, "init", "stack").returncode == 0
    run = await asyncio.create_subprocess_exec(
        feedwatch_bin, "run", "-c", "stack/examples/demo.yml", "--web.listen-address", f"127.0.0.1:{port}",
        cwd=empty_dir, env={**env, "DEMO_FEED_URL": f"ws://127.0.0.1:{sim_port}/stocks",
                            "DEMO_BOT_URL": "ws://127.0.0.1:9/none"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        def fetch(path: str) -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return resp.read().decode()

        metrics = await async_wait_for(
            lambda: _with(fetch("/metrics"), lambda t: 'feedwatch_symbol_updates_total{feed="stocks",symbol="AAPL"}' in t
                          and not re.search(r'updates_total\{feed="stocks",symbol="AAPL"\} 0', t)),
            timeout=30, what="AAPL updates on /metrics")
        assert "feedwatch_build_info" in metrics
        assert "<html" in fetch("/status").lower()
    finally:
        for proc in (run, sim):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(run.communicate(), 20)
        await asyncio.wait_for(sim.wait(), 20)
    assert run.returncode == 0, err.decode()[-3000:]


def _with(value, predicate):
    return value if predicate(value) else None


async def test_demo_shows_notifications_and_alert_test_reaches_them(installed, empty_dir, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(installed / "feedwatch"), "demo", "--web.listen-address", f"127.0.0.1:{port}",
        cwd=empty_dir, env=user_env(installed, TMPDIR=str(scratch)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    lines: list[str] = []

    async def read_stdout() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            lines.append(raw.decode())

    reader = asyncio.create_task(read_stdout())
    try:
        out = lambda: "".join(lines)  # noqa: E731
        await async_wait_for(lambda: "feedwatch demo is running" in out(), timeout=60, what="the demo's start")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert "feedwatch_feed_up" in resp.read().decode()
        # Prometheus and Alertmanager are installed (as `make test` ensures): notifications print.
        await async_wait_for(lambda: "notification -> " in out(), timeout=120, what="a notification printed")
        (am_url,) = re.findall(r"^\s+alertmanager\s+(http://127\.0\.0\.1:\d+)", out(), re.M)
        alert_test = await asyncio.to_thread(feedwatch, installed, empty_dir, "alert-test",
                                             "--alertmanager.url", am_url, timeout=90)
        assert alert_test.returncode == 0, alert_test.stdout + alert_test.stderr
        assert re.search(r"^\s+webhook\s+delivered", alert_test.stdout, re.M), alert_test.stdout
        assert os.listdir(scratch), "the demo's temporary directory is under TMPDIR while it runs"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
        await reader
    err = (await proc.stderr.read()).decode() if proc.stderr else ""
    assert proc.returncode == 0, err[-3000:]
    assert "demo stopped" in "".join(lines)
    wait_for(lambda: os.listdir(scratch) == [], timeout=5, what="the demo's temp dir removed")
