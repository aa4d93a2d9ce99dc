"""Windows idle backend: GetLastInputInfo through ctypes (any thread may call it).

The tick reader is injectable so the arithmetic (32-bit tick wrap-around) is tested anywhere.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

TickReader = Callable[[], tuple[int, int]]
"""Returns (GetTickCount(), LASTINPUTINFO.dwTime), both 32-bit milliseconds."""


def read_ticks() -> tuple[int, int]:
    if sys.platform == "win32":
        from ctypes import wintypes

        class LASTINPUTINFO(ctypes.Structure):
            _fields_ = [("cbSize", wintypes.UINT), ("dwTime", wintypes.DWORD)]

        info = LASTINPUTINFO()
        info.cbSize = ctypes.sizeof(LASTINPUTINFO)
        if not ctypes.windll.user32.GetLastInputInfo(ctypes.byref(info)):
            raise OSError("GetLastInputInfo failed")
        return int(ctypes.windll.kernel32.GetTickCount()) & 0xFFFFFFFF, int(info.dwTime)
    else:
        raise OSError("GetLastInputInfo exists on Windows only")


class LastInputInfoSource:
    def __init__(self, *, ticks: TickReader = read_ticks) -> None:
        self._ticks = ticks

    def start(self) -> None:
        self._ticks()  # fail early (OSError) when the call is unavailable

    def stop(self) -> None:
        pass

    def seconds_since_input(self) -> float | None:
        now, last = self._ticks()
        return ((now - last) & 0xFFFFFFFF) / 1000.0
