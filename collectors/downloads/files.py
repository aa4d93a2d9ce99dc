"""Reading, moving and deleting files in folders the desk user controls, safe for a root service.

Every access goes through a descriptor of the watched folder whose identity (device, inode) was recorded when
the watch was set up, and no access follows a symbolic link, so a user who swaps a folder or a file for a link
cannot make the service read, move or delete anything outside that folder. Called on the downloads collector
thread (`open_regular`) and the pipeline thread (`move_to`, `delete`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)
AT_CALLS = all(fn in os.supports_dir_fd for fn in (os.open, os.stat, os.unlink, os.rename))
"""True where the OS has the *at() calls (Linux, macOS). Windows has none; there every access is by path, after
the same identity checks (creating links there needs a privilege a desk user normally lacks)."""


class FileChanged(OSError):
    """The folder or file is no longer the one that was watched or reported (replaced, or now a link)."""

    def __init__(self, what: str) -> None:
        super().__init__(errno.ESTALE, what)


@dataclass(frozen=True, slots=True)
class FolderId:
    """A watched folder: its resolved path and the identity it had when the watch was set up."""

    path: str
    dev: int
    ino: int

    @classmethod
    def of(cls, folder: Path) -> FolderId:
        """Resolve `folder` now (a configured link to another disk is fine) and record what it is."""
        root = folder.resolve()
        st = os.stat(root)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a folder")
        return cls(str(root), st.st_dev, st.st_ino)


@dataclass(frozen=True, slots=True)
class FileRef:
    """One reported file: its folder, its name in that folder and the identity it had when it was read."""

    folder: FolderId
    name: str
    dev: int
    ino: int
    size: int
    mtime_ns: int
    """Size and modification time too: a file deleted and written again often gets the same inode back."""

    @property
    def path(self) -> Path:
        return Path(self.folder.path) / self.name

    @classmethod
    def read(cls, folder: FolderId, name: str, st: os.stat_result) -> FileRef:
        return cls(folder, name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def matches(self, st: os.stat_result) -> bool:
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (self.dev, self.ino, self.size, self.mtime_ns)

    @classmethod
    def of(cls, path: Path) -> FileRef:
        """The file at `path` as it is now (admin tooling and tests; the collector builds refs as it reads)."""
        absolute = path.absolute()
        return cls.read(FolderId.of(absolute.parent), absolute.name, os.stat(absolute, follow_symlinks=False))


def _check_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or os.sep in name or (os.altsep and os.altsep in name):
        raise FileChanged("not a file name")
    return name


@contextlib.contextmanager
def opened_folder(folder: FolderId) -> Iterator[int | None]:
    """A descriptor of `folder`, verified to be the watched folder itself (None where the OS has no *at calls)."""
    if not AT_CALLS:
        st = os.stat(folder.path, follow_symlinks=False)
        if (st.st_dev, st.st_ino) != (folder.dev, folder.ino) or not stat.S_ISDIR(st.st_mode):
            raise FileChanged("the folder was replaced")
        yield None
        return
    try:
        fd = os.open(folder.path, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise FileChanged("the folder was replaced") from exc
        raise
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (folder.dev, folder.ino):
            raise FileChanged("the folder was replaced")
        yield fd
    finally:
        os.close(fd)


def _entry(dir_fd: int | None, folder: FolderId, name: str) -> str:
    return name if dir_fd is not None else os.path.join(folder.path, name)


def _open_nofollow(dir_fd: int | None, folder: FolderId, name: str) -> tuple[int, os.stat_result]:
    # O_NONBLOCK: opening a FIFO someone left in the folder must not hang the thread.
    flags = os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC | _BINARY
    fd = os.open(_entry(dir_fd, folder, _check_name(name)), flags, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileChanged("not a regular file")
        if sys.platform != "win32":
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def open_regular(folder: FolderId, name: str) -> tuple[BinaryIO, os.stat_result]:
    """Open `name` in `folder` for reading: a regular file, never through a link. The caller closes it."""
    with opened_folder(folder) as dir_fd:
        fd, st = _open_nofollow(dir_fd, folder, name)
    return os.fdopen(fd, "rb"), st


def _lstat_same(dir_fd: int | None, ref: FileRef) -> os.stat_result:
    st = os.stat(_entry(dir_fd, ref.folder, _check_name(ref.name)), dir_fd=dir_fd, follow_symlinks=False)
    if not ref.matches(st) or not stat.S_ISREG(st.st_mode):
        raise FileChanged("the file changed since it was reported")
    return st


def file_status(ref: FileRef) -> os.stat_result:
    """The reported file's status now; raises FileChanged when it is no longer that file."""
    with opened_folder(ref.folder) as dir_fd:
        return _lstat_same(dir_fd, ref)


def move_to(ref: FileRef, dest: Path, *, mode: int) -> None:
    """Move the reported file to `dest` (a new name in a folder the desk user cannot reach) with `mode`.

    A rename where both are on one filesystem; otherwise a copy of the verified file, then its removal."""
    with opened_folder(ref.folder) as dir_fd:
        _lstat_same(dir_fd, ref)
        try:
            os.rename(_entry(dir_fd, ref.folder, ref.name), dest, src_dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _copy_then_unlink(dir_fd, ref, dest, mode=mode)
    os.chmod(dest, mode)


def _copy_then_unlink(dir_fd: int | None, ref: FileRef, dest: Path, *, mode: int) -> None:
    fd, st = _open_nofollow(dir_fd, ref.folder, ref.name)
    with os.fdopen(fd, "rb") as src:
        if not ref.matches(st):
            raise FileChanged("the file changed since it was reported")
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY, mode)
        try:
            with os.fdopen(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
    try:
        _lstat_same(dir_fd, ref)
        os.unlink(_entry(dir_fd, ref.folder, ref.name), dir_fd=dir_fd)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def delete(ref: FileRef) -> None:
    """Delete the reported file (only that name in that folder, and only while it is still that file)."""
    with opened_folder(ref.folder) as dir_fd:
        _lstat_same(dir_fd, ref)
        os.unlink(_entry(dir_fd, ref.folder, ref.name), dir_fd=dir_fd)
