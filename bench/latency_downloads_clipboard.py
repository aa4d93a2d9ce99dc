"""Detection latency, p50/p95: finished download (rename from .crdownload) -> emit, and clipboard copy
by another process (xclip, under a private Xvfb) -> emit.

Run: .venv/bin/python bench/latency_downloads_clipboard.py [--n 40]
Prints a markdown table. Emit is the sink call; the durable outbox write follows on the pipeline thread.
"""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.base import Observation
from policy_client.schema import ClipboardControl, Controls, DownloadsControl, PolicyDocument


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class TimedSink:
    def __init__(self) -> None:
        self.q: queue.Queue[tuple[float, Observation]] = queue.Queue()
        self.on_emit: Callable[[], None] | None = None

    def emit(self, observation: Observation) -> None:
        self.q.put((time.perf_counter(), observation))
        if self.on_emit is not None:
            self.on_emit()


def bench_downloads(n: int) -> list[float]:
    from collectors.downloads import DownloadsCollector

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "Downloads"
        folder.mkdir()
        collector = DownloadsCollector(quarantine_dir=Path(tmp) / "q")
        sink = TimedSink()
        policy = PolicyDocument(version=1, controls=Controls(downloads=DownloadsControl(paths=[str(folder)])))
        collector.start(sink, policy)
        out = []
        try:
            for i in range(n):
                partial = folder / f"file{i}.csv.crdownload"
                partial.write_text("id,name\n" + "".join(f"{j},customer {j}\n" for j in range(2000)))
                start = time.perf_counter()
                partial.rename(folder / f"file{i}.csv")
                emitted, _ = sink.q.get(timeout=10)
                out.append(emitted - start)
        finally:
            collector.stop()
    return out


def bench_clipboard(n: int) -> list[float]:
    from tests.xvfb import qt_xcb_env, xvfb_display

    with xvfb_display() as display:
        os.environ.update(qt_xcb_env(display))
        from PySide6.QtCore import QEventLoop, QTimer
        from PySide6.QtGui import QGuiApplication

        from collectors.clipboard import ClipboardCollector

        _app = QGuiApplication([])  # kept referenced: the collector finds it through QGuiApplication.clipboard()
        collector = ClipboardCollector()
        sink = TimedSink()
        collector.start(sink, PolicyDocument(version=1, controls=Controls(clipboard=ClipboardControl(mode="audit"))))
        out = []
        env = dict(os.environ)
        try:
            for i in range(n):
                text = f"note {i}: customer card 4111 1111 1111 1111, call back"
                start = time.perf_counter()
                threading.Thread(
                    target=subprocess.run,
                    args=(["xclip", "-selection", "clipboard"],),
                    kwargs={"input": text, "text": True, "env": env, "check": True, "timeout": 10},
                    daemon=True,
                ).start()
                loop = QEventLoop()
                sink.on_emit = loop.quit  # the clipboard collector emits on this (GUI) thread
                QTimer.singleShot(10_000, loop.quit)
                loop.exec()
                emitted, _ = sink.q.get(timeout=0.1)
                out.append(emitted - start)
        finally:
            collector.stop()
        return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=40)
    args = parser.parse_args()
    rows = [("finished download (rename) -> emit", bench_downloads(args.n), 1000.0)]
    rows.append(("clipboard copy by xclip -> emit (includes starting xclip)", bench_clipboard(args.n), 200.0))
    print("| path | n | p50 | p95 | budget |")
    print("|---|---|---|---|---|")
    for name, values, budget in rows:
        print(f"| {name} | {len(values)} | {pct(values, 50) * 1000:.1f} ms | {pct(values, 95) * 1000:.1f} ms "
              f"| {budget:.0f} ms |")  # fmt: skip


if __name__ == "__main__":
    main()
