"""`deskwarden demo`: a local endpoint on SQLite plus an enrolled agent, for a first look on one machine.

Runs on the main thread; the endpoint is served by uvicorn on a background thread of the same process.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from central.settings import ServerSettings

log = logging.getLogger(__name__)

DEMO_TEAM = "demo-floor"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedServer:
    """uvicorn serving the central app on a daemon thread; `start` returns once it accepts connections."""

    def __init__(self, settings: ServerSettings) -> None:
        import uvicorn

        from central.app import create_app

        self._server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings),
                host=settings.host,
                port=settings.port,
                log_level="warning",
                lifespan="on",
            )
        )
        self._thread = threading.Thread(target=self._server.run, name="embedded-endpoint", daemon=True)

    def start(self, timeout: float = 20.0) -> None:
        self._thread.start()
        ready = threading.Event()

        def watch() -> None:
            while self._thread.is_alive() and not self._server.started:
                ready.wait(0.05)
            ready.set()

        threading.Thread(target=watch, daemon=True).start()
        if not ready.wait(timeout) or not self._server.started:
            raise RuntimeError("the embedded endpoint did not start")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def run_demo(*, state: Path | None = None, headless: bool = False, port: int = 0) -> int:
    """Endpoint on a thread, the service as a child process and the helper (tray) here, all as this user: the
    unprotected mode of ARCHITECTURE.md section 6, said so plainly and marked in the console."""
    from agent_app.core.enrol import enrol_here
    from agent_app.run import run_agent, start_service_child, stop_service_child
    from central.commands import issue_enroll_token, publish_policy
    from central.settings import ServerSettings
    from policy_client import resources
    from policy_client.agent_config import load_config

    state = (state or Path.cwd() / ".deskwarden-demo").resolve()
    service_home = state / "service"
    helper_home = state / "agent"
    for folder in (state, service_home, helper_home):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ["DESKWARDEN_HOME"] = str(helper_home)
    settings = ServerSettings(data_dir=state / "server", port=port or _demo_port(state))
    server = EmbeddedServer(settings)
    server.start()
    url = f"http://127.0.0.1:{settings.port}"
    config = load_config(service_home / "agent.json")
    if config is None or config.server_url != url:
        (service_home / "agent.json").unlink(missing_ok=True)
        token = issue_enroll_token(settings, DEMO_TEAM, timedelta(hours=1))
        enrol_here(url, token, home=service_home, machine=True)
        demo_policy = resources.assets_dir() / "policy" / "demo.json"
        if demo_policy.exists():
            publish_policy(settings, demo_policy.read_bytes(), author="demo")
    password_file = _console_admin(settings, state)
    socket_path = state / "service.sock"
    service = start_service_child(service_home, socket_path, state / "service.log")
    lines = [
        "DeskWarden demo (unprotected mode: service and tray run as you, so this desk is not tamper-resistant)",
        f"  endpoint:  {url}",
        f"  console:   {url}/console  (user admin, password in {password_file})"
        if password_file
        else "  console:   not available in this build",
        f"  state:     {state}",
        "  stop with Ctrl+C",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)
    try:
        return run_agent(socket_path=socket_path, headless=headless, home=helper_home)
    finally:
        stop_service_child(service)
        server.stop()


def _demo_port(state: Path) -> int:
    """The port the last demo used (so the enrolled agent keeps its identity), or a free one."""
    remembered = state / "port"
    try:
        port = int(remembered.read_text(encoding="utf-8"))
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is fine
            sock.bind(("127.0.0.1", port))
    except (OSError, ValueError):
        port = free_port()
    remembered.write_text(str(port), encoding="utf-8")
    return port


def _console_admin(settings: ServerSettings, state: Path) -> Path | None:
    """Create the demo's console admin once; the password goes to a file readable by the user alone."""
    try:
        from central.commands import create_user
    except ImportError:
        return None
    password_file = state / "console-admin-password.txt"
    if not password_file.exists():
        password = secrets.token_urlsafe(12)
        create_user(settings, "admin", role="admin", teams=[DEMO_TEAM], password=password)
        password_file.write_text(password + "\n", encoding="utf-8")
        password_file.chmod(0o600)
    return password_file
