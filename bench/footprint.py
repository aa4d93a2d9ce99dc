"""Footprint of `deskwarden agent` (all collectors): RSS, USS, CPU %, threads and open files, idle and under a burst.

Run: .venv/bin/python bench/footprint.py [--minutes 10] [--burst 1000] [--headless]
Under Xvfb when no DISPLAY is set (and xvfb-run exists) so the clipboard collector runs too; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

_PAUSE = threading.Event()


@dataclass
class Sample:
    rss: int
    uss: int
    cpu_s: float
    threads: int
    files: int


def sample(proc: psutil.Process) -> Sample:
    with proc.oneshot():
        full = proc.memory_full_info()
        times = proc.cpu_times()
        return Sample(full.rss, full.uss, times.user + times.system, proc.num_threads(), len(proc.open_files()))


def start_agent(home: Path, *, headless: bool) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DESKWARDEN_HOME": str(home),
        "HOME": str(home / "user"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    (home / "user" / "Downloads").mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "agent_app", "agent"] + (["--headless"] if headless else [])
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_started(home: Path, proc: subprocess.Popen[bytes], *, timeout: float = 60.0) -> dict[str, str]:
    """Wait until status.json lists the collectors with a settled state."""
    deadline = time.monotonic() + timeout
    status = home / "status.json"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"agent exited with {proc.returncode}")
        if status.exists():
            try:
                collectors: dict[str, str] = json.loads(status.read_text()).get("collectors") or {}
            except ValueError:
                collectors = {}
            if collectors and all(state != "starting" for state in collectors.values()):
                return collectors
        _PAUSE.wait(0.2)
    raise SystemExit("agent did not report its collectors in time")


def watch(proc: psutil.Process, seconds: float, *, every: float = 1.0) -> tuple[list[Sample], float]:
    """Samples over `seconds`, and the CPU % of one core over the window."""
    first = sample(proc)
    samples = [first]
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        _PAUSE.wait(every)
        samples.append(sample(proc))
    elapsed = time.monotonic() - start
    return samples, 100.0 * (samples[-1].cpu_s - first.cpu_s) / max(elapsed, 1e-9)


def burst(home: Path, count: int) -> None:
    downloads = home / "user" / "Downloads"
    for index in range(count):
        (downloads / f"report-{index}.txt").write_text(f"row {index}\n", encoding="utf-8")
    if os.environ.get("DISPLAY") and shutil.which("xclip"):
        for index in range(count):
            subprocess.run(["xclip", "-selection", "clipboard"], input=f"clip {index}".encode(), check=False)


def row(name: str, samples: list[Sample], cpu: float) -> str:
    mb = 2**20
    peak = max(samples, key=lambda s: s.rss)
    last = samples[-1]
    return (
        f"| {name} | {last.rss / mb:.1f} | {peak.rss / mb:.1f} | {last.uss / mb:.1f} | {cpu:.2f} | "
        f"{last.threads} | {last.files} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--headless", action="store_true")
    args = parser.parse_args()
    if not os.environ.get("DISPLAY") and not args.headless and shutil.which("xvfb-run"):
        os.execvp("xvfb-run", ["xvfb-run", "-a", sys.executable, *sys.argv])  # noqa: S606 - fixed argv, no shell
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        proc = start_agent(home, headless=args.headless or not os.environ.get("DISPLAY"))
        try:
            collectors = wait_started(home, proc)
            agent = psutil.Process(proc.pid)
            idle, idle_cpu = watch(agent, args.minutes * 60)
            started = time.monotonic()
            burst(home, args.burst)
            busy, busy_cpu = watch(agent, max(5.0, time.monotonic() - started))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
    print(f"collectors: {collectors}")
    print("| phase | RSS MB | peak RSS MB | USS MB | CPU % of one core | threads | open files |")
    print("|---|---|---|---|---|---|---|")
    print(row(f"idle {args.minutes:g} min", idle, idle_cpu))
    print(row(f"burst ({args.burst} downloads + clipboard)", busy, busy_cpu))


if __name__ == "__main__":
    main()
