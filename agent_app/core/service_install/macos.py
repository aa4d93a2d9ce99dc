"""macOS: a LaunchDaemon for the service (root, started at boot, kept alive) and a LaunchAgent that launchd starts
in every Aqua login for the helper. Runs on the installer's main thread (as root).
"""

from __future__ import annotations

import logging
import plistlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent_app.core.autostart.model import LAUNCHD_LABEL, CommandRunner, run_command
from agent_app.core.service_install import ServiceInstallError, check_absolute, remove_file, under, write_file

log = logging.getLogger(__name__)

SERVICE_LABEL = "org.deskwarden.service"
AGENT_LABEL = LAUNCHD_LABEL
DAEMON_PATH = f"/Library/LaunchDaemons/{SERVICE_LABEL}.plist"
AGENT_PATH = f"/Library/LaunchAgents/{AGENT_LABEL}.plist"


def daemon_plist(exe_argv: Sequence[str]) -> str:
    job: dict[str, Any] = {
        "Label": SERVICE_LABEL,
        "ProgramArguments": [*exe_argv, "service"],
        "UserName": "root",
        "GroupName": "wheel",
        "RunAtLoad": True,
        "KeepAlive": True,
        "ThrottleInterval": 10,
        "ExitTimeOut": 20,
        # launchd kills the job's process group when the daemon exits; helpers it started belong to the users'
        # sessions and must outlive a restart of the service.
        "AbandonProcessGroup": True,
        "ProcessType": "Standard",
    }
    return plistlib.dumps(job, sort_keys=False).decode("utf-8")


def agent_plist(exe_argv: Sequence[str]) -> str:
    job: dict[str, Any] = {
        "Label": AGENT_LABEL,
        "ProgramArguments": [*exe_argv, "agent"],
        "RunAtLoad": True,
        # Restart a helper that crashed or was killed; one that quit with 0 (a quit the policy allowed) stays quit
        # until the next login.
        "KeepAlive": {"SuccessfulExit": False},
        "LimitLoadToSessionType": ["Aqua"],
        "ProcessType": "Interactive",
        "ThrottleInterval": 10,
    }
    return plistlib.dumps(job, sort_keys=False).decode("utf-8")


def install_service(
    exe_argv: Sequence[str], *, runner: CommandRunner = run_command, root: Path = Path("/")
) -> list[str]:
    check_absolute(exe_argv)
    daemon, agent = under(root, DAEMON_PATH), under(root, AGENT_PATH)
    # launchd refuses plists that are group or world writable (root:wheel comes from the folders when root writes).
    write_file(daemon, daemon_plist(exe_argv), mode=0o644)
    write_file(agent, agent_plist(exe_argv), mode=0o644)
    done = [str(daemon), str(agent)]
    if root != Path("/"):
        return done  # an image being built: launchd loads both at boot and at each login
    # A loaded older copy would keep its old arguments: unload it first (failing when none is loaded is fine).
    runner(["launchctl", "bootout", f"system/{SERVICE_LABEL}"])
    runner(["launchctl", "enable", f"system/{SERVICE_LABEL}"])
    result = runner(["launchctl", "bootstrap", "system", str(daemon)])
    if result.returncode != 0:
        raise ServiceInstallError(f"launchctl bootstrap system {daemon} failed ({result.returncode}): {result.output}")
    done.append(f"launchd daemon {SERVICE_LABEL} loaded")
    # The helper of whoever is logged in now is started by the service (ConsoleLauncher); later logins by launchd.
    return done


def uninstall_service(*, runner: CommandRunner = run_command, root: Path = Path("/")) -> list[str]:
    removed: list[str] = []
    if root == Path("/"):
        runner(["launchctl", "bootout", f"system/{SERVICE_LABEL}"])
        uid = _console_uid(runner)
        if uid:
            runner(["launchctl", "bootout", f"gui/{uid}/{AGENT_LABEL}"])
    remove_file(under(root, DAEMON_PATH), removed)
    remove_file(under(root, AGENT_PATH), removed)
    return removed


def _console_uid(runner: CommandRunner) -> int | None:
    result = runner(["/usr/bin/stat", "-f", "%u", "/dev/console"])
    try:
        return int(result.output.strip()) if result.returncode == 0 else None
    except ValueError:
        return None
