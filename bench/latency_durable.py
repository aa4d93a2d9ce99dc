"""Detection -> durable event latency through the real pipeline and outbox (markdown table).

Usage (root, Linux): .venv/bin/python bench/latency_durable.py [--runs 20]
Each real collector feeds the agent's Pipeline, which decides and commits to a real Outbox
(WAL, synchronous=FULL). The clock starts when the test acts on the OS (just before `mount`,
the rename of a finished download, the exec of a capture tool) and stops when the pipeline
reports the event committed (`on_written`), i.e. when `append` has returned.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from agent_app.core.outbox import Outbox
from agent_app.core.pipeline import Pipeline
from collectors.base import Collector
from collectors.capture import ScreenCaptureCollector
from collectors.downloads import DownloadsCollector
from collectors.usb import UsbCollector
from policy_client.schema import PolicyDocument
from policy_client.secrets import OutboxKeys


class Committed:
    """Collects commit times of seqs written by the pipeline."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.count = 0
        self.at: list[float] = []

    def __call__(self, seqs: Sequence[int]) -> None:
        now = time.perf_counter()
        with self.cond:
            self.count += len(seqs)
            self.at.extend(now for _ in seqs)
            self.cond.notify_all()

    def wait_beyond(self, count: int, timeout: float = 10.0) -> float:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.count <= count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no event committed")
                self.cond.wait(left)
            return self.at[count]


def run(
    collector: Collector,
    policy: PolicyDocument,
    base: Path,
    act: Callable[[int], None],
    runs: int,
    *,
    undo: Callable[[int], None] | None = None,
) -> list[float]:
    """`act` causes exactly one event; `undo` (timed out of the measurement) causes exactly one more."""
    keys = OutboxKeys(key_id="bench", data_key=os.urandom(32), chain_key=os.urandom(32))
    committed = Committed()
    pipeline = Pipeline(
        outbox_factory=lambda: Outbox(base / f"{collector.id}.db", keys=keys),
        policy=lambda: policy,
        collector=lambda name: collector,
        user="bench",
        on_written=committed,
    )
    pipeline.start()
    collector.start(pipeline, policy)
    ready = getattr(collector, "wait_ready", None)
    if callable(ready):
        ready(10)
    latencies: list[float] = []
    try:
        for index in range(runs):
            before = committed.count
            started = time.perf_counter()
            act(index)
            latencies.append((committed.wait_beyond(before) - started) * 1000)
            if undo is not None:
                settled = committed.count
                undo(index)
                committed.wait_beyond(settled)
    finally:
        collector.stop()
        pipeline.stop()
    return latencies


def usb(base: Path, runs: int) -> list[float]:
    media = base / "media"
    media.mkdir()
    image = base / "stick.img"
    subprocess.run(["truncate", "-s", "8M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True)
    policy = PolicyDocument.model_validate(
        {"version": 1, "controls": {"usb": {"mode": "audit", "media_roots": [str(media)]}}}
    )

    def act(index: int) -> None:
        point = media / f"stick{index}"
        point.mkdir()
        subprocess.run(["mount", "-o", "loop,ro", str(image), str(point)], check=True)

    def undo(index: int) -> None:  # usb.removed
        subprocess.run(["umount", str(media / f"stick{index}")], check=True)

    return run(UsbCollector(media_roots=[str(media)]), policy, base, act, runs, undo=undo)


def downloads(base: Path, runs: int) -> list[float]:
    folder = base / "Downloads"
    folder.mkdir()
    policy = PolicyDocument.model_validate(
        {"version": 1, "controls": {"downloads": {"mode": "audit", "paths": [str(folder)]}}}
    )
    body = ("id,name,note\n" + "".join(f"{i},customer {i},ok\n" for i in range(500))).encode()

    def act(index: int) -> None:
        partial = folder / f"report-{index}.csv.crdownload"
        partial.write_bytes(body)
        partial.rename(folder / f"report-{index}.csv")

    return run(DownloadsCollector(quarantine_dir=base / "quarantine"), policy, base, act, runs)


def capture(base: Path, runs: int) -> list[float]:
    tool = base / "flameshot"
    shutil.copy("/bin/sleep", tool)
    policy = PolicyDocument.model_validate(
        {"version": 1, "controls": {"screen_capture": {"mode": "audit", "hotkeys": False}}}
    )
    procs: list[subprocess.Popen[bytes]] = []

    def act(index: int) -> None:
        procs.append(subprocess.Popen([str(tool), "60"]))

    try:
        return run(ScreenCaptureCollector(), policy, base, act, runs)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    rows = [
        ("loop mount -> usb.mounted committed", usb, 1000),
        ("finished download (rename) -> download.detected committed", downloads, 1000),
        ("capture tool start -> capture.tool_started committed", capture, 2000),
    ]
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}")
    print()
    print("| path | runs | p50 ms | p95 ms | budget (p95) ms |")
    print("|---|---:|---:|---:|---:|")
    for label, bench, budget in rows:
        with tempfile.TemporaryDirectory() as tmp:
            values = bench(Path(tmp), args.runs)
        print(f"| {label} | {len(values)} | {pct(values, 0.5):.0f} | {pct(values, 0.95):.0f} | {budget} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
