"""macOS desk sessions: the console user (who owns /dev/console), the session a helper runs in (its uid), and
starting a helper in a user's GUI (Aqua) session through launchd.

Called on the service's main thread and on IPC connection threads. OS tools run through a `Runner` and helpers are
spawned through a `Spawner`, so the logic is tested on any OS with fakes.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from agent_app.core.sessions import DeskSession

log = logging.getLogger(__name__)

CONSOLE = "console"
"""The session id of whoever sits at the Mac; other logged-in (fast-switched) users are `gui/<uid>`."""
AGENT_LABEL = "org.deskwarden.agent"
AGENT_PLIST = Path("/Library/LaunchAgents") / f"{AGENT_LABEL}.plist"
"""Written by `agent_app.core.service_install.macos`; launchd loads it into every Aqua login."""

Runner = Callable[[Sequence[str]], str]
"""Runs an OS tool and returns its stdout; raises OSError or subprocess.SubprocessError when it fails."""
Spawner = Callable[[Sequence[str]], bool]
"""Starts a long-running process detached from the caller; False when it could not be started."""


def _run(argv: Sequence[str]) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=5, check=True).stdout


def _login(uid: int) -> str:
    if sys.platform != "win32":
        import pwd

        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return str(uid)
    else:
        return str(uid)


def _home(uid: int) -> str:
    if sys.platform != "win32":
        import pwd

        try:
            return pwd.getpwuid(uid).pw_dir
        except KeyError:
            return "/"
    else:
        return "/"


class ConsoleSessions:
    """`SessionSource` for macOS: one desk session, the console user's. At the login window root owns the console
    and no helper is expected."""

    def __init__(self, *, runner: Runner = _run, login_of: Callable[[int], str] = _login) -> None:
        self._run = runner
        self._login_of = login_of

    def console_uid(self) -> int | None:
        """The uid owning /dev/console; 0 at the login window; None when it cannot be told."""
        try:
            out = self._run(["/usr/bin/stat", "-f", "%u", "/dev/console"]).strip()
            return int(out)
        except (OSError, subprocess.SubprocessError, ValueError):
            log.warning("cannot tell the console user")
            return None

    def active(self) -> list[DeskSession] | None:
        uid = self.console_uid()
        if uid is None:
            return None
        if uid == 0:
            return []  # the login window (or nobody logged in)
        return [self._session(uid, CONSOLE)]

    def session_of(self, pid: int) -> DeskSession | None:
        try:
            uid = int(self._run(["/bin/ps", "-o", "uid=", "-p", str(pid)]).strip())
        except (OSError, subprocess.SubprocessError, ValueError):
            return None  # the process is gone
        if uid == 0:
            return None
        return self._session(uid, CONSOLE if uid == self.console_uid() else f"gui/{uid}")

    def alive(self, session: DeskSession) -> bool:
        """The console session lives while its user still owns the console; a fast-switched user's session while
        launchd still has that user's GUI domain."""
        if session.uid is None:
            return False
        if session.session_id == CONSOLE:
            return self.console_uid() == session.uid
        try:
            self._run(["/bin/launchctl", "print", f"gui/{session.uid}"])
        except (OSError, subprocess.SubprocessError):
            return False
        return True

    def _session(self, uid: int, session_id: str) -> DeskSession:
        user = self._login_of(uid)
        env = {"USER": user, "LOGNAME": user, "HOME": _home(uid)}
        return DeskSession(user=user, uid=uid, session_id=session_id, display=session_id, env=env)


def _spawn(argv: Sequence[str]) -> bool:
    try:
        subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outside the daemon's process group, which launchd kills when the daemon exits
        )
    except OSError:
        log.exception("could not start %s", argv[0] if argv else "?")
        return False
    return True


class ConsoleLauncher:
    """Starts the helper in a user's Aqua session. Where the installed LaunchAgent exists, launchd starts it (it
    then runs under the job's KeepAlive, in the user's own GUI domain, with the plist's arguments, which are the
    same executable); otherwise `launchctl asuser` enters the user's bootstrap namespace (so the helper reaches the
    window server and pasteboard) and `sudo -u` drops to the user's uid."""

    def __init__(self, *, runner: Runner = _run, spawner: Spawner = _spawn, agent_plist: Path = AGENT_PLIST) -> None:
        self._run = runner
        self._spawn = spawner
        self._plist = agent_plist

    def launch(self, session: DeskSession, argv: Sequence[str]) -> bool:
        if session.uid is None or session.uid == 0 or not argv:
            return False
        domain = f"gui/{session.uid}"
        if self._plist.exists():
            # Fails when launchd already loaded the job at login; kickstart starts it either way.
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._run(["/bin/launchctl", "bootstrap", domain, str(self._plist)])
            try:
                self._run(["/bin/launchctl", "kickstart", f"{domain}/{AGENT_LABEL}"])
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning(
                    "launchctl kickstart %s/%s failed: %s; starting the helper directly", domain, AGENT_LABEL, exc
                )
            else:
                log.info("asked launchd to start the helper for %s (%s)", session.user, domain)
                return True
        command = [
            "/bin/launchctl",
            "asuser",
            str(session.uid),
            "/usr/bin/sudo",
            "-u",
            f"#{session.uid}",
            "-H",
            "--",
            *argv,
        ]
        if not self._spawn(command):
            return False
        log.info("started a helper for %s in %s", session.user, domain)
        return True
