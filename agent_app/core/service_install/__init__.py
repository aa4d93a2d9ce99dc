"""Registers the privileged `deskwarden service` with the OS's service manager, and the per-session helper
(`deskwarden agent`) with every graphical login, as each OS expects; and removes them again.

Runs on the main thread of an installer running as root / an elevated Administrator. `install`/`uninstall` choose
the per-OS module here (lazy imports: importing this package never fails). OS tools run through a `CommandRunner`
and files are written under `root`, so tests (and image builds into a chroot) pass a fake runner and a directory.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from agent_app.core.autostart.model import CommandRunner, run_command

__all__ = ["ServiceInstallError", "default_exe_argv", "install", "uninstall"]

log = logging.getLogger(__name__)


class ServiceInstallError(RuntimeError):
    """The service manager refused a step; the message says which and what it answered."""


def default_exe_argv() -> list[str]:
    """The command prefix that runs this DeskWarden: the bundle's executable, or this interpreter with `-m agent_app`.
    The installers append `service` or `agent`."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "agent_app"]


def install(
    exe_argv: Sequence[str],
    *,
    root: Path = Path("/"),
    runner: CommandRunner = run_command,
    platform: str = sys.platform,
) -> list[str]:
    """Install and start the service and register the helper for every graphical login; what was done, for printing.
    With `root` other than "/" (an image being built) files are written there and nothing is started."""
    if platform == "win32":
        from agent_app.core.service_install.windows import install_service as install_windows

        return install_windows(exe_argv, runner=runner)
    if platform == "darwin":
        from agent_app.core.service_install.macos import install_service as install_macos

        return install_macos(exe_argv, runner=runner, root=root)
    from agent_app.core.service_install.linux import install_service as install_linux

    return install_linux(exe_argv, runner=runner, root=root)


def uninstall(
    *, root: Path = Path("/"), runner: CommandRunner = run_command, platform: str = sys.platform
) -> list[str]:
    """Stop and remove the service and the helper's registration (missing pieces are fine); what was removed. The
    service's state directory is left alone: it holds the outbox of events not yet delivered."""
    if platform == "win32":
        from agent_app.core.service_install.windows import uninstall_service as uninstall_windows

        return uninstall_windows(runner=runner)
    if platform == "darwin":
        from agent_app.core.service_install.macos import uninstall_service as uninstall_macos

        return uninstall_macos(runner=runner, root=root)
    from agent_app.core.service_install.linux import uninstall_service as uninstall_linux

    return uninstall_linux(runner=runner, root=root)


def under(root: Path, absolute: str) -> Path:
    """`absolute` (a path on the installed system) inside `root`."""
    return root / absolute.lstrip("/")


def write_file(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write atomically with `mode` (service managers refuse group/world-writable unit files and plists)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    tmp.replace(path)
    log.info("wrote %s", path)


def remove_file(path: Path, removed: list[str]) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    removed.append(str(path))


def check_absolute(exe_argv: Sequence[str], *, windows: bool = False) -> None:
    """The service manager runs the command from no particular directory with no PATH worth trusting."""
    import ntpath
    import posixpath

    if not exe_argv:
        raise ValueError("no executable to register")
    isabs = ntpath.isabs if windows else posixpath.isabs
    if not isabs(exe_argv[0]):
        raise ValueError(f"the service executable must be an absolute path, not {exe_argv[0]!r}")
