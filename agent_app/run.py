"""`deskwarden agent`: builds the runtime and runs it in the tray, or headless when there is no display.

Runs on the main thread for the life of the process.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from agent_app.core import paths
from agent_app.core.runtime import TICK_SECONDS, AgentRuntime
from collectors.idle import IdleClock

if TYPE_CHECKING:
    from agent_app.core.supervisor_alerts import SseAlertClient

log = logging.getLogger(__name__)


def display_available() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _idle_clock() -> IdleClock:
    """Last-input timestamp for clean-desk prompts; only a time is kept, never the input itself."""
    clock = IdleClock()
    clock.start()
    if not clock.available:
        log.warning("idle detection unavailable; idle time counts from agent start")
    return clock


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
    idle = _idle_clock()
    runtime = AgentRuntime(home, last_input=idle.last_input)
    runtime.start()
    log.info("agent running headless (device %s)", runtime.device_id or "not enrolled")
    try:
        runtime.run_headless(stop.is_set)
    finally:
        runtime.stop(reason="signal" if stop.is_set() else "exit")
        idle.stop()
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

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setQuitOnLastWindowClosed(False)
    idle = _idle_clock()
    runtime = AgentRuntime(home, last_input=idle.last_input)
    dispatcher = _Dispatcher()
    runtime.set_dispatcher(dispatcher.call.emit)
    runtime.start()
    ticker = QTimer()
    ticker.setInterval(int(TICK_SECONDS * 1000))
    ticker.timeout.connect(runtime.tick)
    ticker.start()
    source = _supervisor_source(home) if supervisor else None
    try:
        return run_tray(runtime, home=home, app=app, supervisor=source)
    finally:
        ticker.stop()
        runtime.stop(reason="exit")
        idle.stop()


def _supervisor_source(home: Path) -> SseAlertClient | None:
    """The alert stream for a supervisor's desk: the endpoint from enrolment, the token from the secret store
    (`supervisor_token`) or DESKWARDEN_SUPERVISOR_TOKEN."""
    from agent_app.core.supervisor_alerts import SseAlertClient
    from policy_client.agent_config import load_config
    from policy_client.secrets import SecretStore

    config = load_config(paths.config_path(home))
    token = os.environ.get("DESKWARDEN_SUPERVISOR_TOKEN") or SecretStore(home).get("supervisor_token")
    if config is None or not token:
        log.error("supervisor notifications need an enrolled agent and a supervisor token; not subscribing")
        return None
    return SseAlertClient(config.server_url, token, ca_bundle=config.ca_bundle)
