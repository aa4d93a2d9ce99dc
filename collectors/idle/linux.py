"""Linux (X11) idle backend: pynput keyboard and mouse listeners that store one timestamp.

Listener threads (pynput's) call `touch`; any thread reads `seconds_since_input`. pynput is
imported lazily because its X backend needs DISPLAY at import time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from collectors.capture.hotkeys import await_pynput_ready, stop_pynput_listener


class PynputActivitySource:
    """Keeps the monotonic time of the last input event, never the event itself."""

    START_TIMEOUT_S = 5.0

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._last: float | None = None
        self._listeners: list[Any] = []

    def touch(self, *_ignored: Any) -> None:
        """Record "there was input now" (callable with any pynput callback arguments)."""
        self._last = self._monotonic()

    def start(self) -> None:
        try:
            from pynput import keyboard, mouse
        except Exception as exc:  # pynput raises assorted errors when no display/backend is usable
            raise OSError(
                f"no input hook available: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from exc
        listeners = [
            keyboard.Listener(on_press=self.touch, on_release=self.touch),
            mouse.Listener(on_move=self.touch, on_click=self.touch, on_scroll=self.touch),
        ]
        for listener in listeners:
            listener.daemon = True
            listener.start()
        ready = [await_pynput_ready(listener, self.START_TIMEOUT_S) for listener in listeners]
        self._listeners = listeners
        if not all(ready) or not all(listener.running for listener in listeners):
            self.stop()
            raise OSError("input listeners did not start")

    def stop(self) -> None:
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            stop_pynput_listener(listener)

    def seconds_since_input(self) -> float | None:
        last = self._last
        return None if last is None else self._monotonic() - last
