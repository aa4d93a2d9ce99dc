"""The Windows agent for real under Wine: `deskwarden install` as an administrator enrols the service with a real
endpoint on loopback and registers it with Wine's Service Control Manager through the project's installer (sc.exe,
HKLM Run); the SCM starts it; its heartbeats, collectors and events reach the endpoint; the capture scan terminates
a Windows program named like a capture tool; a removable drive's arrival reaches the USB watcher window and the
block runs against it; the session helper connects over the named pipe."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from central.commands import publish_policy
from tests.support.endpoint import EndpointProcess
from tests.support.waiting import wait_for
from tests.windows.harness import WineDesk, windows_path
from tests.windows.wine_drives import define_removable_drive, send_arrival_to_the_service

pytestmark = [pytest.mark.wine, pytest.mark.integration]

POLICY: dict[str, Any] = {
    "version": 3,
    "controls": {
        "usb": {"mode": "block"},
        "downloads": {"mode": "audit", "paths": ["~/Downloads"]},
        "clipboard": {"mode": "mask", "detectors": ["card"]},
        "screen_capture": {"mode": "block", "process_names": ["SnippingTool.exe"]},
        "acknowledgement": {"required": True, "text_markdown": "Customer data stays on this desk."},
        "clean_desk": {"times": []},
        "reporting": {"heartbeat_seconds": 5},
        "agent": {"allow_quit": False},
    },
}
START_TIMEOUT = 90.0
COPY_AGAIN_SECONDS = 5.0


@dataclass
class InstalledDesk:
    wine: WineDesk
    endpoint: EndpointProcess
    api_token: str
    device_id: str
    install_output: str
    service_log: Path

    @property
    def state(self) -> Path:
        return self.wine.prefix / "drive_c" / "ProgramData" / "DeskWarden"

    def device(self) -> dict[str, Any]:
        response = requests.get(
            self.endpoint.url + "/v1/devices", headers={"Authorization": f"Bearer {self.api_token}"}, timeout=10
        )
        response.raise_for_status()
        (device,) = [d for d in response.json() if d["device_id"] == self.device_id]
        return dict(device)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.endpoint.events(self.api_token, device_id=self.device_id) if e["kind"] == kind]


@pytest.fixture(scope="module")
def installed(wine_desk: WineDesk, endpoint: EndpointProcess) -> InstalledDesk:
    publish_policy(endpoint.settings, json.dumps(POLICY).encode())
    done = wine_desk.cli("install", "--server", endpoint.url, "--token", endpoint.enroll_token(), timeout=180)
    assert done.returncode == 0, done.output
    state = wine_desk.prefix / "drive_c/ProgramData/DeskWarden"
    config = json.loads((state / "agent.json").read_text())
    # From here on the service is the one Wine's SCM started (`sc start` in the installer), as on a desk.
    return InstalledDesk(
        wine_desk, endpoint, endpoint.api_token(), config["device_id"], done.output, state / "logs" / "agent.log"
    )


def test_install_enrols_the_service_and_registers_it_with_the_service_control_manager(installed: InstalledDesk) -> None:
    assert f"enrolled the service as device {installed.device_id}" in installed.install_output
    assert "installed: service DeskWarden created (LocalSystem, automatic start)" in installed.install_output
    assert "installed: service DeskWarden started" in installed.install_output
    registered = installed.wine.python(
        r"""
        import winreg
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SYSTEM\CurrentControlSet\Services\DeskWarden") as key:
            image = winreg.QueryValueEx(key, "ImagePath")[0]
            start = winreg.QueryValueEx(key, "Start")[0]
            account = winreg.QueryValueEx(key, "ObjectName")[0]
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"Software\Microsoft\Windows\CurrentVersion\Run") as key:
            run = winreg.QueryValueEx(key, "DeskWarden")[0]
        result = {"image": image, "start": start, "account": account, "run": run}
        """
    )
    python = installed.wine.python_exe
    assert registered["image"] == f"{python} -m agent_app service"
    assert registered["start"] == 2  # SERVICE_AUTO_START
    assert registered["account"] == "LocalSystem"
    assert registered["run"] == f"{python} -m agent_app agent"


def test_the_service_started_by_the_scm_runs_as_a_service(installed: InstalledDesk) -> None:
    """The SCM-started python.exe found the installer's state (the ProgramData known folder, not the PROGRAMDATA
    that Wine's services.exe passes) and reports itself running through the SCM protocol."""
    wait_for(
        lambda: (installed.state / "status.json").exists(),
        timeout=START_TIMEOUT,
        what=f"status.json from the SCM-started service (log: {installed.service_log})",
    )
    done = installed.wine.run(["sc", "query", "DeskWarden"])
    assert b"RUNNING" in done.stdout, done.stdout.decode(errors="replace")


def test_the_service_reports_heartbeats_and_its_windows_collectors(installed: InstalledDesk) -> None:
    wait_for(
        lambda: installed.device()["last_heartbeat"] is not None and installed.device()["collectors"],
        timeout=START_TIMEOUT,
        what=f"a heartbeat from the Windows service (log: {installed.service_log})",
    )
    wait_for(
        lambda: installed.device()["collectors"].get("screen_capture") == "running",
        timeout=START_TIMEOUT,
        what="the collectors' state in a heartbeat",
    )
    device = installed.device()
    assert device["mode"] == "protected"  # an elevated administrator under Wine: IsUserAnAdmin
    collectors = device["collectors"]
    assert collectors.get("screen_capture") == "running", collectors
    assert collectors.get("usb") == "running", collectors  # the message-only window for WM_DEVICECHANGE
    assert collectors.get("downloads") == "running", collectors  # watchdog's ReadDirectoryChangesW
    wait_for(lambda: installed.device()["policy_version"] == POLICY["version"], timeout=START_TIMEOUT, what="policy 3")


def test_a_program_named_like_a_capture_tool_is_terminated_and_reported(installed: InstalledDesk) -> None:
    wait_for(lambda: installed.device()["policy_version"] == 3, timeout=START_TIMEOUT, what="policy 3 on the desk")
    # A real Windows program under a capture tool's name: the embeddable python.exe, copied beside its DLLs.
    tool = installed.wine.python_dir / "SnippingTool.exe"
    shutil.copy(installed.wine.python_dir / "python.exe", tool)
    proc = installed.wine._script([windows_path(tool), "-c", "import time; time.sleep(300)"], tool.with_suffix(".log"))
    wait_for(lambda: proc.poll() is not None, timeout=20, what="SnippingTool.exe to be terminated by the service")
    wait_for(
        lambda: installed.events("capture.tool_terminated"), timeout=60, what="capture.tool_terminated at the endpoint"
    )
    (event,) = installed.events("capture.tool_terminated")
    assert event["data"]["name"].lower() == "snippingtool.exe", event


@pytest.fixture(scope="module")
def tray_helper(installed: InstalledDesk) -> Path:
    """`deskwarden agent` with its Qt tray (PySide6 6.8.3, the windows platform plugin on Wine's X11 driver) as the
    desk user; its log file."""
    wait_for(lambda: installed.device()["last_heartbeat"] is not None, timeout=START_TIMEOUT, what="the service")
    _proc, log = installed.wine.spawn_cli("-v", "agent")
    return log


def test_the_session_helper_connects_over_the_named_pipe_as_the_desk_user(
    installed: InstalledDesk, tray_helper: Path
) -> None:
    def helpers() -> list[str]:
        """Users with a connected helper, as the service answers `deskwarden status --json` over the same pipe."""
        done = installed.wine.cli("status", "--json", "--socket", r"\\.\pipe\deskwarden", timeout=60)
        start = done.output.find("{")
        if done.returncode != 0 or start < 0:
            return []
        status, _end = json.JSONDecoder().raw_decode(done.output, start)
        users: list[str] = status.get("helper_users", [])
        return users

    wait_for(lambda: helpers(), timeout=60, what=f"the helper on the service's pipe (log: {tray_helper})")
    # The peer comes from the pipe client's token (LookupAccountSid): DOMAIN\user of the Wine account.
    (user,) = helpers()
    assert user.lower().endswith("\\root"), user
    wait_for(lambda: installed.device()["user"], timeout=START_TIMEOUT, what="the desk user in a heartbeat")
    assert installed.device()["user"].lower().endswith("root"), installed.device()


def test_the_tray_helper_masks_a_card_number_copied_on_the_x_clipboard(
    installed: InstalledDesk, tray_helper: Path
) -> None:
    """xclip owns the X CLIPBOARD with a card number; Wine's X11 driver bridges it to the Windows clipboard, Qt's
    windows plugin reports the change, the helper's clipboard collector masks it, and the masked text is what X
    clients read back. The endpoint gets `clipboard.sensitive` (masked), never the number."""
    env = {"DISPLAY": str(installed.wine.display), "PATH": "/usr/bin:/bin"}
    wait_for(lambda: "tray icon shown" in _text(tray_helper), timeout=START_TIMEOUT, what=f"the tray ({tray_helper})")
    card = "4111 1111 1111 1111"
    copied_at = 0.0

    def masked() -> bool:
        """True once X clients read the masked card; copies the card again every few seconds until then (the
        helper's clipboard collector starts with the policy the service pushes, after the tray shows)."""
        nonlocal copied_at
        done = subprocess.run(
            ["xclip", "-selection", "clipboard", "-o"], capture_output=True, env=env, check=False, timeout=10
        )
        if done.stdout == b"XXXX XXXX XXXX 1111":
            return True
        if time.monotonic() - copied_at > COPY_AGAIN_SECONDS:
            subprocess.run(["xclip", "-selection", "clipboard", "-i"], input=card.encode(), env=env, check=True)
            copied_at = time.monotonic()
        return False

    wait_for(masked, timeout=START_TIMEOUT, what=f"the masked card on the X clipboard (log: {tray_helper})")
    wait_for(lambda: installed.events("clipboard.sensitive"), timeout=60, what="clipboard.sensitive at the endpoint")
    (event,) = installed.events("clipboard.sensitive")
    assert event["action"] == "masked", event
    assert card not in json.dumps(event), event
    assert card.replace(" ", "") not in json.dumps(event), event


def test_the_tray_helper_asks_for_the_policy_acknowledgement_in_a_window_on_x(
    installed: InstalledDesk, tray_helper: Path
) -> None:
    """The policy requires an acknowledgement: the helper opens its Qt dialog, which Wine's X11 driver maps as a
    real X window that X clients (xdotool) find by its title."""
    from agent_app.core.texts import ACK_TITLE

    env = {"DISPLAY": str(installed.wine.display), "PATH": "/usr/bin:/bin"}

    def x_windows(name: str) -> list[str]:
        done = subprocess.run(
            ["xdotool", "search", "--onlyvisible", "--name", name], capture_output=True, env=env, timeout=10
        )
        return done.stdout.decode().split()

    wait_for(
        lambda: x_windows(ACK_TITLE),
        timeout=START_TIMEOUT,
        what=f"the acknowledgement prompt on X (log: {tray_helper})",
    )


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def test_a_removable_drive_arriving_is_reported_and_the_block_runs_against_it(installed: InstalledDesk) -> None:
    """A drive letter Wine reports as removable (defined through its mount manager, as winecfg does) and the
    WM_DEVICECHANGE/DBT_DEVICEARRIVAL of its volume, delivered to the service's message-only watcher window (see
    tests/windows/wine_drives.py for why the test delivers it): the service rescans, records the volume, and the
    policy's block runs against it."""
    wait_for(
        lambda: installed.device()["collectors"].get("usb") == "running", timeout=START_TIMEOUT, what="the USB watcher"
    )
    stick = installed.wine.root / "stick"
    stick.mkdir()
    (stick / ".windows-label").write_text("DW-STICK\n")  # Wine reads a folder drive's label from here
    (stick / "customers.csv").write_text("name,card\n")
    assert installed.wine.python(define_removable_drive("R", str(stick))) == {"drive_type": 2}  # DRIVE_REMOVABLE
    sent = installed.wine.python(send_arrival_to_the_service("R"))
    assert sent["sent"], sent
    assert sent["answer"] == 1, sent  # the window procedure handled DBT_DEVICEARRIVAL

    def arrivals() -> list[dict[str, Any]]:
        return [
            e
            for kind in ("usb.mounted", "usb.blocked")
            for e in installed.events(kind)
            if e["data"].get("mount_point") == "R:\\"
        ]

    wait_for(lambda: arrivals(), timeout=60, what=f"the R: arrival at the endpoint (log: {installed.service_log})")
    (event,) = arrivals()
    assert event["data"]["label"] == "DW-STICK", event
    assert "present_at_start" not in event["data"], event  # seen on arrival, not at the service's start
    # The block ran and says why it could not eject: Wine's folder-backed drive refuses FSCTL_DISMOUNT_VOLUME with
    # ERROR_NOT_SUPPORTED (50). Recorded as a failed enforcement at high severity, never dropped or retried.
    assert event["action"] == "failed", event
    assert event["data"]["attempted"] == "block", event
    assert event["data"]["error"] == "dismount of R: refused (error 50)", event
    assert event["severity"] == "high", event
