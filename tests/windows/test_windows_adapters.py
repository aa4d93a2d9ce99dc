"""The Windows adapters' real OS calls under Wine: autostart in the registry (HKLM and the per-user path with its
scheduled-task attempt), DPAPI in machine scope, and what Wine does with the secrets folder's owner."""

from __future__ import annotations

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
