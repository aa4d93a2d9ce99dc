"""Desk sessions as the service sees them: which users are logged in graphically, which session a helper process
belongs to, whether that session still lives, and how to start a helper inside it.

One adapter per OS (`linux.py`: logind or the X display; `windows.py`: WTS; `macos.py`: the console user),
chosen in `default_sessions()`. Called on the service's main thread and on IPC connection threads.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeskSession:
    user: str
    uid: int | None
    """POSIX uid; None on Windows."""
    session_id: str
    """logind session id, WTS session id, or a display name when the OS keeps no session registry."""
    display: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    """What a helper started in this session needs (DISPLAY, XAUTHORITY, XDG_RUNTIME_DIR, HOME...)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.user, self.session_id)


class SessionSource(Protocol):
    def active(self) -> list[DeskSession] | None:
        """Graphical sessions logged in now; None when this machine cannot tell (then no helper is expected)."""
        ...

    def session_of(self, pid: int) -> DeskSession | None:
        """The session a (helper) process runs in, read from the OS at connect time; None if unknown."""
        ...

    def alive(self, session: DeskSession) -> bool:
        """True while the session still exists (a helper that stops then was stopped, not logged out)."""
        ...


class HelperLauncher(Protocol):
    def launch(self, session: DeskSession, argv: Sequence[str]) -> bool:
        """Start `argv` as the session's user inside that session; False (logged) when it cannot."""
        ...


def default_sessions() -> tuple[SessionSource, HelperLauncher]:
    platform: str = sys.platform  # a plain str, so mypy --platform checks every branch
    if platform == "win32":
        from agent_app.core.sessions.windows import WtsLauncher, WtsSessions

        return WtsSessions(), WtsLauncher()
    if platform == "darwin":
        from agent_app.core.sessions.macos import ConsoleLauncher, ConsoleSessions

        return ConsoleSessions(), ConsoleLauncher()
    from agent_app.core.sessions.linux import LinuxSessions, SpawnLauncher

    return LinuxSessions(), SpawnLauncher()
