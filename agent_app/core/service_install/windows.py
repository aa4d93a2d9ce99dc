"""Windows: a LocalSystem service registered with the Service Control Manager through sc.exe (automatic start,
restart on failure, only Administrators may stop it), and the helper in HKLM Run for every interactive logon.
Runs on the installer's main thread (elevated).
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence

from agent_app.core.autostart.model import CommandResult, CommandRunner, run_command
from agent_app.core.autostart.windows import RUN_KEY, RUN_VALUE, RegistryPort, WinregRegistry
from agent_app.core.service_install import ServiceInstallError, check_absolute

log = logging.getLogger(__name__)

SERVICE_NAME = "DeskWarden"
DISPLAY_NAME = "DeskWarden"
DESCRIPTION = "DeskWarden desktop compliance service: device controls, downloads and the event outbox."
SC = "sc.exe"
FAILURE_ACTIONS = "restart/5000/restart/5000/restart/30000"
"""Restart 5 s after the first and second failure, 30 s after later ones; the count resets after a day."""
SERVICE_SDDL = (
    "D:"
    "(A;;CCLCSWRPWPDTLOCRRC;;;SY)"
    "(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;BA)"
    "(A;;CCLCSWLORC;;;IU)"
    "(A;;CCLCSWLORC;;;SU)"
    "(A;;CCLCSWLORC;;;AU)"
)
"""SYSTEM and Administrators as Windows sets them; interactive, service and authenticated users may query the
service's configuration and status (`deskwarden status`) but not start, stop (RP/WP), pause (DT), send it
controls (CR), or change its configuration or security."""

ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_SERVICE_EXISTS = 1073


def service_command_line(exe_argv: Sequence[str]) -> str:
    """The binPath: quoted, so a path with spaces cannot be read as C:\\Program.exe (the unquoted-path hole)."""
    return subprocess.list2cmdline([*exe_argv, "service"])


def helper_command_line(exe_argv: Sequence[str]) -> str:
    return subprocess.list2cmdline([*exe_argv, "agent"])


def install_service(
    exe_argv: Sequence[str], *, runner: CommandRunner = run_command, registry: RegistryPort | None = None
) -> list[str]:
    check_absolute(exe_argv, windows=True)
    registry = registry if registry is not None else WinregRegistry()
    settings = [
        "binPath=",
        service_command_line(exe_argv),
        # Automatic, not delayed: the service should own its pipe name before anyone logs on.
        "start=",
        "auto",
        "obj=",
        "LocalSystem",
        "DisplayName=",
        DISPLAY_NAME,
    ]
    done: list[str] = []
    created = runner([SC, "create", SERVICE_NAME, *settings])
    if created.returncode == ERROR_SERVICE_EXISTS:
        _call(runner, [SC, "config", SERVICE_NAME, *settings])
        done.append(f"service {SERVICE_NAME} updated")
    elif created.returncode == 0:
        done.append(f"service {SERVICE_NAME} created (LocalSystem, automatic start)")
    else:
        raise _refused([SC, "create", SERVICE_NAME], created)
    _call(runner, [SC, "description", SERVICE_NAME, DESCRIPTION], required=False)
    _call(runner, [SC, "failure", SERVICE_NAME, "reset=", "86400", "actions=", FAILURE_ACTIONS])
    # Also restart when the service stops with an error exit, not only when it crashes.
    _call(runner, [SC, "failureflag", SERVICE_NAME, "1"], required=False)
    done.append("restarts after failures")
    _call(runner, [SC, "sdset", SERVICE_NAME, SERVICE_SDDL])
    done.append("only Administrators may stop it")
    # One helper in every interactive session, the RDP and fast-user-switching ones included.
    registry.set_string("HKLM", RUN_KEY, RUN_VALUE, helper_command_line(exe_argv))
    done.append(rf"HKLM\{RUN_KEY}\{RUN_VALUE}")
    started = runner([SC, "start", SERVICE_NAME])
    if started.returncode not in (0, ERROR_SERVICE_ALREADY_RUNNING):
        raise _refused([SC, "start", SERVICE_NAME], started)
    done.append(f"service {SERVICE_NAME} started")
    return done


def uninstall_service(*, runner: CommandRunner = run_command, registry: RegistryPort | None = None) -> list[str]:
    registry = registry if registry is not None else WinregRegistry()
    removed: list[str] = []
    stopped = runner([SC, "stop", SERVICE_NAME])
    if stopped.returncode not in (0, ERROR_SERVICE_NOT_ACTIVE, ERROR_SERVICE_DOES_NOT_EXIST):
        log.warning("sc stop %s failed (%s): %s", SERVICE_NAME, stopped.returncode, stopped.output[:300])
    deleted = runner([SC, "delete", SERVICE_NAME])
    if deleted.returncode == 0:
        removed.append(f"service {SERVICE_NAME}")
    elif deleted.returncode != ERROR_SERVICE_DOES_NOT_EXIST:
        raise _refused([SC, "delete", SERVICE_NAME], deleted)
    if registry.delete_value("HKLM", RUN_KEY, RUN_VALUE):
        removed.append(rf"HKLM\{RUN_KEY}\{RUN_VALUE}")
    return removed


def _call(runner: CommandRunner, argv: list[str], *, required: bool = True) -> None:
    result = runner(argv)
    if result.returncode == 0:
        return
    if required:
        raise _refused(argv[:3], result)
    log.warning("%s failed (%s): %s", " ".join(argv[:3]), result.returncode, result.output[:300])


def _refused(argv: list[str], result: CommandResult) -> ServiceInstallError:
    # sc.exe exits with the Win32 error code (5: access denied, not elevated).
    return ServiceInstallError(f"{' '.join(argv)} failed ({result.returncode}): {result.output[:500]}")
