"""A collector sink for tests: records observations and lets a test wait for them without sleeping."""

from __future__ import annotations

import threading
import time

from collectors.base import Observation


class Sink:
    def __init__(self) -> None:
        self.items: list[Observation] = []
        self.cond = threading.Condition()

    def emit(self, observation: Observation) -> None:
        with self.cond:
            self.items.append(observation)
            self.cond.notify_all()

    def wait_count(self, n: int, timeout: float = 3.0) -> list[Observation]:
        """The first `n` observations (or more), once they have arrived; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.items) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {n} observations, got {[o.draft for o in self.items]}")
                self.cond.wait(left)
            return list(self.items)
