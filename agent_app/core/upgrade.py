"""Moves a per-user agent's enrolment and queue into the privileged service's state directory (the upgrade from
the single-process agent), so the device keeps its identity and every queued event is delivered exactly once: the
outbox, its keys and its hash chain move together and the service carries on from the next seq.

Runs on the main thread of `deskwarden install` (as root), before the service starts.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from collectors.base import UserHome

log = logging.getLogger(__name__)

PER_USER_DIR = (".local", "share", "DeskWarden")
"""platformdirs' user data dir on Linux, relative to the home (the single-process agent's state)."""
MOVED = ("agent.json", "secrets.json", "unlock-used.json")
MOVED_DIRS = ("policy", "quarantine")
STOP_TIMEOUT_S = 10.0


class UpgradeError(RuntimeError):
    """The per-user state cannot be moved; the message says why and what to do instead."""


@dataclass(frozen=True)
class PerUserState:
    user: str
    home: Path
    """The per-user agent's state directory."""


def find_per_user_states(users: list[UserHome], *, relative: tuple[str, ...] = PER_USER_DIR) -> list[PerUserState]:
    """Per-user agents that were enrolled (an agent.json), one per desk user at most."""
    found = []
    for entry in users:
        home = Path(entry.home, *relative)
        if (home / "agent.json").is_file():
            found.append(PerUserState(entry.user, home))
    return found


def _stop_running_agent(home: Path, *, kill: Callable[[int, int], None] = os.kill) -> None:
    """The old agent must not append while its outbox moves: stop the one whose pid file says it runs."""
    marker = home / "running.pid"
    try:
        pid = int(marker.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return
    try:
        kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    waiter = threading.Event()
    for _ in range(int(STOP_TIMEOUT_S * 10)):
        if not marker.exists():
            return
        try:
            kill(pid, 0)
        except ProcessLookupError:
            return
        waiter.wait(0.1)
    raise UpgradeError(f"the per-user agent (pid {pid}) did not stop; stop it and run the install again")


def migrate(old: PerUserState, service_home: Path) -> list[str]:
    """Move `old` into `service_home`; what was moved. The old directory is renamed so nothing sends from it again."""
    if (service_home / "agent.json").exists():
        raise UpgradeError(f"{service_home} is already enrolled; not replacing its enrolment with {old.user}'s")
    if not (old.home / "secrets.json").is_file():
        raise UpgradeError(
            f"{old.user}'s agent keeps its keys in that user's keyring, which the service cannot read; enrol the "
            "service afresh (`deskwarden install --server URL --token T`); that user's undelivered events stay "
            f"in {old.home}"
        )
    _stop_running_agent(old.home)
    service_home.mkdir(parents=True, exist_ok=True, mode=0o700)
    moved: list[str] = []
    for source in sorted(old.home.iterdir()):
        if source.name in MOVED or source.name.startswith("outbox.db"):
            shutil.copy2(source, service_home / source.name)
            os.chmod(service_home / source.name, 0o600)
            moved.append(source.name)
        elif source.name in MOVED_DIRS and source.is_dir():
            shutil.copytree(source, service_home / source.name, dirs_exist_ok=True)
            moved.append(source.name + "/")
    if sys.platform != "win32":
        for path in service_home.rglob("*"):  # the service's now, whoever owned them before
            os.chown(path, os.geteuid(), os.getegid())
    retired = old.home.with_name(old.home.name + ".moved-to-service")
    old.home.rename(retired)
    log.info("moved %s's per-user agent (%s) into %s", old.user, ", ".join(moved), service_home)
    return moved
