"""Entry points of the two agent processes: `deskwarden service` (privileged, per machine) and
`deskwarden agent` (the per-session helper: tray when a display exists, headless otherwise).

Each runs on the main thread for the life of its process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING

from agent_app.core import paths
from agent_app.core.memory import limit_malloc_arenas, release_startup_memory
from agent_app.core.privilege import privileged
from agent_app.core.status import TICK_SECONDS
from collectors.idle import IdleClock

if TYPE_CHECKING:
    from agent_app.core.supervisor_alerts import SseAlertClient

log = logging.getLogger(__name__)

EXIT_ALREADY_RUNNING = 3
UNPROTECTED_WARNING = (
    "DeskWarden is running WITHOUT privileges: the service runs as {user}, so the person at this desk can stop it "
    "or read its state. This mode is for demos and development; the console marks this device 'unprotected'. "
    "Install it with `sudo deskwarden install` to protect a real desk."
)


def display_available() -> bool:
    platform: str = sys.platform  # a plain str, so mypy --platform checks every branch
    if platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@contextlib.contextmanager
def instance_lock(path: Path) -> Iterator[bool]:
    """An exclusive lock held for the process's life; yields False (touching nothing else) when another
    process holds it, so a second start can say "already running" without recording anything."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle: IO[bytes] = path.open("a+b")
    try:
        if sys.platform == "win32":
            import msvcrt

            try:
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            except OSError:
                yield False
                return
        else:
            import fcntl

            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
        yield True
    finally:
        handle.close()


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


# --- the privileged service ----------------------------------------------------------------------------------


def run_service(*, state_dir: Path | None = None, socket_path: Path | None = None, unprotected: bool = False) -> int:
    """The service in the foreground (systemd, launchd, a console), or under the Windows SCM when it started us."""
    limit_malloc_arenas()
    platform: str = sys.platform
    if platform == "win32":
        from agent_app.core.windows_service import run_under_scm

        code = run_under_scm(lambda stop: _service_body(state_dir, socket_path, stop, unprotected=unprotected))
        if code is not None:
            return code
    return _service_body(state_dir, socket_path, _stop_on_signals(), unprotected=unprotected)


def _service_body(state_dir: Path | None, socket_path: Path | None, stop: threading.Event, *, unprotected: bool) -> int:
    from agent_app.core.desk_users import current_user_only, desk_users
    from agent_app.core.ipc.channel import default_listener, default_socket_path
    from agent_app.core.machine_secrets import machine_backend
    from agent_app.core.paths import login_name
    from agent_app.core.runtime import AgentRuntime
    from agent_app.core.service import DeskService, run_until
    from agent_app.core.sessions import default_sessions
    from policy_client.schema import utc_now

    protected = privileged() and not unprotected
    home = state_dir or paths.service_state_dir()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if sys.platform != "win32":
        os.chmod(home, 0o700)  # the desk user must not even list it
    socket_path = socket_path or default_socket_path()
    with instance_lock(home / "service.lock") as acquired:
        if not acquired:
            print(f"deskwarden: the service is already running for {home}", file=sys.stderr)
            return EXIT_ALREADY_RUNNING
        if not protected:
            print(UNPROTECTED_WARNING.format(user=login_name()), file=sys.stderr, flush=True)
            log.warning("service running unprivileged (unprotected mode)")
        sessions, launcher = default_sessions()
        getuid = getattr(os, "getuid", None)
        own_uid = None if protected or getuid is None else int(getuid())
        runtime = AgentRuntime(
            home,
            role="service",
            mode="protected" if protected else "unprotected",
            monitored_homes=desk_users if protected else current_user_only,
            # Protected: the machine's store. Unprotected: the user's own (keyring, or its key file), where a
            # per-user enrolment put them.
            machine_secrets=protected,
            secret_backend=machine_backend() if protected else None,
        )
        service = DeskService(
            runtime,
            listener=lambda: default_listener(socket_path, allow_uid=own_uid),
            sessions=sessions,
            launcher=launcher,
            socket_path=socket_path,
            clock=utc_now,
        )
        service.start()
        release_startup_memory()
        log.info("service running (device %s, socket %s)", runtime.device_id or "not enrolled", socket_path)
        try:
            run_until(service, stop.is_set, tick_seconds=TICK_SECONDS)
        finally:
            service.stop(reason="signal" if stop.is_set() else "exit")
    return 0


def start_service_child(home: Path, socket_path: Path, log_file: Path) -> subprocess.Popen[bytes]:
    """`deskwarden service --unprotected` as a child process of this user (demo, or a per-user install without
    admin rights); returns once its socket exists."""
    argv = [sys.executable, "service"] if getattr(sys, "frozen", False) else [sys.executable, "-m", "agent_app"]
    if not getattr(sys, "frozen", False):
        argv.append("service")
    socket_path.unlink(missing_ok=True)  # a stale socket must not pass for a ready service
    log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with log_file.open("ab") as sink:
        child = subprocess.Popen(
            [*argv, "--state-dir", str(home), "--socket", str(socket_path), "--unprotected"], stdout=sink, stderr=sink
        )
    ready = threading.Event()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and child.poll() is None:
        if socket_path.exists():
            ready.set()
            break
        ready.wait(0.1)
    if not ready.is_set():
        child.kill()
        raise RuntimeError(f"the demo service did not start; see {log_file}")
    return child


def stop_service_child(child: subprocess.Popen[bytes]) -> None:
    child.terminate()
    try:
        child.wait(15)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(5)


# --- the session helper --------------------------------------------------------------------------------------


def _idle_clock() -> IdleClock:
    """Last-input timestamp for clean-desk prompts; only a time is kept, never the input itself."""
    clock = IdleClock()
    clock.start()
    if not clock.available:
        log.warning("idle detection unavailable; idle time counts from agent start")
    return clock


def run_agent(
    *,
    socket_path: Path | None = None,
    headless: bool = False,
    supervisor: bool = False,
    home: Path | None = None,
    with_service: bool = False,
) -> int:
    """The session helper. `with_service`: a per-user install without admin rights, so this user's own unprotected
    service runs as a child over the agent home (and the console marks the desk unprotected)."""
    from agent_app.core.ipc.channel import default_socket_path

    limit_malloc_arenas()
    home = home or paths.state_dir()
    child = None
    if with_service:
        socket_path = socket_path or home / "service.sock"
        child = start_service_child(home, socket_path, paths.log_dir(home) / "service.log")
    socket_path = socket_path or default_socket_path()
    try:
        if headless or not display_available():
            return _run_headless(home, socket_path)
        return _run_tray(home, socket_path, supervisor=supervisor)
    finally:
        if child is not None:
            stop_service_child(child)


def _run_headless(home: Path, socket_path: Path) -> int:
    from agent_app.core.helper import HelperRuntime

    session = os.environ.get("DISPLAY", "") or os.environ.get("XDG_SESSION_ID", "") or "console"
    lock_name = "helper-" + "".join(ch if ch.isalnum() else "_" for ch in session) + ".lock"
    with instance_lock(home / lock_name) as acquired:
        if not acquired:
            print("DeskWarden is already running in this session.", file=sys.stderr)
            return EXIT_ALREADY_RUNNING
        stop = _stop_on_signals()
        idle = _idle_clock()
        helper = HelperRuntime(socket_path, last_input=idle.last_input)
        if not helper.start():
            log.warning("%s; retrying in the background", helper.client.last_error)
        release_startup_memory()
        log.info("helper running headless for %s", helper.user)
        try:
            helper.run_headless(stop.is_set, tick_seconds=TICK_SECONDS)
        finally:
            helper.stop(reason="signal" if stop.is_set() else "exit")
            idle.stop()
    return 0


def _import_before_qt() -> None:
    """Import the helper's large pure-Python dependencies before PySide6. PySide6 reads the source file of every
    module imported after it (PYSIDE-2029: shibokensupport/feature.py looks for `__feature__`), and linecache keeps
    the text: about 6 MB for pydantic, python-stdnum, pynput and Xlib's keysym tables, most of which stays resident
    even after the cache is cleared."""
    import agent_app.core.helper  # noqa: F401 - imported early for its effect on memory, see above

    try:
        import pynput.keyboard
        import pynput.mouse  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - the collectors report pynput's absence themselves
        log.debug("pynput not imported early: %s", type(exc).__name__)


def _run_tray(home: Path, socket_path: Path, *, supervisor: bool) -> int:
    _import_before_qt()
    from PySide6.QtCore import QObject, QTimer, Signal
    from PySide6.QtWidgets import QApplication  # noqa: TID251 - the entry point owns the QApplication

    from agent_app.core.helper import HelperRuntime
    from agent_app.ui.single_instance import acquire_tray_lock, tray_lock_path
    from agent_app.ui.tray_app import run_tray

    class _Dispatcher(QObject):
        call = Signal(object)

        def __init__(self) -> None:
            super().__init__()
            self.call.connect(lambda fn: fn())

    lock = acquire_tray_lock(tray_lock_path(home))
    if lock is None:
        print("DeskWarden is already running in this session.", file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    try:
        existing = QApplication.instance()
        app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
        app.setQuitOnLastWindowClosed(False)
        idle = _idle_clock()
        helper = HelperRuntime(socket_path, last_input=idle.last_input)
        dispatcher = _Dispatcher()
        helper.set_dispatcher(dispatcher.call.emit)
        if not helper.start():
            log.warning("%s; retrying in the background", helper.client.last_error)
        ticker = QTimer()
        ticker.setInterval(int(TICK_SECONDS * 1000))
        ticker.timeout.connect(helper.tick)
        ticker.start()
        welcome_status = (helper.client.welcome or {}).get("status", {})
        source = (
            _supervisor_source(home, helper.status().server_url, welcome_status.get("ca_bundle"))
            if supervisor
            else None
        )
        # Once the event loop runs: the tray and its menu exist by then, so what start-up left behind is known.
        QTimer.singleShot(0, release_startup_memory)
        try:
            return run_tray(helper, home=home, app=app, supervisor=source, instance_lock=lock)
        finally:
            ticker.stop()
            helper.stop(reason="exit")
            idle.stop()
    finally:
        lock.release()


def _supervisor_source(home: Path, server_url: str | None, ca_bundle: str | None) -> SseAlertClient | None:
    """The alert stream for a supervisor's desk: the endpoint the service is enrolled with, and the supervisor's
    own token from their keyring (`supervisor_token`) or DESKWARDEN_SUPERVISOR_TOKEN."""
    from agent_app.core.supervisor_alerts import SseAlertClient
    from policy_client.secrets import SecretStore

    token = os.environ.get("DESKWARDEN_SUPERVISOR_TOKEN") or SecretStore(home).get("supervisor_token")
    if not server_url or not token:
        log.error("supervisor notifications need an enrolled service and a supervisor token; not subscribing")
        return None
    return SseAlertClient(server_url, token, ca_bundle=ca_bundle)
