"""A real system tray: Xvfb + trayer (XEMBED). The tray starts before the tray host exists, picks it up when
it appears, embeds its icon (visible in the X window tree), and stops cleanly on SIGTERM.

Runs the tray in a subprocess on its own Xvfb so the rest of the suite keeps its offscreen QApplication.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.xvfb import qt_xcb_env, xvfb_display

pytestmark = [pytest.mark.gui, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("Xvfb", "trayer", "xwininfo")


def _lines(proc: subprocess.Popen[str]) -> tuple[queue.Queue[str], threading.Thread]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return lines, thread


def _expect(lines: queue.Queue[str], prefix: str, *, timeout: float = 20.0) -> str:
    while True:
        line = lines.get(timeout=timeout)
        if line.startswith(prefix):
            return line


@pytest.mark.skipif(any(shutil.which(tool) is None for tool in TOOLS), reason="needs Xvfb, trayer and xwininfo")
def test_icon_embeds_into_a_late_system_tray_and_sigterm_stops(tmp_path: Path) -> None:
    with xvfb_display(screen="800x600x24") as display:
        env = qt_xcb_env(display)
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)  # no StatusNotifier host: use the XEMBED tray protocol
        env["DESKWARDEN_HOME"] = str(tmp_path)
        env["PYTHONPATH"] = str(ROOT)
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.gui.tray_child"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        trayer: subprocess.Popen[bytes] | None = None
        pump: threading.Thread | None = None
        try:
            lines, pump = _lines(child)
            assert _expect(lines, "STARTED") == "STARTED available=False"
            trayer = subprocess.Popen(
                ["trayer", "--edge", "top", "--align", "right", "--widthtype", "request", "--height", "32"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _, x, y, width, height, available = _expect(lines, "EMBEDDED").split()
            assert available == "True"
            tree = subprocess.run(
                ["xwininfo", "-root", "-tree"], env=env, capture_output=True, text=True, check=True, timeout=10
            ).stdout
            # The embedded icon window sits inside trayer's panel at the geometry Qt reports.
            assert f"{width}x{height}+" in tree
            assert any(
                f"{width}x{height}+" in line and line.rstrip().endswith(f"+{x}+{y}") for line in tree.splitlines()
            )
            os.kill(child.pid, signal.SIGTERM)
            assert _expect(lines, "STOPPED") == "STOPPED sigterm 0"
            assert child.wait(10) == 0
        finally:
            for proc in (child, trayer):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(5)
            if pump is not None:
                pump.join(5)
            if child.stdout is not None:
                child.stdout.close()
