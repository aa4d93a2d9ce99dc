"""The Windows adapters' real OS calls under Wine: autostart in the registry (HKLM and the per-user path with its
scheduled-task attempt), DPAPI in machine scope, what Wine does with the secrets folder's owner, the capture scan's
process names, and `deskwarden selftest` of the Windows build reporting each collector."""

from __future__ import annotations

import json

import pytest

from tests.windows.harness import WineDesk

pytestmark = pytest.mark.wine


def test_autostart_writes_the_run_keys_and_uninstall_removes_them(wine_desk: WineDesk) -> None:
    result = wine_desk.python(
        r"""
        import winreg
        from agent_app.core.autostart.model import LaunchSpec
        from agent_app.core.autostart.windows import RUN_KEY, RUN_VALUE, WindowsAutostart

        def run_value(root):
            try:
                with winreg.OpenKey(root, RUN_KEY) as key:
                    return winreg.QueryValueEx(key, RUN_VALUE)[0]
            except FileNotFoundError:
                return None

        adapter = WindowsAutostart()
        machine = LaunchSpec(argv=(r"C:\Program Files\DeskWarden\deskwarden.exe", "agent"), version="0", all_users=True)
        user = LaunchSpec(argv=(r"C:\Program Files\DeskWarden\deskwarden.exe", "agent"), version="0")
        registered = adapter.register(machine)
        hklm_after_install = run_value(winreg.HKEY_LOCAL_MACHINE)
        removed = adapter.unregister(machine)
        hklm_after_uninstall = run_value(winreg.HKEY_LOCAL_MACHINE)
        user_registered = adapter.register(user)
        hkcu_after_install = run_value(winreg.HKEY_CURRENT_USER)
        user_removed = adapter.unregister(user)
        hkcu_after_uninstall = run_value(winreg.HKEY_CURRENT_USER)
        result = locals() | {"adapter": None, "machine": None, "user": None, "winreg": None, "run_value": None}
        result = {k: v for k, v in result.items() if isinstance(v, (str, list, type(None)))}
        """
    )
    command = '"C:\\Program Files\\DeskWarden\\deskwarden.exe" agent'
    assert result["hklm_after_install"] == command
    assert result["registered"] == ["HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\DeskWarden"]
    assert result["hklm_after_uninstall"] is None
    assert result["removed"] == result["registered"]
    # Per user: a scheduled task where schtasks takes the task XML, else HKCU Run; uninstall removes either.
    if result["user_registered"][0].startswith("HKCU"):
        assert result["hkcu_after_install"] == command
    assert result["hkcu_after_uninstall"] is None
    assert result["user_removed"], result


def test_dpapi_machine_scope_round_trip_and_wrong_entropy_refused(wine_desk: WineDesk) -> None:
    result = wine_desk.python(
        """
        from agent_app.core.machine_secrets import DPAPI_ENTROPY, Win32Dpapi
        dpapi = Win32Dpapi()
        blob = dpapi.protect(b"device credential", entropy=DPAPI_ENTROPY)
        back = dpapi.unprotect(blob, entropy=DPAPI_ENTROPY)
        try:
            dpapi.unprotect(blob, entropy=b"another program")
            refused = False
        except OSError:
            refused = True
        result = {"sealed": b"device credential" not in blob, "back": back.decode(), "refused": refused}
        """
    )
    assert result == {"sealed": True, "back": "device credential", "refused": True}


def test_wine_keeps_the_writer_as_owner_so_the_dpapi_store_refuses_the_file(wine_desk: WineDesk) -> None:
    """Wine 8 accepts SetNamedSecurityInfoW(OWNER) but keeps the writer's SID, so DpapiFileBackend's owner check
    (SYSTEM or Administrators only) refuses its own file, and the service falls back to its key file. On Windows the
    owner is Administrators. This pins down the Wine behaviour docs/testing.md describes."""
    result = wine_desk.python(
        r"""
        import os
        from pathlib import Path
        from agent_app.core.machine_secrets import DpapiFileBackend, Win32DirectoryAcl
        target = Path(os.environ["PROGRAMDATA"]) / "DeskWardenOwnerProbe" / "secrets.dpapi"
        store = DpapiFileBackend(target)
        store.set_password("deskwarden:probe", "key", "value")
        try:
            store.get_password("deskwarden:probe", "key")
            error = None
        except PermissionError as exc:
            error = str(exc)
        owner = Win32DirectoryAcl().owner_sid(target)
        result = {"owner": owner, "error": error, "sealed": b"value" not in target.read_bytes()}
        """
    )
    assert result["sealed"]
    assert result["owner"].startswith("S-1-5-21-"), result
    assert result["error"] is not None
    assert "not SYSTEM or Administrators" in result["error"]


def test_selftest_of_the_windows_build_starts_every_collector_and_records_an_event(wine_desk: WineDesk) -> None:
    done = wine_desk.cli("selftest", timeout=180)
    start = done.output.find("\n{")
    assert start >= 0, done.output
    report, _end = json.JSONDecoder().raw_decode(done.output, start + 1)
    assert report["platform"] == "win32 AMD64", report
    assert report["python"] == wine_desk.info["python"], report
    assert report["qt"] is True, report  # PySide6 6.8.3 (scripts/windows-env.sh), offscreen
    # Every registered collector, of the service and of the session helper, built and started under Windows.
    assert report["collectors"] == {
        "clipboard": "running",
        "downloads": "running",
        "screen_capture": "running",
        "usb": "running",
    }, report
    assert report["missing"] == [], report
    assert report["failed"] == [], report
    assert report["event_recorded"] is True, report
    assert report["threads_left"] == [], report
    assert report["ok"] is True, report
    assert done.returncode == 0, done.output


def test_the_capture_scan_names_windows_processes_where_psutil_cannot(wine_desk: WineDesk) -> None:
    """psutil 7.2's Process.name() fails under Wine 8 (WinError 87 from NtQuerySystemInformation); the scanner's
    table still names every process, from QueryFullProcessImageNameW or the toolhelp snapshot."""
    result = wine_desk.python(
        """
        import os
        import psutil
        from collectors.capture.process_scan import PsutilProcessTable
        from collectors.capture.windows_process import snapshot_names
        try:
            psutil.Process(os.getpid()).name()
            psutil_error = None
        except OSError as exc:
            psutil_error = str(exc)
        table = PsutilProcessTable()
        infos = [table.inspect(pid) for pid in table.pids()]
        mine = table.inspect(os.getpid())
        result = {
            "psutil_error": psutil_error,
            "named": sorted({i.name.lower() for i in infos if i is not None}),
            "unnamed": sum(1 for i in infos if i is None or not i.name),
            "mine": [mine.name, mine.exe, mine.username],
            "snapshot_has_me": snapshot_names().get(os.getpid()),
        }
        """
    )
    assert result["psutil_error"] is not None, "psutil names processes under this Wine: the fallback is untested"
    assert {"services.exe", "explorer.exe", "python.exe"} <= set(result["named"]), result
    assert result["unnamed"] == 0, result
    name, exe, user = result["mine"]
    assert name == "python.exe", result
    assert exe.lower().endswith("\\python\\python.exe"), result
    assert user.lower().endswith("\\root"), result
    assert result["snapshot_has_me"] == "python.exe", result
