"""Risk state is never silently lost: ``feedwatch run`` against a damaged, killed or full state file.

- SIGKILL while events stream in, and the journal beside the file lost: every acknowledged event
  is still there after the restart, and replaying everything counts each event once. On main the
  commits lived in ``state.sqlite-wal``; without it the restart came back empty.
- The file truncated to 0 bytes, deleted, or overwritten: feedwatch refuses to start, naming the
  file, the backup to restore and ``--reset-trading-state``; restoring the backup brings the kill
  switch and the losing streak back; the flag starts empty with the damaged file kept aside. On
  main each of these started silently with the kill switch off and the streak at 0.
- The disk full under the state file (a real 1 MiB tmpfs; root, as in CI): 503 and nothing
  applied or counted, the same event counted once after space returns, the same state after a
  restart. On main: 200 twice, counted twice, and 945 wins for 325 trades after a restart.
- ``feedwatch check-config`` names state-file problems by path.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.exporter_process import FEEDWATCH, ExporterProcess, run_to_exit
from tests.integration.mounts import can_mount, fill, tmpfs
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

TOKEN = "state-file-test-token"


def write_config(tmp_path: Path, state_file: Path) -> Path:
    config = tmp_path / "feedwatch.yml"
    config.write_text(f"trading:\n  state_file: {state_file}\n  api: {{token: {TOKEN}}}\n"
                      f"  accounts: [{{name: main}}]\n")
    return config


def post(url: str, events: list[dict]) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/api/v1/events", data=json.dumps(events).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def loss(i: int, prefix: str = "loss") -> dict:
    return {"type": "trade", "account": "main", "id": f"{prefix}-{i}", "ts": time.time(), "symbol": "BTCUSDT",
            "side": "long", "quantity": 1, "entry_price": 100, "exit_price": 99, "pnl": -1}


def risk_state(i: int = 0) -> list[dict]:
    """Kill switch on, 20 % below the peak, three losses in a row."""
    now = time.time()
    return [{"type": "equity", "account": "main", "id": f"eq-{i}-a", "ts": now, "equity": 1000.0},
            {"type": "equity", "account": "main", "id": f"eq-{i}-b", "ts": now, "equity": 800.0},
            {"type": "safety", "account": "main", "id": f"kill-{i}", "ts": now, "kill_switch": True,
             "reason": "drawdown"},
            loss(1, f"risk-{i}"), loss(2, f"risk-{i}"), loss(3, f"risk-{i}")]


def value(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def metrics(process: ExporterProcess) -> str:
    status, text = process.get("/metrics")
    assert status == 200
    return text


STREAK = 'feedwatch_trading_consecutive_losses{account="main"}'
KILL = 'feedwatch_trading_kill_switch_active{account="main"}'
MAX_DD = 'feedwatch_trading_max_drawdown_ratio{account="main"}'
LOSSES = 'feedwatch_trading_trades_total{account="main",result="loss"}'


@pytest.fixture
def processes():
    started: list[ExporterProcess] = []
    yield started
    for process in started:
        if process.proc.poll() is None:
            process.stop()


def start(processes: list, config: Path, *args: str) -> ExporterProcess:
    process = ExporterProcess(config, *args)
    processes.append(process)
    process.wait_serving()
    return process


def test_sigkill_mid_stream_loses_no_acknowledged_event(tmp_path, processes):
    state = tmp_path / "state.sqlite"
    config = write_config(tmp_path, state)
    first = start(processes, config)
    assert post(first.url, risk_state())[0] == 200
    acknowledged: list[int] = []
    sent: list[int] = []
    stop = threading.Event()

    def stream() -> None:  # one loss per request, as fast as they are answered, until the kill
        i = 0
        while not stop.is_set():
            i += 1
            sent.append(i)
            try:
                status, _ = post(first.url, [loss(i)])
            except OSError:
                return
            if status == 200:
                acknowledged.append(i)

    sender = threading.Thread(target=stream)
    sender.start()
    wait_for(lambda: len(acknowledged) >= 30, timeout=30, what="30 events acknowledged")
    first.kill()
    stop.set()
    sender.join(30)
    for side in ("-wal", "-shm"):  # lost with the container, a copy of the file alone, ...
        if (tmp_path / f"state.sqlite{side}").exists():
            (tmp_path / f"state.sqlite{side}").unlink()
    second = start(processes, config)
    text = metrics(second)
    streak = value(text, STREAK)
    print(f"\nSIGKILL after {len(acknowledged)} acknowledged of {len(sent)} sent: streak after restart {streak}")
    assert value(text, KILL) == 1 and value(text, MAX_DD) == pytest.approx(0.2)
    assert 3 + len(acknowledged) <= streak <= 3 + len(sent)
    # The bot replays everything: each event counts once, whether or not it made it before the kill.
    status, reply = post(second.url, risk_state() + [loss(i) for i in sent])
    assert status == 200 and reply["accepted"] + reply["duplicates"] == 6 + len(sent)
    assert reply["accepted"] == 3 + len(sent) - streak
    assert value(metrics(second), STREAK) == 3 + len(sent)


def test_a_damaged_state_file_stops_the_start_until_restored_or_reset(tmp_path, processes):
    state = tmp_path / "state.sqlite"
    backup = tmp_path / "state.sqlite.backup"
    config = write_config(tmp_path, state)
    first = start(processes, config)
    assert post(first.url, risk_state())[0] == 200
    assert first.stop() == 0  # a clean stop also refreshes the backup
    good = state.read_bytes()

    damages = {
        "is empty (0 bytes)": lambda: state.write_bytes(b""),
        "is missing, but its backup": lambda: state.unlink(),
        "is not a SQLite database": lambda: state.write_bytes(b"\x00garbage" * 512),
        "is corrupt": lambda: state.write_bytes(good[:4096] + b"\xff" * (len(good) - 4096)),
    }
    for problem, damage in damages.items():
        damage()
        rc, log = run_to_exit(config, timeout=20)
        assert rc == 1, log
        assert f"trading state file {state} {problem}" in log, log
        assert f"cp {backup} {state}" in log and "--reset-trading-state" in log
        shutil.copy(backup, state)  # the documented recovery
    restored = start(processes, config)
    text = metrics(restored)
    assert (value(text, KILL), value(text, STREAK), value(text, MAX_DD)) == (1, 3, pytest.approx(0.2))
    assert restored.stop() == 0

    state.write_bytes(b"")
    reset = start(processes, config, "--reset-trading-state")
    text = metrics(reset)
    assert (value(text, KILL), value(text, STREAK)) == (0, 0)
    assert "--reset-trading-state: trading state file" in reset.log() and "moved aside" in reset.log()
    assert len(list(tmp_path.glob("state.sqlite.reset-*"))) == 1
    assert len(list(tmp_path.glob("state.sqlite.backup.reset-*"))) == 1


def test_a_full_disk_answers_503_and_nothing_counts_twice(tmp_path, processes):
    if not can_mount():
        pytest.fail("this test mounts a tmpfs and must run as root (CI does); the injected-store "
                    "variant is tests/unit/test_trading_api.py::test_a_store_that_cannot_commit...")
    with tmpfs(tmp_path / "disk", size="1m") as disk:
        state = disk / "state.sqlite"
        config = write_config(tmp_path, state)
        first = start(processes, config)
        assert post(first.url, risk_state())[0] == 200
        filler = fill(disk)
        before = metrics(first)
        refused = [loss(7), loss(8)]
        for _ in range(2):
            status, reply = post(first.url, refused)
            assert status == 503, reply
            assert "nothing was applied" in reply["error"] and str(state) in reply["error"]
        after = metrics(first)
        assert value(after, LOSSES) == value(before, LOSSES) == 3
        assert value(after, STREAK) == 3
        assert value(after, "feedwatch_trading_state_store_errors_total") >= 2
        assert "answered 503, nothing applied" in first.log() and "database or disk is full" in first.log()

        filler.unlink()
        assert post(first.url, refused)[1]["accepted"] == 2
        assert post(first.url, refused)[1]["duplicates"] == 2
        text = metrics(first)
        assert (value(text, LOSSES), value(text, STREAK)) == (5, 5)
        assert first.stop() == 0

        second = start(processes, config)
        text = metrics(second)
        assert (value(text, LOSSES), value(text, STREAK), value(text, KILL)) == (5, 5, 1)
        assert post(second.url, risk_state() + refused)[1]["duplicates"] == 8
        assert second.stop() == 0


def check_config(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*FEEDWATCH, "check-config", str(config)], capture_output=True, text=True, timeout=30)


def test_check_config_names_state_file_problems(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    state = tmp_path / "state.sqlite"
    cases = [
        (blocker / "state.sqlite", f"trading.state_file: trading state file {blocker}/state.sqlite cannot be "
                                   f"created: {blocker} is not a directory"),
        (tmp_path, f"trading.state_file: trading state file {tmp_path} is a directory"),
    ]
    for path, expected in cases:
        done = check_config(write_config(tmp_path, path))
        assert done.returncode == 1 and expected in done.stderr, done.stderr

    config = write_config(tmp_path, state)
    done = check_config(config)
    assert done.returncode == 0 and f"state file {state}" in done.stdout
    assert not state.exists()  # checking creates nothing
    process = ExporterProcess(config)
    process.wait_serving()
    assert process.stop() == 0
    assert check_config(config).returncode == 0
    state.write_bytes(b"")
    done = check_config(config)
    assert done.returncode == 1 and f"trading state file {state} is empty (0 bytes)" in done.stderr
    assert "--reset-trading-state" in done.stderr
    state.unlink()
    done = check_config(config)
    assert done.returncode == 1 and "is missing, but its backup" in done.stderr

    if can_mount():
        with tmpfs(tmp_path / "ro", read_only=True) as read_only:
            done = check_config(write_config(tmp_path, read_only / "state.sqlite"))
            assert done.returncode == 1
            assert f"cannot be created: directory {read_only} is not writable" in done.stderr
