"""CPU cost of the screen-capture process scanner with ~300 extra processes (prints a markdown table).

Usage: .venv/bin/python bench/process_scan_cost.py [--procs 300] [--seconds 60]
Spawns N `sleep` processes, then measures (a) one steady-state scan, (b) the first full scan and
(c) the process CPU time used by a running ScreenCaptureCollector (hotkeys off) over the period.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time

import psutil

from collectors.base import Observation
from collectors.capture import ScreenCaptureCollector
from collectors.capture.known_tools import ToolMatcher
from collectors.capture.process_scan import ProcessScanner, PsutilProcessTable
from policy_client.schema import Controls, PolicyDocument, ScreenCaptureControl


class NullSink:
    def emit(self, observation: Observation) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--procs", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    sleep = shutil.which("sleep")
    assert sleep is not None
    children = [subprocess.Popen([sleep, "3600"]) for _ in range(args.procs)]
    try:
        total = len(psutil.pids())
        matcher = ToolMatcher.for_policy(ScreenCaptureControl())

        def matches(info: object) -> bool:
            return matcher.matches(info.name, info.exe)  # type: ignore[attr-defined]

        first_costs, steady_costs = [], []
        for _ in range(5):
            scanner = ProcessScanner(table=PsutilProcessTable())
            t0 = time.perf_counter()
            scanner.scan(matches)
            first_costs.append(time.perf_counter() - t0)
            for _ in range(200):
                t0 = time.perf_counter()
                scanner.scan(matches)
                steady_costs.append(time.perf_counter() - t0)
        steady_costs.sort()

        policy = PolicyDocument(version=1, controls=Controls(screen_capture=ScreenCaptureControl(hotkeys=False)))
        collector = ScreenCaptureCollector()
        collector.start(NullSink(), policy)
        collector.wait_ready(10)
        cpu0 = time.process_time()
        wall0 = time.monotonic()
        threading.Event().wait(args.seconds)
        cpu = time.process_time() - cpu0
        wall = time.monotonic() - wall0
        collector.stop()
    finally:
        for child in children:
            child.kill()
        for child in children:
            child.wait()

    per_minute_ms = cpu / wall * 60 * 1000
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, {sys.platform}")
    print(f"processes on the system during the run: {total}\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| steady-state scan (no new pids), median | {statistics.median(steady_costs) * 1e3:.3f} ms |")
    print(f"| steady-state scan, p95 | {steady_costs[int(len(steady_costs) * 0.95)] * 1e3:.3f} ms |")
    print(f"| first full scan ({total} pids inspected), median | {statistics.median(first_costs) * 1e3:.1f} ms |")
    print(
        f"| collector CPU over {wall:.0f} s (adaptive interval, quiet system) | {per_minute_ms:.1f} ms CPU per minute |"
    )
    print(f"| share of one core | {cpu / wall * 100:.3f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
