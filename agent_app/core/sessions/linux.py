"""Linux desk sessions: logind when it runs (through `loginctl`), otherwise the helper's X or Wayland display.

`session_of` reads the helper's environment from /proc (root may read any process's), so the session is what
the kernel says the process runs with, not what the helper claims. Called on the service's threads.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from agent_app.core.sessions import DeskSession

if sys.platform == "win32":  # pragma: no cover - Windows uses agent_app.core.sessions.windows
    raise ImportError("Linux desk sessions are not available on Windows")

log = logging.getLogger(__name__)

SESSION_ENV = (
    "DISPLAY",
    "XAUTHORITY",
    "WAYLAND_DISPLAY",
    "XDG_RUNTIME_DIR",
    "XDG_SESSION_ID",
    "XDG_SESSION_TYPE",
    "DBUS_SESSION_BUS_ADDRESS",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "PATH",
)
"""What a helper restarted in a session inherits from the helper that ran there; nothing else."""
Runner = Callable[[Sequence[str]], str]


def _run(argv: Sequence[str]) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=5, check=True).stdout


def _login(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class LinuxSessions:
    def __init__(self, *, proc: Path = Path("/proc"), x11_dir: Path = Path("/tmp/.X11-unix"), runner: Runner = _run):  # noqa: S108 - the X server's socket directory
        self._proc = proc
        self._x11 = x11_dir
        self._runner = runner
        self._logind = shutil.which("loginctl") is not None and Path("/run/systemd/seats").is_dir()

    def active(self) -> list[DeskSession] | None:
        if not self._logind:
            return None
        try:
            listed = json.loads(self._runner(["loginctl", "list-sessions", "--output=json"]) or "[]")
        except (OSError, subprocess.SubprocessError, ValueError):
            # logind is not answering (a container, no systemd as PID 1): stop asking; helpers are then
            # tracked from their connections alone.
            log.warning("loginctl list-sessions failed; sessions are known from connected helpers only")
            self._logind = False
            return None
        sessions: list[DeskSession] = []
        for entry in listed if isinstance(listed, list) else []:
            sid = str(entry.get("session", ""))
            props = self._show(sid)
            if props.get("Type") not in ("x11", "wayland") or props.get("State") not in ("active", "online"):
                continue
            if props.get("Remote") == "yes" and not props.get("Display"):
                continue
            uid = int(props.get("User", "-1"))
            display = props.get("Display", "")
            env = {"DISPLAY": display} if display else {}
            env |= {"XDG_RUNTIME_DIR": f"/run/user/{uid}", "XDG_SESSION_ID": sid}
            sessions.append(
                DeskSession(user=props.get("Name", _login(uid)), uid=uid, session_id=sid, display=display, env=env)
            )
        return sessions

    def session_of(self, pid: int) -> DeskSession | None:
        try:
            raw = (self._proc / str(pid) / "environ").read_bytes()
            uid = (self._proc / str(pid)).stat().st_uid
        except OSError:
            return None
        env: dict[str, str] = {}
        for item in raw.split(b"\0"):
            name, sep, value = item.partition(b"=")
            key = name.decode("utf-8", "replace")
            if sep and key in SESSION_ENV:
                env[key] = value.decode("utf-8", "replace")
        display = env.get("DISPLAY") or env.get("WAYLAND_DISPLAY", "")
        leader = self._session_leader(pid)
        if leader is not None:
            env["DESKWARDEN_SESSION_LEADER"] = str(leader)
        session_id = env.get("XDG_SESSION_ID") or display or f"sid:{leader}"
        return DeskSession(user=_login(uid), uid=uid, session_id=session_id, display=display, env=env)

    def alive(self, session: DeskSession) -> bool:
        sid = session.env.get("XDG_SESSION_ID")
        if self._logind and sid:
            state = self._show(sid).get("State")
            if state is not None:
                return state in ("active", "online")
        x_display = session.env.get("DISPLAY", "")
        if x_display.startswith(":"):
            number = x_display[1:].split(".", 1)[0]
            return (self._x11 / f"X{number}").exists()
        wayland = session.env.get("WAYLAND_DISPLAY")
        runtime = session.env.get("XDG_RUNTIME_DIR")
        if wayland and runtime:
            return (Path(runtime) / wayland).exists()
        # No display and no session registry: a terminal session lives while its session leader does.
        leader = session.env.get("DESKWARDEN_SESSION_LEADER", "")
        return leader.isdigit() and (self._proc / leader).is_dir()

    def _show(self, sid: str) -> dict[str, str]:
        if not sid.isalnum():
            return {}
        try:
            out = self._runner(
                [
                    "loginctl",
                    "show-session",
                    sid,
                    "-p",
                    "Type",
                    "-p",
                    "State",
                    "-p",
                    "User",
                    "-p",
                    "Name",
                    "-p",
                    "Display",
                    "-p",
                    "Remote",
                ]
            )
        except subprocess.CalledProcessError:
            # logind answered and does not know the session: it ended (even if its display now serves the login
            # screen or the next user).
            return {"State": "closed"}
        except (OSError, subprocess.SubprocessError):
            return {}
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def _session_leader(self, pid: int) -> int | None:
        """Field 6 of /proc/PID/stat (after the parenthesised command name, which may contain spaces)."""
        try:
            stat = (self._proc / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
            return int(stat.rsplit(")", 1)[1].split()[3])
        except (OSError, IndexError, ValueError):
            return None


class SpawnLauncher:
    """Starts the helper as the session's user: a fresh process with that uid, its groups, and only the session's
    environment. The command is the service's own executable, so a desk user cannot swap in another program."""

    def __init__(self) -> None:
        self._children: list[subprocess.Popen[bytes]] = []

    def launch(self, session: DeskSession, argv: Sequence[str]) -> bool:
        self._children = [child for child in self._children if child.poll() is None]  # reap exited helpers
        if session.uid is None:
            return False
        env = {key: value for key, value in session.env.items() if key in SESSION_ENV}  # not the leader marker
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        kwargs: dict[str, object] = {}
        if session.uid != os.geteuid():
            import pwd

            try:
                entry = pwd.getpwuid(session.uid)
            except KeyError:
                return False
            env |= {"HOME": entry.pw_dir, "USER": entry.pw_name, "LOGNAME": entry.pw_name}
            kwargs = {
                "user": session.uid,
                "group": entry.pw_gid,
                "extra_groups": os.getgrouplist(entry.pw_name, entry.pw_gid),
                "cwd": entry.pw_dir if os.path.isdir(entry.pw_dir) else "/",
            }
        try:
            child = subprocess.Popen(
                list(argv),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                **kwargs,  # type: ignore[call-overload,unused-ignore]
            )
        except OSError:
            log.exception("could not start a helper for %s", session.user)
            return False
        self._children.append(child)
        log.info("started a helper for %s in session %s (pid %d)", session.user, session.session_id, child.pid)
        return True
