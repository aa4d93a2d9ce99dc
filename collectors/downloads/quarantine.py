"""The agent's quarantine folder for downloads: move in (mode 0600 in a 0700 folder, with a JSON
sidecar recording where the file came from), and release (`restore`) or delete it on an admin's decision.

Called on the pipeline thread (`quarantine_file`) and on the service's command thread (`restore`,
`delete_quarantined`, see agent_app/core/quarantine_commands.py). In the service the folder
sits in the service's root-only state directory, so the desk user cannot read a quarantined file back.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import stat
import sys
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import platformdirs

from collectors.downloads.files import FileChanged, FileRef, FolderId, file_status, move_to, opened_folder

SIDECAR_SUFFIX = ".json"
DIR_MODE = 0o700
FILE_MODE = 0o600
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def default_quarantine_dir() -> Path:
    """<agent state dir>/quarantine, honouring DESKWARDEN_HOME like agent_app.core.paths (which
    collectors must not import); the agent normally passes its own path explicitly."""
    home = os.environ.get("DESKWARDEN_HOME")
    base = Path(home).expanduser() if home else Path(platformdirs.user_data_dir("DeskWarden", "DeskWarden"))
    return base / "quarantine"


def ensure_quarantine_dir(quarantine_dir: Path) -> Path:
    """Create the folder with mode 0700 (and tighten an existing one to it)."""
    quarantine_dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if stat.S_IMODE(quarantine_dir.stat().st_mode) != DIR_MODE:
        quarantine_dir.chmod(DIR_MODE)
    return quarantine_dir


def _new_id(now: datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(6)}"


def quarantine_file(target: FileRef | Path, quarantine_dir: Path, *, extra: dict[str, Any] | None = None) -> str:
    """Move the file into the quarantine folder and return its quarantine id. Raises OSError (FileChanged when
    the file or its folder is no longer the one that was reported)."""
    ref = target if isinstance(target, FileRef) else FileRef.of(target)
    ensure_quarantine_dir(quarantine_dir)
    st = file_status(ref)
    now = datetime.now(UTC)
    qid = _new_id(now)
    dest = quarantine_dir / qid
    sidecar = quarantine_dir / (qid + SIDECAR_SUFFIX)
    record = {
        "quarantine_id": qid,
        "original_path": str(ref.path),
        "original_mode": stat.S_IMODE(st.st_mode),
        "original_uid": st.st_uid,
        "original_gid": st.st_gid,
        "quarantined_at": now.isoformat(),
        **(extra or {}),
    }
    fd = os.open(sidecar, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2)
    try:
        move_to(ref, dest, mode=FILE_MODE)
    except OSError:
        sidecar.unlink(missing_ok=True)
        raise
    return qid


def read_record(quarantined_name: str, *, quarantine_dir: Path) -> dict[str, Any]:
    if not quarantined_name or "/" in quarantined_name or "\\" in quarantined_name or quarantined_name.startswith("."):
        raise ValueError(f"not a quarantine id: {quarantined_name!r}")
    data: dict[str, Any] = json.loads((quarantine_dir / (quarantined_name + SIDECAR_SUFFIX)).read_text("utf-8"))
    return data


def restore(quarantined_name: str, *, quarantine_dir: Path) -> Path:
    """Move a quarantined file back to where it came from (or next to it, as "name (restored).ext",
    when that name is taken now) with its original permissions and owner; returns the restored path.

    Refuses (FileChanged) when the original folder is now reached through a link: run as root, restoring
    must not write wherever the desk user points a link."""
    record = read_record(quarantined_name, quarantine_dir=quarantine_dir)
    original = Path(record["original_path"])
    original.parent.mkdir(parents=True, exist_ok=True)
    if os.path.realpath(original.parent) != str(original.parent):
        raise FileChanged("the original folder is now reached through a link")
    target = original
    n = 1
    while os.path.lexists(target):
        label = "restored" if n == 1 else f"restored {n}"
        target = original.with_name(f"{original.stem} ({label}){original.suffix}")
        n += 1
    source = quarantine_dir / quarantined_name
    mode = int(record.get("original_mode", 0o644)) & 0o777
    held = os.stat(source, follow_symlinks=False)
    # Noted before the file appears in the watched folder: the watcher may see it before this function returns.
    remember_released(target, size=held.st_size, mtime_ns=held.st_mtime_ns)
    with opened_folder(FolderId.of(original.parent)) as dir_fd:
        entry = target.name if dir_fd is not None else str(target)
        try:
            os.rename(source, entry, dst_dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # Across filesystems: copied under a partial name the watcher ignores, given its owner, mode and time,
            # then renamed into place, so the watcher only ever sees the finished file it was told about.
            partial = f".{target.name}.{secrets.token_hex(4)}.part"
            staging = partial if dir_fd is not None else str(target.with_name(partial))
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY
            out = os.open(staging, flags, 0o600, dir_fd=dir_fd)
            try:
                with os.fdopen(out, "wb") as dst, source.open("rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
                _set_mode_and_owner(dir_fd, staging, mode, record, mtime_ns=held.st_mtime_ns)
                os.rename(staging, entry, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(staging, dir_fd=dir_fd)
                raise
            source.unlink()
        else:
            _set_mode_and_owner(dir_fd, entry, mode, record, mtime_ns=held.st_mtime_ns)
    (quarantine_dir / (quarantined_name + SIDECAR_SUFFIX)).unlink(missing_ok=True)
    return target


def _set_mode_and_owner(dir_fd: int | None, entry: str, mode: int, record: dict[str, Any], *, mtime_ns: int) -> None:
    if sys.platform == "win32":
        os.chmod(entry, mode)
    else:
        fd = os.open(entry, os.O_RDONLY | _NOFOLLOW | _CLOEXEC, dir_fd=dir_fd)
        try:
            uid, gid = record.get("original_uid"), record.get("original_gid")
            if os.geteuid() == 0 and isinstance(uid, int) and isinstance(gid, int):
                os.fchown(fd, uid, gid)  # copied across filesystems by root: give the file back to its owner
            os.fchmod(fd, mode)
            os.utime(fd, ns=(mtime_ns, mtime_ns))  # a copy across filesystems keeps the time it was released with
        finally:
            os.close(fd)


def delete_quarantined(quarantined_name: str, *, quarantine_dir: Path) -> None:
    """Remove a quarantined file and its sidecar for good (an admin's decision). FileNotFoundError when there is
    no such file in the quarantine (already released or deleted)."""
    read_record(quarantined_name, quarantine_dir=quarantine_dir)  # validates the name; raises when unknown
    (quarantine_dir / quarantined_name).unlink()
    (quarantine_dir / (quarantined_name + SIDECAR_SUFFIX)).unlink(missing_ok=True)


_RELEASED_MAX = 1024
_released: OrderedDict[tuple[str, int, int], None] = OrderedDict()
_released_lock = threading.Lock()


def remember_released(path: Path, *, size: int, mtime_ns: int) -> None:
    """Note a file an admin released (where it goes, its size and modification time), so the downloads watcher
    does not take its return for a new download and quarantine it again. A later change to the file makes it a
    new file again. Any thread."""
    with _released_lock:
        _released[(os.path.normpath(path), size, mtime_ns)] = None
        while len(_released) > _RELEASED_MAX:
            _released.popitem(last=False)


def was_released(path: Path, st: os.stat_result) -> bool:
    """True for the file at `path` when `remember_released` noted it and it is unchanged since. Any thread."""
    with _released_lock:
        return (os.path.normpath(path), st.st_size, st.st_mtime_ns) in _released
