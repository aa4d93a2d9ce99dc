"""The desk users a service watches: human accounts with a home directory (downloads are watched per user).

Pure functions over the OS account database; called on the downloads collector's thread.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from collectors.base import UserHome

NOLOGIN_SHELLS = ("nologin", "false", "sync", "shutdown", "halt")


def _uid_min(login_defs: Path = Path("/etc/login.defs")) -> int:
    try:
        for line in login_defs.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "UID_MIN" and parts[1].isdigit():
                return int(parts[1])
    except OSError:
        pass
    return 1000


def desk_users() -> list[UserHome]:
    """Every human account: on Linux/macOS uid at or above UID_MIN (500 on macOS) with a login shell and an
    existing home; on Windows every profile folder under the users' directory."""
    platform: str = sys.platform  # a plain str, so mypy --platform checks every branch
    if platform == "win32":
        root = Path(os.environ.get("SYSTEMDRIVE", "C:") + "\\Users")
        skip = {"public", "default", "default user", "all users"}
        return [
            UserHome(user=entry.name, home=str(entry))
            for entry in sorted(root.iterdir() if root.is_dir() else [])
            if entry.is_dir() and entry.name.casefold() not in skip
        ]
    return _posix_users(500 if platform == "darwin" else _uid_min())


def _posix_users(minimum: int) -> list[UserHome]:
    users: list[UserHome] = []
    if sys.platform != "win32":
        import pwd

        for entry in pwd.getpwall():
            shell = entry.pw_shell.rsplit("/", 1)[-1]
            if entry.pw_uid < minimum or entry.pw_uid == 65534 or shell in NOLOGIN_SHELLS:
                continue
            if os.path.isdir(entry.pw_dir):
                users.append(UserHome(user=entry.pw_name, home=entry.pw_dir))
    return users


def current_user_only() -> list[UserHome]:
    """Unprotected mode: the service runs as the desk user and watches that user's folders alone."""
    from agent_app.core.paths import login_name

    return [UserHome(user=login_name(), home=str(Path.home()))]
