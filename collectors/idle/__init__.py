"""Idle detection for clean-desk prompts: when did the person last touch keyboard or mouse?

`IdleClock` is created and started on the main thread and read from any thread (the clean-desk
scheduler). Backends keep only a timestamp or ask the OS; no input is ever recorded.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from policy_client.schema import utc_now

__all__ = ["IdleClock", "IdleSource", "default_idle_source"]

log = logging.getLogger(__name__)


class IdleSource(Protocol):
    """Per-OS adapter. `start`/`stop` from the main thread; `seconds_since_input` from any thread."""

    def start(self) -> None:
        """Begin observing; raises OSError when the OS facility is unavailable."""
        ...

    def stop(self) -> None: ...

    def seconds_since_input(self) -> float | None:
        """Seconds since the last keyboard or mouse input; None when not known (yet)."""
        ...


def default_idle_source() -> IdleSource | None:
    platform: str = sys.platform  # a plain str, so mypy --platform checks every branch
    try:
        if platform == "win32":
            from collectors.idle.windows import LastInputInfoSource

            return LastInputInfoSource()
        if platform == "darwin":
            from collectors.idle.macos import QuartzIdleSource

            return QuartzIdleSource()
        from collectors.idle.linux import PynputActivitySource

        return PynputActivitySource()
    except Exception:
        log.exception("idle backend for %s failed to load", platform)
        return None


class IdleClock:
    """Idle time from the OS backend; falls back to "idle since the clock started" when the
    backend cannot say. Monotonic time drives the arithmetic, so wall-clock jumps do not matter."""

    def __init__(
        self,
        *,
        source: IdleSource | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._source = source if source is not None else default_idle_source()
        self._monotonic = monotonic
        self._now = now
        self._started_at = monotonic()
        self._running = False
        self._lock = threading.Lock()
        self.error: str | None = None
        """Why the backend is not running, or None."""

    def start(self) -> None:
        with self._lock:
            self._started_at = self._monotonic()
            if self._running or self._source is None:
                if self._source is None:
                    self.error = f"no idle backend for {sys.platform}"
                return
            try:
                self._source.start()
                self._running = True
                self.error = None
            except (OSError, ImportError) as exc:
                self.error = str(exc)[:200]
                log.warning("idle detection unavailable: %s", self.error)

    def stop(self) -> None:
        with self._lock:
            if self._running and self._source is not None:
                self._source.stop()
            self._running = False

    @property
    def available(self) -> bool:
        return self._running

    def idle_seconds(self) -> float:
        seconds: float | None = None
        if self._running and self._source is not None:
            try:
                seconds = self._source.seconds_since_input()
            except OSError as exc:
                log.debug("idle query failed: %s", exc)
        if seconds is None:
            seconds = self._monotonic() - self._started_at
        return max(0.0, seconds)

    def last_input(self) -> datetime:
        """The (UTC) instant of the last input, derived from the monotonic idle time."""
        return self._now() - timedelta(seconds=self.idle_seconds())
