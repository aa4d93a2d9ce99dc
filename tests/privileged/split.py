"""A real protected desk for tests/privileged: an endpoint, the service running as root from the root-owned
install, and a helper running as a real standard user under Xvfb. `SplitDesk` drives and inspects it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from central.commands import publish_policy
from tests.support.desk_user import DeskUser, run_as, spawn_as
from tests.support.endpoint import EndpointProcess
from tests.support.waiting import wait_for

SERVICE_START_TIMEOUT = 60.0
CARD = "4111 1111 1111 1111"

POLICY: dict[str, Any] = {
    "version": 3,
    "controls": {
        "usb": {"mode": "block", "media_roots": ["/media"]},
        "downloads": {"mode": "quarantine", "paths": ["~/Downloads"], "quarantine_on": "sensitive"},
        "clipboard": {"mode": "mask", "detectors": ["card"]},
        "screen_capture": {"mode": "block", "process_names": ["flameshot"]},
        "acknowledgement": {"required": False},
        "clean_desk": {"times": []},
        "reporting": {"heartbeat_seconds": 5},
        "agent": {"allow_quit": False},
    },
}


def root_env() -> dict[str, str]:
    """The service's environment: nothing of the test runner's venv or agent home."""
    keep = ("PATH", "LANG", "TZ")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    return {**env, "PYTHONUNBUFFERED": "1", "HOME": "/root"}


@dataclass
class SplitDesk:
    python: Path
    endpoint: EndpointProcess
    state: Path
    socket: Path
    display: str
    media_root: Path = Path("/media")
    """This desk's own removable-media root under /media: tests run in parallel, and another desk's service in
    block mode would unmount (and report to its own endpoint) a stick mounted under a shared root."""
    downloads: str = "Downloads"
    """The folder under each home this desk's policy watches: its own, for the same reason as `media_root`."""
    capture_tool: str = "flameshot"
    """The screen-capture tool name this desk's policy blocks: its own, for the same reason as `media_root`."""
    api_token: str = ""
    device_id: str = ""
    service: subprocess.Popen[bytes] | None = None
    helpers: dict[str, subprocess.Popen[str]] = field(default_factory=dict)

    # --- running ------------------------------------------------------------------------------------------

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`deskwarden ARGS` as root from the root-owned install."""
        return subprocess.run(
            [str(self.python), "-m", "agent_app", *args],
            env=root_env(),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def start_service(self) -> None:
        with (self.state.parent / "service.log").open("ab") as log:
            self.service = self._popen_service(log)
        wait_for(lambda: self.socket.exists(), timeout=SERVICE_START_TIMEOUT, what="the service's socket")

    def _popen_service(self, log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                str(self.python),
                "-m",
                "agent_app",
                "-v",
                "service",
                "--state-dir",
                str(self.state),
                "--socket",
                str(self.socket),
            ],
            env=root_env(),
            cwd="/",
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start_helper(self, user: DeskUser) -> subprocess.Popen[str]:
        with (self.state.parent / f"helper-{user.name}.log").open("a") as log:
            proc = spawn_as(
                user,
                [str(self.python), "-m", "agent_app", "-v", "agent", "--socket", str(self.socket)],
                display=self.display,
                env={"QT_QPA_PLATFORM": "xcb"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.helpers[user.name] = proc
        wait_for(lambda: user.name in self.helper_users(), timeout=60, what=f"{user.name}'s helper to connect")
        return proc

    def status(self) -> dict[str, Any]:
        done = self.cli("status", "--json", "--socket", str(self.socket))
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def helper_users(self) -> list[str]:
        """Users with a connected helper, as the service reports them."""
        users: list[str] = self.status().get("helper_users", [])
        return users

    # --- the endpoint's view ------------------------------------------------------------------------------

    def events(self, **params: Any) -> list[dict[str, Any]]:
        return [e for e in self.endpoint.events(self.api_token) if all(e.get(k) == v for k, v in params.items())]

    def device(self) -> dict[str, Any]:
        response = requests.get(
            self.endpoint.url + "/v1/devices", headers={"Authorization": f"Bearer {self.api_token}"}, timeout=10
        )
        response.raise_for_status()
        (device,) = [d for d in response.json() if d["device_id"] == self.device_id]
        return dict(device)

    def alerts(self) -> list[dict[str, Any]]:
        return self.endpoint.alerts(self.api_token, device_id=self.device_id)

    # --- teardown -----------------------------------------------------------------------------------------

    def stop(self) -> None:
        for proc in self.helpers.values():
            if proc.poll() is None:
                proc.kill()
        if self.service is not None and self.service.poll() is None:
            self.service.terminate()
            try:
                self.service.wait(20)
            except subprocess.TimeoutExpired:
                self.service.kill()
        self.endpoint.stop()


def service_log(desk: SplitDesk) -> str:
    return (desk.state.parent / "service.log").read_text(encoding="utf-8", errors="replace")[-4000:]


def make_split_desk(
    tmp_path: Path, python: Path, display: str, policy: dict[str, Any] | None = None
) -> Iterator[SplitDesk]:
    # The state lives where a desk user can reach the directory entry (/var/lib is 0755), so a refusal in these
    # tests is the state directory's own permission, not a parent directory's.
    base = Path(tempfile.mkdtemp(prefix="dw-test-", dir="/var/lib"))
    base.chmod(0o755)
    run_dir = Path(tempfile.mkdtemp(prefix="dw-test-", dir="/run"))
    run_dir.chmod(0o755)
    endpoint = EndpointProcess(tmp_path / "server")
    endpoint.start()
    desk = SplitDesk(
        python=python, endpoint=endpoint, state=base / "state", socket=run_dir / "service.sock", display=display
    )
    Path("/media").mkdir(exist_ok=True)
    desk.media_root = Path(tempfile.mkdtemp(prefix="dw-test-", dir="/media"))
    chosen = json.loads(json.dumps(policy or POLICY))
    chosen["controls"].setdefault("usb", {})["media_roots"] = [str(desk.media_root)]
    desk.capture_tool = f"shot{uuid.uuid4().hex[:8]}"  # under Linux's 15-character process name
    chosen["controls"].setdefault("screen_capture", {})["process_names"] = [desk.capture_tool]
    desk.downloads = f"Downloads-{uuid.uuid4().hex[:8]}"
    chosen["controls"].setdefault("downloads", {})["paths"] = [f"~/{desk.downloads}"]
    try:
        publish_policy(endpoint.settings, json.dumps(chosen).encode())
        desk.api_token = endpoint.api_token()
        desk.device_id = desk.cli(
            "enroll", endpoint.url, "--token", endpoint.enroll_token(), "--state-dir", str(desk.state)
        ).stdout.strip()
        desk.start_service()
        yield desk
    finally:
        desk.stop()
        for log in sorted(base.glob("*.log")):  # shown by pytest when the test failed
            print(f"--- {log.name}\n{log.read_text(encoding='utf-8', errors='replace')[-3000:]}")
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(desk.media_root, ignore_errors=True)


def as_user_python(desk: SplitDesk, user: DeskUser, code: str) -> subprocess.CompletedProcess[str]:
    """Run Python `code` as the desk user with the installed packages (what a hostile user could write)."""
    return run_as(user, [str(desk.python), "-c", code], display=desk.display)
