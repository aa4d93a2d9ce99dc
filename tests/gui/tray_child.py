"""Subprocess for test_tray_xvfb: runs the real `run_tray` on an X display with a fake port and reports
on stdout when the tray icon is embedded in a system tray. Not a test module."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from agent_app.ui import tray_app
from tests.gui.fake_port import FakePort
from tests.gui.helpers import policy

instances: list[tray_app.TrayApp] = []


class RecordingTrayApp(tray_app.TrayApp):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["tray_retry_ms"] = 100
        super().__init__(*args, **kwargs)
        instances.append(self)


def main() -> int:
    app = QApplication(sys.argv[:1])
    print(f"STARTED available={QSystemTrayIcon.isSystemTrayAvailable()}", flush=True)
    reported = False

    def check() -> None:
        nonlocal reported
        icon = instances[0].host.icon if instances else None
        if reported or icon is None or not icon.isVisible():
            return
        geometry = icon.geometry()
        if geometry.isEmpty() or (geometry.x(), geometry.y()) == (0, 0):
            return  # not placed by the tray host yet
        reported = True
        available = QSystemTrayIcon.isSystemTrayAvailable()
        print(f"EMBEDDED {geometry.x()} {geometry.y()} {geometry.width()} {geometry.height()} {available}", flush=True)

    timer = QTimer()
    timer.setInterval(100)
    timer.timeout.connect(check)
    timer.start()
    tray_app.TrayApp = RecordingTrayApp  # type: ignore[misc]
    port = FakePort(policy=policy(text="short"))
    code = tray_app.run_tray(port, home=Path(tempfile.mkdtemp()), app=app)
    print(f"STOPPED {','.join(port.stops)} {code}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
