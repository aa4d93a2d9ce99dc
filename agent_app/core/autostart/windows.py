"""Windows autostart: a per-user scheduled task (logon trigger, revives a stopped agent every 5 minutes) with the
HKCU Run key as fallback; HKLM Run for all users. Called on the main thread by install/uninstall.
"""

from __future__ import annotations

import getpass
import importlib
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal, Protocol
from xml.sax.saxutils import escape

from agent_app.core.autostart.model import TASK_NAME, CommandRunner, LaunchSpec, run_command
from agent_app.core.autostart.templates import render

log = logging.getLogger(__name__)

Hive = Literal["HKCU", "HKLM"]
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE = "DeskWarden"


class RegistryPort(Protocol):
    """The few registry calls autostart needs; `WinregRegistry` is the real one."""

    def set_string(self, hive: Hive, key: str, name: str, value: str) -> None: ...

    def delete_value(self, hive: Hive, key: str, name: str) -> bool:
        """True when the value existed."""
        ...


class WinregRegistry:
    """RegistryPort over the standard library's winreg (imported lazily: it exists on Windows only)."""

    def set_string(self, hive: Hive, key: str, name: str, value: str) -> None:
        winreg = _winreg()

        root = winreg.HKEY_CURRENT_USER if hive == "HKCU" else winreg.HKEY_LOCAL_MACHINE
        with winreg.CreateKeyEx(root, key, 0, winreg.KEY_SET_VALUE) as handle:
            winreg.SetValueEx(handle, name, 0, winreg.REG_SZ, value)

    def delete_value(self, hive: Hive, key: str, name: str) -> bool:
        winreg = _winreg()

        root = winreg.HKEY_CURRENT_USER if hive == "HKCU" else winreg.HKEY_LOCAL_MACHINE
        try:
            with winreg.OpenKey(root, key, 0, winreg.KEY_SET_VALUE) as handle:
                winreg.DeleteValue(handle, name)
        except FileNotFoundError:
            return False
        return True


def _winreg() -> Any:
    """The winreg module (Windows only); a variable, not `sys.platform`, so every mypy platform sees live code."""
    platform: str = sys.platform
    if platform != "win32":
        raise RuntimeError("the Windows registry is only available on Windows")
    return importlib.import_module("winreg")


def current_user_id() -> str:
    """DOMAIN\\user of the installing session, as the task's principal."""
    domain = os.environ.get("USERDOMAIN", "")
    user = getpass.getuser()
    return f"{domain}\\{user}" if domain else user


def task_xml(spec: LaunchSpec, *, user_id: str) -> str:
    command, *arguments = spec.argv
    values = {
        "version": escape(spec.version),
        "task_name": escape(TASK_NAME),
        "user_id": escape(user_id),
        "command": escape(command),
        "arguments": escape(subprocess.list2cmdline(arguments)),
    }
    return render("windows/deskwarden-task.xml", values)


class WindowsAutostart:
    name = "windows"

    def __init__(
        self,
        *,
        registry: RegistryPort | None = None,
        run: CommandRunner = run_command,
        user_id: str | None = None,
        scratch_dir: Path | None = None,
    ) -> None:
        self._registry: RegistryPort = registry if registry is not None else WinregRegistry()
        self._run = run
        self._user_id = user_id
        self._scratch = scratch_dir

    def register(self, spec: LaunchSpec) -> list[str]:
        if spec.env:
            log.warning("Windows autostart cannot carry %s; the agent will use its default data dir", sorted(spec.env))
        command_line = subprocess.list2cmdline(spec.argv)
        if spec.all_users:
            # A per-user task cannot serve every user of a shared (RDP/Citrix) host: HKLM Run starts one agent
            # in each session; deploy.md describes adding the watchdog task per user.
            self._registry.set_string("HKLM", RUN_KEY, RUN_VALUE, command_line)
            return [rf"HKLM\{RUN_KEY}\{RUN_VALUE}"]
        if self._create_task(spec):
            self._run(["schtasks", "/Run", "/TN", TASK_NAME])
            # A Run value left by an older install would start a second agent next to the task.
            self._registry.delete_value("HKCU", RUN_KEY, RUN_VALUE)
            return [f"scheduled task {TASK_NAME!r} (logon, restarts within 5 minutes)"]
        log.warning("scheduled task could not be created; falling back to HKCU Run without a watchdog")
        self._registry.set_string("HKCU", RUN_KEY, RUN_VALUE, command_line)
        return [rf"HKCU\{RUN_KEY}\{RUN_VALUE}"]

    def unregister(self, spec: LaunchSpec) -> list[str]:
        removed: list[str] = []
        if spec.all_users:
            if self._registry.delete_value("HKLM", RUN_KEY, RUN_VALUE):
                removed.append(rf"HKLM\{RUN_KEY}\{RUN_VALUE}")
            return removed
        self._run(["schtasks", "/End", "/TN", TASK_NAME])
        if self._run(["schtasks", "/Delete", "/TN", TASK_NAME, "/F"]).returncode == 0:
            removed.append(f"scheduled task {TASK_NAME!r}")
        if self._registry.delete_value("HKCU", RUN_KEY, RUN_VALUE):
            removed.append(rf"HKCU\{RUN_KEY}\{RUN_VALUE}")
        return removed

    def _create_task(self, spec: LaunchSpec) -> bool:
        xml = task_xml(spec, user_id=self._user_id or current_user_id())
        with tempfile.TemporaryDirectory(dir=self._scratch) as tmp:
            path = Path(tmp) / "deskwarden-task.xml"
            path.write_text(xml, encoding="utf-16")  # schtasks /XML wants UTF-16 with a BOM
            result = self._run(["schtasks", "/Create", "/TN", TASK_NAME, "/XML", str(path), "/F"])
        if result.returncode != 0:
            log.warning("schtasks /Create failed (%s): %s", result.returncode, result.output[:300])
        return result.returncode == 0
