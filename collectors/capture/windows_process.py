"""Windows process image names without psutil's `exe()`: QueryFullProcessImageNameW, else the toolhelp snapshot.

psutil 7 takes a Windows process's name from `exe()`, which asks NtQuerySystemInformation(SystemProcessIdInformation);
Wine 8 does not implement that class (WinError 87 for every pid), and on Windows a process may refuse it too. These
two documented calls work on both. Called from the screen-capture collector's scanning thread.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import ntpath
from ctypes import wintypes
from typing import Any

PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
TH32CS_SNAPPROCESS = 0x2
MAX_PATH_CHARS = 32_768
_INVALID_HANDLE = ctypes.c_void_p(-1).value


class _ProcessEntry(ctypes.Structure):
    """PROCESSENTRY32W (tlhelp32.h)."""

    _fields_ = (
        ("dwSize", wintypes.DWORD),
        ("cntUsage", wintypes.DWORD),
        ("th32ProcessID", wintypes.DWORD),
        ("th32DefaultHeapID", ctypes.c_size_t),
        ("th32ModuleID", wintypes.DWORD),
        ("cntThreads", wintypes.DWORD),
        ("th32ParentProcessID", wintypes.DWORD),
        ("pcPriClassBase", wintypes.LONG),
        ("dwFlags", wintypes.DWORD),
        ("szExeFile", wintypes.WCHAR * 260),
    )


@functools.cache
def _kernel32() -> Any:
    loader = getattr(ctypes, "WinDLL", None)  # Windows only
    if loader is None:
        raise OSError(errno.ENOSYS, "kernel32.dll exists on Windows only")
    k32 = loader("kernel32", use_last_error=True)
    k32.OpenProcess.restype = wintypes.HANDLE
    k32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    k32.QueryFullProcessImageNameW.restype = wintypes.BOOL
    k32.QueryFullProcessImageNameW.argtypes = (
        wintypes.HANDLE,
        wintypes.DWORD,
        wintypes.LPWSTR,
        ctypes.POINTER(wintypes.DWORD),
    )
    k32.CreateToolhelp32Snapshot.restype = wintypes.HANDLE
    k32.CreateToolhelp32Snapshot.argtypes = (wintypes.DWORD, wintypes.DWORD)
    k32.Process32FirstW.restype = wintypes.BOOL
    k32.Process32FirstW.argtypes = (wintypes.HANDLE, ctypes.POINTER(_ProcessEntry))
    k32.Process32NextW.restype = wintypes.BOOL
    k32.Process32NextW.argtypes = (wintypes.HANDLE, ctypes.POINTER(_ProcessEntry))
    k32.CloseHandle.restype = wintypes.BOOL
    k32.CloseHandle.argtypes = (wintypes.HANDLE,)
    return k32


def _winerror(what: str) -> OSError:
    code = getattr(ctypes, "get_last_error", lambda: 0)()  # Windows only
    return OSError(errno.EIO, f"{what} failed with Windows error {code}")


def image_path(pid: int) -> str:
    """The full path of `pid`'s executable (QueryFullProcessImageNameW); OSError when the process cannot be opened
    (gone, or protected from this account)."""
    k32 = _kernel32()
    process = k32.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not process:
        raise _winerror(f"OpenProcess({pid})")
    try:
        buffer = ctypes.create_unicode_buffer(MAX_PATH_CHARS)
        size = wintypes.DWORD(MAX_PATH_CHARS)
        if not k32.QueryFullProcessImageNameW(process, 0, buffer, ctypes.byref(size)):
            raise _winerror(f"QueryFullProcessImageNameW({pid})")
        return buffer.value[: size.value]
    finally:
        k32.CloseHandle(process)


def snapshot_names() -> dict[int, str]:
    """Every process's image name (no path) from one toolhelp snapshot; readable for any process, protected or
    not."""
    k32 = _kernel32()
    snapshot = k32.CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0)
    if snapshot in (None, _INVALID_HANDLE):
        raise _winerror("CreateToolhelp32Snapshot")
    names: dict[int, str] = {}
    try:
        entry = _ProcessEntry()
        entry.dwSize = ctypes.sizeof(_ProcessEntry)
        more = k32.Process32FirstW(snapshot, ctypes.byref(entry))
        while more:
            names[int(entry.th32ProcessID)] = entry.szExeFile
            more = k32.Process32NextW(snapshot, ctypes.byref(entry))
    finally:
        k32.CloseHandle(snapshot)
    return names


def process_name_and_path(pid: int) -> tuple[str, str] | None:
    """(image name, full path or "") of `pid`, None when neither call knows it (the process is gone)."""
    try:
        path = image_path(pid)
    except OSError:
        name = snapshot_names().get(pid)
        return (name, "") if name else None
    return ntpath.basename(path), path
