"""Soak: hours of real load through real processes, then account for every update.

    python -m tests.soak --duration 3600              # `make soak`: 1 hour, 2,000 symbols, 20,000 updates/s
    python -m tests.soak --duration 20 --symbols 200  # a short run (tests/integration/test_soak.py)

What runs: ``feedwatch simulate`` (Polygon dialect, trades and quotes for every subscribed symbol
``--ticks`` times a second: 2 wire events per tick) and ``feedwatch run`` watching ``--symbols``
symbols, both real subprocesses on 127.0.0.1; this process scrapes ``/metrics`` every second
the way Prometheus would and samples the exporter's resident memory from /proc.

At the end the simulator stops streaming (``stall_all``), the exporter's counters are read once
they stop moving, and every event the simulator sent must be accounted for by the exporter:

    sent == feedwatch_symbol_updates_total + feedwatch_feed_rejected_updates_total

summed over symbols (the first-print guard holds at most a symbol's first trade, and settles it,
accepted or rejected, at the next: by the end of a run of many ticks nothing is held), with no disconnect during the run (a disconnect would lose frames in flight
through no fault of the exporter, and is itself a failure of a soak). Memory must be flat: the
resident set at the end may exceed the one after warm-up by at most ``--rss-growth`` (ratio) or
8 MiB, whichever is larger.

A progress line every ``--progress`` seconds; a summary as JSON on the last line; exit status 0
only if nothing was lost and memory stayed flat.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

FEEDWATCH = [sys.executable, "-m", "exporter.cli"]
_SAMPLE = re.compile(r'^(feedwatch_[a-z_]+)\{([^}]*)\} (\S+)$', re.M)


@dataclass
class Summary:
    duration_s: float = 0.0
    symbols: int = 0
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    lost: int = 0
    disconnects: int = 0
    rate_per_s: float = 0.0
    scrapes: int = 0
    scrape_failures: int = 0
    scrape_p50_ms: float = 0.0
    scrape_max_ms: float = 0.0
    rss_after_warmup_mib: float = 0.0
    rss_end_mib: float = 0.0
    rss_max_mib: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _post(url: str) -> bytes:
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def counters(text: str) -> dict[str, float]:
    """The totals the accounting needs, from one exposition text."""
    totals = {"accepted": 0.0, "rejected": 0.0, "disconnects": 0.0}
    for name, labels, value in _SAMPLE.findall(text):
        if name == "feedwatch_symbol_updates_total":
            totals["accepted"] += float(value)
        elif name == "feedwatch_feed_rejected_updates_total":
            totals["rejected"] += float(value)
        elif name == "feedwatch_feed_disconnects_total" and 'reason="shutdown"' not in labels:
            totals["disconnects"] += float(value)
    return totals


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
            if result:
                return result
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"soak: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def run(args: argparse.Namespace) -> Summary:
    summary = Summary(symbols=args.symbols)
    symbols = [f"S{i:05d}" for i in range(args.symbols)]
    with tempfile.TemporaryDirectory(prefix="feedwatch-soak-") as tmp:
        sim = subprocess.Popen([*FEEDWATCH, "simulate", "--venue", "polygon", "--rate", str(args.ticks),
                                "--seed", "7"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        exporter = None
        try:
            ws_url = sim.stdout.readline().split("ws: ", 1)[-1].strip()
            control = sim.stdout.readline().split("control: ", 1)[-1].strip()
            if not ws_url.startswith("ws://") or not control.startswith("http://"):
                raise SystemExit("soak: the simulator did not start")
            port = _free_port()
            config = Path(tmp) / "soak.yml"
            config.write_text(
                f"listen: 127.0.0.1:{port}\n"
                # The state that grows with time is on: the journal on disk, every symbol's
                # learned rhythm, the frame recorder (on by default).
                f"journal: {{path: {Path(tmp) / 'journal.db'}}}\n"
                "thresholds: {adaptive: {enabled: true}}\n"
                "feeds:\n"
                f"  - name: soak\n    kind: polygon\n    url: {ws_url}\n    api_key: soak\n"
                f"    channels: [T, Q]\n    symbols: [{', '.join(symbols)}]\n")
            exporter = subprocess.Popen([*FEEDWATCH, "run", "-c", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=open(Path(tmp) / "exporter.log", "w"))
            metrics_url = f"http://127.0.0.1:{port}/metrics"
            wait_until(lambda: counters(_get(metrics_url).decode())["accepted"] >= len(symbols),
                       60, "every symbol's first updates")

            started = time.monotonic()
            warmup_at = started + min(args.warmup, args.duration / 2)
            next_scrape = next_progress = started
            durations: list[float] = []
            rss_warm: list[float] = []
            rss_end: list[float] = []
            last_accepted, last_at = counters(_get(metrics_url).decode())["accepted"], started
            next_progress += args.progress
            while (now := time.monotonic()) < started + args.duration:
                if now >= next_scrape:
                    next_scrape += args.scrape_interval
                    t0 = time.perf_counter()
                    try:
                        text = _get(metrics_url).decode()
                    except OSError as exc:
                        summary.scrape_failures += 1
                        summary.problems.append(f"scrape failed at {now - started:.0f}s: {exc}")
                        continue
                    durations.append((time.perf_counter() - t0) * 1000)
                    summary.scrapes += 1
                    rss = _rss_mib(exporter.pid)
                    summary.rss_max_mib = max(summary.rss_max_mib, rss)
                    if warmup_at <= now < warmup_at + max(10.0, args.duration * 0.05):
                        rss_warm.append(rss)
                    if now >= started + args.duration * 0.95 - 1:
                        rss_end.append(rss)
                    if now >= next_progress:
                        next_progress += args.progress
                        accepted = counters(text)["accepted"]
                        rate = (accepted - last_accepted) / max(now - last_at, 1e-9)
                        last_accepted, last_at = accepted, now
                        print(f"soak {now - started:6.0f}/{args.duration:.0f}s  {rate:9,.0f} updates/s  "
                              f"rss {rss:6.1f} MiB  scrape {durations[-1]:6.1f} ms", flush=True)
                time.sleep(max(0.0, min(next_scrape, next_progress) - time.monotonic()))
            summary.duration_s = time.monotonic() - started

            # Stop the venue, let the exporter drain, then account for every event.
            _post(f"{control}/faults/stall_all")
            previous: dict[str, float] = {}

            def settled() -> dict[str, float] | None:
                nonlocal previous
                now_counts = counters(_get(metrics_url).decode())
                stable = now_counts if now_counts == previous else None
                previous = now_counts
                return stable

            final = wait_until(settled, 60, "the exporter's counters to settle")
            state = json.loads(_get(f"{control}/state"))
            summary.sent = int(sum(state["sent"].values()))
            summary.accepted = int(final["accepted"])
            summary.rejected = int(final["rejected"])
            summary.disconnects = int(final["disconnects"])
            summary.lost = summary.sent - summary.accepted - summary.rejected
            summary.rate_per_s = summary.accepted / max(summary.duration_s, 1e-9)
            if durations:
                summary.scrape_p50_ms = statistics.median(durations)
                summary.scrape_max_ms = max(durations)
            summary.rss_after_warmup_mib = statistics.median(rss_warm) if rss_warm else 0.0
            summary.rss_end_mib = statistics.median(rss_end) if rss_end else 0.0
        finally:
            for process in (exporter, sim):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
        if exporter is not None and exporter.returncode not in (0, None):
            summary.problems.append(f"the exporter exited with status {exporter.returncode}")
    judge(summary, args.rss_growth)
    return summary


def judge(summary: Summary, rss_growth: float) -> None:
    """Add the run's failures to ``summary.problems``: a lost update, a disconnect, memory growth."""
    if summary.lost:
        summary.problems.append(f"{summary.lost} update(s) lost (sent {summary.sent}, accepted "
                                f"{summary.accepted}, rejected {summary.rejected})")
    if summary.disconnects:
        summary.problems.append(f"{summary.disconnects} disconnect(s) during the soak")
    allowed = max(summary.rss_after_warmup_mib * rss_growth, 8.0)
    if summary.rss_end_mib - summary.rss_after_warmup_mib > allowed:
        summary.problems.append(f"memory grew {summary.rss_end_mib - summary.rss_after_warmup_mib:.1f} MiB "
                                f"after warm-up (allowed {allowed:.1f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds of load (default: 3600)")
    parser.add_argument("--symbols", type=int, default=2000, help="symbols watched (default: 2000)")
    parser.add_argument("--ticks", type=float, default=5.0,
                        help="ticks per symbol per second, 2 events each (default: 5 -> 10 updates/s/symbol)")
    parser.add_argument("--scrape-interval", type=float, default=1.0, help="seconds between scrapes (default: 1)")
    parser.add_argument("--warmup", type=float, default=300.0,
                        help="seconds before the memory baseline is taken (default: 300; at most half the run)")
    parser.add_argument("--rss-growth", type=float, default=0.05,
                        help="allowed resident-memory growth after warm-up, as a ratio (default: 0.05)")
    parser.add_argument("--progress", type=float, default=60.0, help="seconds between progress lines (default: 60)")
    args = parser.parse_args(argv)
    summary = run(args)
    for problem in summary.problems:
        print(f"soak: FAIL: {problem}", file=sys.stderr)
    print(("soak: ok" if summary.ok else "soak: FAILED") +
          f": {summary.sent:,} sent, {summary.accepted:,} accepted, {summary.rejected:,} rejected, "
          f"{summary.lost:,} lost in {summary.duration_s:.0f}s ({summary.rate_per_s:,.0f}/s); rss "
          f"{summary.rss_after_warmup_mib:.1f} -> {summary.rss_end_mib:.1f} MiB (max {summary.rss_max_mib:.1f})",
          flush=True)
    print(json.dumps({**asdict(summary), "ok": summary.ok}), flush=True)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
