"""Work that other threads hand to the main thread (the GUI thread in tray mode): a queue the main loop drains.

`post` may be called from any thread; `run_pending` runs on the main thread only.
"""

from __future__ import annotations

import queue
from collections.abc import Callable

MainCall = Callable[[], None]


class MainCalls:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[MainCall] = queue.SimpleQueue()

    def post(self, call: MainCall) -> None:
        self._queue.put(call)

    def run_pending(self, timeout: float | None = None) -> None:
        """Run queued calls; blocks up to `timeout` for the first one (None or 0: does not block)."""
        try:
            call = self._queue.get(timeout=timeout) if timeout else self._queue.get_nowait()
        except queue.Empty:
            return
        while True:
            call()
            try:
                call = self._queue.get_nowait()
            except queue.Empty:
                return
