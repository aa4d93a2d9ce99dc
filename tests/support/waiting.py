"""`wait_for`: poll a condition until a deadline, the one way tests wait for another thread or process.

Called from the test's thread. Never a fixed sleep (STYLE.md): the wait ends as soon as the condition holds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

_TICK = threading.Event()  # never set: its wait() is the poll interval of the deadline loop


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str, poll: float = 0.05) -> None:
    """Poll `predicate` until true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        _TICK.wait(poll)
