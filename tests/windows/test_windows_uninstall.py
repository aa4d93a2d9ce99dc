"""`deskwarden uninstall` of the Windows service under Wine: with an uninstall token from the endpoint the installed
service is stopped through Wine's SCM (`sc stop`), deleted (`sc delete`), and the helper's HKLM Run value removed."""

from __future__ import annotations

import json

import pytest

from central.commands import issue_unlock_token
from tests.support.endpoint import EndpointProcess
from tests.support.waiting import wait_for
from tests.windows.harness import WineDesk

pytestmark = [pytest.mark.wine, pytest.mark.integration]

START_TIMEOUT = 90.0


def _alive(desk: WineDesk, pid: int) -> bool:
    """Whether Windows pid `pid` still runs in this desk's prefix (psutil's OpenProcess in the Windows Python)."""
    alive: bool = desk.python(f"import psutil\nresult = psutil.pid_exists({pid})")
    return alive


def test_uninstall_with_a_token_stops_and_deletes_the_service_and_its_run_key(
    wine_desk: WineDesk, endpoint: EndpointProcess
) -> None:
    done = wine_desk.cli("install", "--server", endpoint.url, "--token", endpoint.enroll_token(), timeout=180)
    assert done.returncode == 0, done.output
    state = wine_desk.prefix / "drive_c/ProgramData/DeskWarden"
    device_id = json.loads((state / "agent.json").read_text())["device_id"]
    wait_for(lambda: (state / "status.json").exists(), timeout=START_TIMEOUT, what="the SCM-started service")
    assert b"RUNNING" in wine_desk.run(["sc", "query", "DeskWarden"]).stdout
    service_pid = int(json.loads((state / "status.json").read_text())["pid"])
    assert _alive(wine_desk, service_pid)

    token = issue_unlock_token(endpoint.settings, device_id, scope="uninstall", minutes=5)
    done = wine_desk.cli("uninstall", "--unlock-token", token, timeout=180)
    assert done.returncode == 0, done.output
    assert "service DeskWarden" in done.output, done.output
    assert "Run\\DeskWarden" in done.output, done.output
    assert "uninstall reported to the endpoint" in done.output, done.output

    run_value = wine_desk.python(
        r"""
        import winreg
        try:
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"Software\Microsoft\Windows\CurrentVersion\Run") as key:
                result = winreg.QueryValueEx(key, "DeskWarden")[0]
        except FileNotFoundError:
            result = None
        """
    )
    assert run_value is None
    # `sc stop` asked the service to stop (STOP_PENDING) and `sc delete` marked it for deletion: the SCM removes it
    # once the body has wound down and the process has exited.
    wait_for(lambda: not _alive(wine_desk, service_pid), timeout=60, what="the service process to exit")

    def deleted() -> bool:
        # Wine's sc.exe prints nothing for an unknown service and exits 1; the SCM's database is the registry.
        return wine_desk.run(["sc", "query", "DeskWarden"]).returncode != 0 and not _service_key(wine_desk)

    wait_for(deleted, timeout=60, what="the SCM to forget the service")


def _service_key(desk: WineDesk) -> bool:
    found: bool = desk.python(
        r"""
        import winreg
        try:
            winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SYSTEM\CurrentControlSet\Services\DeskWarden").Close()
            result = True
        except FileNotFoundError:
            result = False
        """
    )
    return found
