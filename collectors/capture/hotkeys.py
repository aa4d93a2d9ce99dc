"""Capture-shortcut detection: PrintScreen, Win+Shift+S, Cmd+Shift+3/4/5 — and nothing else.

The key source's listener thread (pynput) calls `ShortcutDetector.press/release`. Keys are
reduced to a tiny vocabulary (modifiers and the few trigger keys) before they reach the detector;
every other key becomes None and is dropped at once, so no keystroke is ever stored.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

MODIFIERS = frozenset({"shift", "super", "ctrl", "alt"})
TRIGGERS = frozenset({"print_screen", "s", "3", "4", "5"})
Token = str
"""One of MODIFIERS | TRIGGERS; the only key information that ever leaves the adapter."""


class ShortcutDetector:
    """Tracks modifier state only and names the capture shortcut a trigger key completes."""

    def __init__(self, *, platform: str = sys.platform) -> None:
        self._platform = platform
        self._mods: set[str] = set()
        self._down: set[str] = set()
        self._lock = threading.Lock()

    def press(self, key_name: Token | None) -> str | None:
        if key_name is None:
            return None
        with self._lock:
            if key_name in MODIFIERS:
                self._mods.add(key_name)
                return None
            if key_name not in TRIGGERS or key_name in self._down:
                return None  # unknown, or auto-repeat of a held trigger
            self._down.add(key_name)
            return self._shortcut(key_name)

    def release(self, key_name: Token | None) -> None:
        if key_name is None:
            return
        with self._lock:
            self._mods.discard(key_name)
            self._down.discard(key_name)

    def _shortcut(self, key_name: str) -> str | None:
        if key_name == "print_screen":
            return "PrintScreen"
        if not {"super", "shift"} <= self._mods:
            return None
        if key_name == "s" and self._platform == "win32":
            return "Win+Shift+S"
        if key_name in ("3", "4", "5") and self._platform == "darwin":
            return f"Cmd+Shift+{key_name}"
        return None


class KeySource(Protocol):
    """Delivers normalised key tokens (None for every other key) from its own thread."""

    def start(self, on_press: Callable[[Token | None], None], on_release: Callable[[Token | None], None]) -> None:
        """Start listening; raises OSError/ImportError when no keyboard hook is available."""
        ...

    def stop(self) -> None: ...

    def set_suppress_print_screen(self, suppress: bool) -> bool:
        """Swallow PrintScreen system-wide where the OS allows (Windows); returns whether it can."""
        ...


_SHIFTED_DIGITS = {"#": "3", "$": "4", "%": "5", "£": "3", "§": "3"}
_VK_BY_PLATFORM: dict[str, dict[int, str]] = {
    "win32": {0x53: "s", 0x33: "3", 0x34: "4", 0x35: "5", 0x2C: "print_screen"},
    "darwin": {1: "s", 20: "3", 21: "4", 23: "5"},
    # X11 reports keysyms as vk.
    "linux": {
        0x73: "s",
        0x53: "s",
        0x33: "3",
        0x34: "4",
        0x35: "5",
        0x23: "3",
        0x24: "4",
        0x25: "5",
        0xFF61: "print_screen",
    },
}
_KEY_NAMES = {
    "print_screen": "print_screen",
    "shift": "shift",
    "shift_l": "shift",
    "shift_r": "shift",
    "cmd": "super",
    "cmd_l": "super",
    "cmd_r": "super",
    "ctrl": "ctrl",
    "ctrl_l": "ctrl",
    "ctrl_r": "ctrl",
    "alt": "alt",
    "alt_l": "alt",
    "alt_r": "alt",
    "alt_gr": "alt",
}


def normalize_key(key: Any, *, platform: str = sys.platform) -> Token | None:
    """Reduce a pynput key (Key enum or KeyCode) to a key_name, or None for anything else."""
    name = getattr(key, "name", None)
    if isinstance(name, str) and not hasattr(key, "char"):
        return _KEY_NAMES.get(name)
    char = getattr(key, "char", None)
    if isinstance(char, str) and len(char) == 1:
        folded = _SHIFTED_DIGITS.get(char, char.lower())
        return folded if folded in TRIGGERS else None
    vk = getattr(key, "vk", None)
    if isinstance(vk, int):
        table = (
            _VK_BY_PLATFORM["linux" if platform.startswith("linux") else platform]
            if platform in ("win32", "darwin") or platform.startswith("linux")
            else {}
        )
        return table.get(vk)
    return None


def stop_pynput_listener(listener: Any, *, timeout: float = 5.0) -> None:
    """Stop a pynput listener and wait for its thread.

    Workaround for pynput 1.8 on X11: `stop()` sends XRecordDisableContext on the recording
    connection, which is blocked inside XRecordEnableContext, so the thread lingers until the next
    input event. Sending the disable request on the listener's other connection ends it at once.
    """
    listener.stop()
    display_stop, context = getattr(listener, "_display_stop", None), getattr(listener, "_context", None)
    if display_stop is not None and context is not None:
        try:
            display_stop.record_disable_context(context)
            display_stop.flush()
        except Exception as exc:  # noqa: BLE001 - Xlib raises its own error types once the server is gone
            log.debug("X record disable failed: %s", exc)
    listener.join(timeout)
    if listener.is_alive():
        log.warning("input listener did not stop within %.1f s", timeout)


def await_pynput_ready(listener: Any, timeout: float) -> bool:
    """Wait until a pynput listener is ready; False if its thread died first or `timeout` passed.

    pynput's own `wait()` blocks forever when the listener thread raises before it marks itself ready (an X server
    that refuses the RECORD extension, a display that went away): the caller would hang with it.
    """
    condition, deadline = listener._condition, time.monotonic() + timeout
    with condition:
        while not listener._ready:
            left = deadline - time.monotonic()
            if left <= 0 or not listener.is_alive():
                return False
            condition.wait(min(left, 0.05))  # woken by _mark_ready; the bound only notices a thread that died
    return True


class PynputKeySource:
    """`KeySource` over a pynput keyboard Listener (imported lazily: X needs DISPLAY at import)."""

    START_TIMEOUT_S = 5.0
    VK_SNAPSHOT = 0x2C
    WM_KEYDOWN = 0x0100
    WM_SYSKEYDOWN = 0x0104

    def __init__(self, *, platform: str = sys.platform) -> None:
        self._platform = platform
        self._listener: Any = None
        self._suppress = False

    def start(self, on_press: Callable[[Token | None], None], on_release: Callable[[Token | None], None]) -> None:
        try:
            from pynput import keyboard
        except Exception as exc:  # pynput raises assorted errors when no display/backend is usable
            raise OSError(
                f"no keyboard hook available: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from exc

        platform = self._platform
        kwargs: dict[str, Any] = {}
        if platform == "win32":
            kwargs["win32_event_filter"] = self._win32_filter(on_press, on_release)

        def pressed(key: Any) -> None:
            on_press(normalize_key(key, platform=platform))

        def released(key: Any) -> None:
            on_release(normalize_key(key, platform=platform))

        listener = keyboard.Listener(on_press=pressed, on_release=released, **kwargs)
        listener.daemon = True
        listener.start()
        if not await_pynput_ready(listener, self.START_TIMEOUT_S) or not listener.running:
            listener.stop()
            raise OSError("keyboard listener did not start (no usable keyboard source on this display)")
        self._listener = listener

    def _win32_filter(
        self, on_press: Callable[[Token | None], None], on_release: Callable[[Token | None], None]
    ) -> Callable[[int, Any], bool]:
        def event_filter(msg: int, data: Any) -> bool:
            if self._suppress and getattr(data, "vkCode", None) == self.VK_SNAPSHOT and self._listener is not None:
                # A suppressed event never reaches pynput's callbacks, so report it here.
                if msg in (self.WM_KEYDOWN, self.WM_SYSKEYDOWN):
                    on_press("print_screen")
                else:
                    on_release("print_screen")
                self._listener.suppress_event()
            return True

        return event_filter

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            stop_pynput_listener(listener)

    def set_suppress_print_screen(self, suppress: bool) -> bool:
        self._suppress = suppress and self._platform == "win32"
        return self._suppress
