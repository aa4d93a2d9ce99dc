"""One tray per session: a QLockFile the first tray holds for its whole life.

Called on the main thread before anything is recorded (agent_app.run can call `acquire_tray_lock` before it
builds the runtime or the QApplication; QLockFile needs neither). QtCore only, no widgets.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QLockFile

log = logging.getLogger(__name__)

LOCK_NAME = "tray.lock"


class TrayLock:
    """A held lock; `release()` (or leaving the `with` block) gives it up. Releasing twice is harmless."""

    def __init__(self, lock: QLockFile, path: Path) -> None:
        self._lock = lock
        self.path = path

    @property
    def held(self) -> bool:
        return self._lock.isLocked()

    def release(self) -> None:
        if self._lock.isLocked():
            self._lock.unlock()

    def __enter__(self) -> TrayLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class TrayLockError(OSError):
    """The lock file cannot be created or read (missing rights, read-only or missing directory): this says
    nothing about another tray, so the caller must not report "already running"."""


def tray_lock_path(directory: Path) -> Path:
    return directory / LOCK_NAME


def acquire_tray_lock(path: Path) -> TrayLock | None:
    """Take the single-instance lock at `path` without waiting.

    Returns the held lock, or None when another live process holds it. A lock left by a process that died
    (kill -9, crash, power loss) is taken over: QLockFile checks the owner's pid (and host and boot id), and
    stale-by-age is off, so a tray that runs for weeks never loses its lock. Raises TrayLockError when the
    lock file cannot be created at all.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrayLockError(f"cannot create {path.parent}: {exc.strerror or exc}") from exc
    lock = QLockFile(str(path))
    lock.setStaleLockTime(0)  # stale only when the owning process is gone, never by age
    if lock.tryLock(0):
        return TrayLock(lock, path)
    error = lock.error()
    if error == QLockFile.LockError.LockFailedError:
        log.warning("another DeskWarden tray holds %s", path)
        return None
    raise TrayLockError(f"cannot take the tray lock {path}: {error.name}")
