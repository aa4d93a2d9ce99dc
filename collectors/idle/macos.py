"""macOS idle backend: CGEventSourceSecondsSinceLastEventType (Quartz), imported lazily.

Uses pyobjc's Quartz when installed, else CoreGraphics through ctypes. Any thread may call it.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

COMBINED_SESSION_STATE = 0  # kCGEventSourceStateCombinedSessionState
ANY_INPUT_EVENT = 0xFFFFFFFF  # kCGAnyInputEventType
_CORE_GRAPHICS = "/System/Library/Frameworks/CoreGraphics.framework/CoreGraphics"

SecondsFn = Callable[[int, int], float]


def load_seconds_fn() -> SecondsFn:
    try:
        import Quartz  # type: ignore[import-not-found]  # pyobjc, optional

        fn: Any = Quartz.CGEventSourceSecondsSinceLastEventType
    except ImportError:
        lib = ctypes.cdll.LoadLibrary(_CORE_GRAPHICS)
        fn = lib.CGEventSourceSecondsSinceLastEventType
        fn.restype = ctypes.c_double
        fn.argtypes = [ctypes.c_int32, ctypes.c_uint32]

    def seconds(state: int, event_type: int) -> float:
        return float(fn(state, event_type))

    return seconds


class QuartzIdleSource:
    def __init__(self, *, loader: Callable[[], SecondsFn] = load_seconds_fn) -> None:
        self._loader = loader
        self._fn: SecondsFn | None = None

    def start(self) -> None:
        self._fn = self._loader()  # OSError when CoreGraphics is missing (not macOS)

    def stop(self) -> None:
        self._fn = None

    def seconds_since_input(self) -> float | None:
        fn = self._fn
        return None if fn is None else fn(COMBINED_SESSION_STATE, ANY_INPUT_EVENT)
