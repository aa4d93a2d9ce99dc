"""Win32 functions through ctypes with their prototypes set, shared by the Windows adapters (named pipe, WTS
sessions, machine secrets, the state folder). Loaded on first call; off Windows every call raises OSError(ENOSYS).
Any thread.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

Signature = tuple[str, Any, tuple[Any, ...]]
"""(DLL name, restype, argtypes) of one function."""


@functools.cache
def dll(name: str) -> Any:
    if sys.platform == "win32":
        return ctypes.WinDLL(name, use_last_error=True)
    else:
        raise OSError(errno.ENOSYS, f"{name}.dll exists on Windows only")


class Win32Functions:
    """`functions("CreateFileW")` is that function with restype and argtypes set (handles are pointer-sized: a
    default int restype would truncate them)."""

    def __init__(self, signatures: Mapping[str, Signature]) -> None:
        self._signatures = signatures

    @functools.cache  # noqa: B019 - one instance per module, living as long as the process
    def __call__(self, function: str) -> Any:
        library, restype, argtypes = self._signatures[function]
        pointer = getattr(dll(library), function)
        pointer.restype = restype
        pointer.argtypes = argtypes
        return pointer


def last_error() -> int:
    if sys.platform == "win32":
        return ctypes.get_last_error()
    else:
        return 0


FOLDERID_PROGRAM_DATA = uuid.UUID("62AB5D82-FDC1-4DC3-A9DD-070D1D495D97")


class _Guid(ctypes.Structure):
    _fields_ = (("bytes", ctypes.c_ubyte * 16),)


def known_folder(folder: uuid.UUID) -> Path:
    """SHGetKnownFolderPath(folder); OSError when the shell cannot say (or off Windows)."""
    shell32, ole32 = dll("shell32"), dll("ole32")
    guid = _Guid()
    guid.bytes[:] = list(folder.bytes_le)
    text = ctypes.c_void_p()
    shell32.SHGetKnownFolderPath.restype = ctypes.c_long
    shell32.SHGetKnownFolderPath.argtypes = (ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p)
    ole32.CoTaskMemFree.restype = None
    ole32.CoTaskMemFree.argtypes = (ctypes.c_void_p,)
    result = shell32.SHGetKnownFolderPath(ctypes.byref(guid), 0, None, ctypes.byref(text))
    try:
        if result != 0 or not text.value:
            raise OSError(errno.ENOENT, f"SHGetKnownFolderPath({folder}) failed (HRESULT {result & 0xFFFFFFFF:#010x})")
        return Path(ctypes.wstring_at(text.value))
    finally:
        ole32.CoTaskMemFree(text)


def program_data_dir() -> Path:
    """The machine's ProgramData folder as the shell knows it, not as this process's environment says. A service's
    environment comes from the SCM's, and Wine 8's services.exe, started while wineboot builds the prefix, passes
    PROGRAMDATA=C:\\users\\Public to its services while the known folder (and every console) says C:\\ProgramData:
    the service would look for its state where the installer never wrote it. The environment, then C:\\ProgramData,
    only when the shell cannot answer."""
    try:
        return known_folder(FOLDERID_PROGRAM_DATA)
    except OSError:
        return Path(os.environ.get("PROGRAMDATA") or r"C:\ProgramData")
