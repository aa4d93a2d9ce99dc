"""Win32 functions through ctypes with their prototypes set, shared by the Windows adapters (named pipe, WTS
sessions, machine secrets). Loaded on first call; off Windows every call raises OSError(ENOSYS). Any thread.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import sys
from collections.abc import Mapping
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
