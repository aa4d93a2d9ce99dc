"""`deskwarden agent`: builds the runtime and runs it in the tray, or headless when there is no display.

Runs on the main thread for the life of the process.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from agent_app.core import paths
from agent_app.core.runtime import TICK_SECONDS, AgentRuntime

log = logging.getLogger(__name__)


def display_available() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _idle_source() -> Callable[[], object] | None:
    try:
        from collectors.idle import default_idle_clock

        clock = default_idle_clock()
    except Exception:
        log.warning("idle detection unavailable", exc_info=True)
        return None
    return clock.last_input


def run_agent(*, headless: bool = False, supervisor: bool = False, home: Path | None = None) -> int:
    home = home or paths.state_dir()
    if headless or not display_available():
        return _run_headless(home)
    return _run_tray(home, supervisor=supervisor)


def _run_headless(home: Path) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runtime = AgentRuntime(home, last_input=_idle_source())  # type: ignore[arg-type]
    runtime.start()
    log.info("agent running headless (device %s)", runtime.device_id or "not enrolled")
    try:
        runtime.run_headless(stop.is_set)
    finally:
        runtime.stop(reason="signal" if stop.is_set() else "exit")
    return 0


def _run_tray(home: Path, *, supervisor: bool) -> int:
    from PySide6.QtCore import QObject, QTimer, Signal
    from PySide6.QtWidgets import QApplication  # noqa: TID251 - the entry point owns the QApplication

    from agent_app.ui.tray_app import run_tray

    class _Dispatcher(QObject):
        call = Signal(object)

        def __init__(self) -> None:
            super().__init__()
            self.call.connect(lambda fn: fn())

    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setQuitOnLastWindowClosed(False)
    runtime = AgentRuntime(home, last_input=_idle_source())  # type: ignore[arg-type]
    dispatcher = _Dispatcher()
    runtime.set_dispatcher(dispatcher.call.emit)
    runtime.start()
    ticker = QTimer()
    ticker.setInterval(int(TICK_SECONDS * 1000))
    ticker.timeout.connect(runtime.tick)
    ticker.start()
    source = None
    if supervisor:
        from agent_app.core.supervisor_alerts import supervisor_source_from_env

        source = supervisor_source_from_env(home)
    try:
        return run_tray(runtime, home=home, app=app, supervisor=source)
    finally:
        ticker.stop()
        runtime.stop(reason="exit")
