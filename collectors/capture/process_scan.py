"""Screen-capture tool detection by process scan: diff `psutil.pids()`, inspect only new pids.

Runs on the screen-capture collector's thread; `terminate` runs on the pipeline thread.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import psutil

log = logging.getLogger(__name__)

YOUNG_SECONDS = 2.0
"""A pid first seen younger than this is looked at again on later scans: between fork and exec a
child still carries its parent's name (a shell or launcher), so one look can miss the tool."""


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    name: str
    exe: str
    username: str | None
    create_time: float
    uid: int | None = None
    """Real uid of the owner (POSIX); None on Windows or when the OS would not say."""


class ProcessTable(Protocol):
    """OS process access (psutil in production, a fake in unit tests)."""

    def pids(self) -> list[int]: ...

    def inspect(self, pid: int) -> ProcessInfo | None:
        """Name, exe, user and start time; None when the process is gone."""
        ...

    def terminate(self, pid: int, create_time: float, *, timeout: float) -> str:
        """Terminate, then kill after `timeout`; returns "terminated", "killed" or "exited".
        Raises PermissionError when not allowed, LookupError when the pid now belongs to another process."""
        ...


def _name_and_exe(proc: psutil.Process) -> tuple[str, str]:
    """The process's image name and executable path ("" when the OS would not say). On Windows psutil derives
    the name from `exe()`, which can fail (always under Wine 8: WinError 87); the documented Win32 calls of
    `windows_process` answer instead. Raises psutil.NoSuchProcess when the process is gone."""
    try:
        name = proc.name()
    except (psutil.AccessDenied, OSError):
        if sys.platform == "win32":
            from collectors.capture.windows_process import process_name_and_path

            found = process_name_and_path(proc.pid)
            if found is None:
                raise psutil.NoSuchProcess(proc.pid) from None
            return found
        raise
    try:
        exe = proc.exe()
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
        exe = ""
    return name, exe


class PsutilProcessTable:
    def pids(self) -> list[int]:
        return psutil.pids()

    def inspect(self, pid: int) -> ProcessInfo | None:
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                create_time = proc.create_time()
                name, exe = _name_and_exe(proc)
                try:
                    username: str | None = proc.username()
                except (psutil.AccessDenied, KeyError, OSError):
                    username = None
                uid: int | None = None
                if sys.platform != "win32":
                    try:
                        uid = proc.uids().real
                    except (psutil.AccessDenied, OSError):
                        uid = None
            return ProcessInfo(pid=pid, name=name, exe=exe, username=username, create_time=create_time, uid=uid)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return None
        except psutil.AccessDenied:
            return None
        except OSError as exc:
            # psutil re-raises Win32 errors it has no mapping for (create_time, username); one such pid must not
            # stop the whole scan.
            log.debug("cannot inspect pid %d: %s", pid, exc)
            return None

    def terminate(self, pid: int, create_time: float, *, timeout: float) -> str:
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - create_time) > 0.01:
                raise LookupError(f"pid {pid} was reused by another process")
            proc.terminate()
            _gone, alive = psutil.wait_procs([proc], timeout=timeout)
            if not alive:
                return "terminated"
            for survivor in alive:
                survivor.kill()
            _gone, alive = psutil.wait_procs(alive, timeout=timeout)
            if alive:
                raise PermissionError(f"pid {pid} survived SIGKILL")
            return "killed"
        except psutil.NoSuchProcess:
            return "exited"
        except psutil.AccessDenied as exc:
            raise PermissionError(f"not allowed to terminate pid {pid}") from exc


@dataclass(slots=True)
class ScanResult:
    hits: list[ProcessInfo] = field(default_factory=list)
    new_pids: int = 0


class ProcessScanner:
    """Keeps the set of known pids; each `scan` inspects only pids it has not seen (plus young ones)."""

    def __init__(self, *, table: ProcessTable, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._clock = clock
        self._known: set[int] = set()
        self._young: dict[int, float] = {}
        self._reported: set[tuple[int, float]] = set()

    def scan(self, matches: Callable[[ProcessInfo], bool]) -> ScanResult:
        result = ScanResult()
        current = set(self._table.pids())
        fresh = current - self._known
        self._known = current
        result.new_pids = len(fresh)
        now = self._clock()
        recheck = [pid for pid in self._young if pid in current and pid not in fresh]
        for pid in list(self._young):
            if pid not in current or now - self._young[pid] > YOUNG_SECONDS:
                del self._young[pid]
        for pid in (*fresh, *recheck):
            info = self._table.inspect(pid)
            if info is None:
                self._young.pop(pid, None)
                continue
            if now - info.create_time <= YOUNG_SECONDS:
                self._young[pid] = info.create_time
            ident = (pid, info.create_time)
            if ident in self._reported or not matches(info):
                continue
            self._reported.add(ident)
            self._young.pop(pid, None)
            result.hits.append(info)
        self._reported = {ident for ident in self._reported if ident[0] in current}
        return result


class AdaptiveInterval:
    """Scan fast right after a hit or while processes keep starting; back off when quiet."""

    def __init__(self, *, fast: float = 0.5, slow: float = 1.5, busy_new_pids: int = 3) -> None:
        self.fast = fast
        self.slow = slow
        self.busy_new_pids = busy_new_pids
        self.current = fast

    def after(self, result: ScanResult) -> float:
        if result.hits or result.new_pids >= self.busy_new_pids:
            self.current = self.fast
        else:
            self.current = min(self.slow, self.current * 1.5)
        return self.current
