"""Detection latency of the USB and screen-capture collectors, observation -> sink.emit (markdown table).

Usage (root, Linux, Xvfb + xdotool installed): .venv/bin/python bench/latency_usb_capture.py [--runs 20]
Measures loop-mount -> usb.mounted, process start -> capture.tool_started and `xdotool key Print`
-> capture.hotkey. The durable part (pipeline + outbox commit) is measured by the outbox benchmarks.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from collectors.base import Observation
from collectors.capture import ScreenCaptureCollector
from collectors.usb import UsbCollector
from policy_client.schema import Controls, EventKind, PolicyDocument, ScreenCaptureControl


class TimedSink:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: list[tuple[float, Observation]] = []

    def emit(self, observation: Observation) -> None:
        with self.cond:
            self.items.append((time.perf_counter(), observation))
            self.cond.notify_all()

    def wait(self, predicate: object, timeout: float = 10.0) -> float:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for at, obs in self.items:
                    if predicate(obs):  # type: ignore[operator]
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no observation")
                self.cond.wait(left)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_usb(runs: int, base: Path) -> list[float]:
    media = base / "media"
    media.mkdir()
    image = base / "stick.img"
    subprocess.run(["truncate", "-s", "8M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    sink = TimedSink()
    usb = UsbCollector(media_roots=[str(media)])
    usb.start(sink, PolicyDocument(version=1))
    usb.wait_ready(5)
    latencies = []
    try:
        for i in range(runs):
            where = media / f"S{i}"
            where.mkdir()
            t0 = time.perf_counter()
            subprocess.run(["mount", "-o", "loop", str(image), str(where)], check=True)
            at = sink.wait(
                lambda o, w=str(where): o.draft.kind is EventKind.usb_mounted and o.draft.data["mount_point"] == w
            )
            latencies.append(at - t0)
            subprocess.run(["umount", str(where)], check=True)
            sink.wait(
                lambda o, w=str(where): o.draft.kind is EventKind.usb_removed and o.draft.data["mount_point"] == w
            )
    finally:
        usb.stop()
    return latencies


def bench_tool(runs: int, base: Path) -> list[float]:
    sleep = shutil.which("sleep")
    assert sleep is not None
    tool = base / "flameshot"
    shutil.copy(sleep, tool)
    sink = TimedSink()
    policy = PolicyDocument(version=1, controls=Controls(screen_capture=ScreenCaptureControl(hotkeys=False)))
    collector = ScreenCaptureCollector()
    collector.start(sink, policy)
    collector.wait_ready(10)
    latencies = []
    try:
        for _ in range(runs):
            # Start at a random phase of the (backed-off) scan interval.
            threading.Event().wait(random.uniform(1.5, 3.0))
            t0 = time.perf_counter()
            proc = subprocess.Popen([str(tool), "600"])
            at = sink.wait(lambda o, p=proc.pid: o.draft.data.get("pid") == p)
            latencies.append(at - t0)
            proc.kill()
            proc.wait()
    finally:
        collector.stop()
    return latencies


def bench_hotkey(runs: int) -> list[float]:
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-nolisten", "tcp"], pass_fds=(write_fd,), stderr=subprocess.DEVNULL
    )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        os.environ["DISPLAY"] = ":" + pipe.readline().decode().strip()
    sink = TimedSink()
    collector = ScreenCaptureCollector()
    collector.start(sink, PolicyDocument(version=1))
    latencies = []
    try:
        for i in range(runs):
            t0 = time.perf_counter()
            subprocess.run(["xdotool", "key", "Print"], check=True)
            with sink.cond:
                while len(sink.items) <= i:
                    sink.cond.wait(5)
            latencies.append(sink.items[i][0] - t0)
    finally:
        collector.stop()
        server.terminate()
        server.wait()
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        if os.geteuid() == 0 and shutil.which("mkfs.ext4"):
            rows.append(("loop mount -> usb.mounted (incl. the mount command)", bench_usb(args.runs, base), 1.0))
        rows.append(("process start -> capture.tool_started", bench_tool(args.runs, base), 2.0))
        if shutil.which("Xvfb") and shutil.which("xdotool"):
            rows.append(("xdotool key Print -> capture.hotkey (incl. xdotool start)", bench_hotkey(args.runs * 2), 0.2))
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, {sys.platform}\n"
    )
    print("| path | runs | p50 | p95 | max | budget (p95) |")
    print("|---|---|---|---|---|---|")
    for name, values, budget in rows:
        print(
            f"| {name} | {len(values)} | {pct(values, 0.5) * 1e3:.0f} ms | {pct(values, 0.95) * 1e3:.0f} ms "
            f"| {max(values) * 1e3:.0f} ms | {budget * 1e3:.0f} ms |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
