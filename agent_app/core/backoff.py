"""Full-jitter exponential backoff and Retry-After parsing for the uploader thread.

Pure values and functions; the uploader thread owns one `Backoff`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

DEFAULT_BASE_S = 1.0
DEFAULT_CAP_S = 300.0
MAX_RETRY_AFTER_S = 3600.0
"""A Retry-After longer than this is clamped: a misconfigured endpoint must not park agents for days."""


class Backoff:
    """Delay before the n-th consecutive retry: uniform in [0, min(cap, base * 2**n)] ("full jitter")."""

    def __init__(
        self, *, base: float = DEFAULT_BASE_S, cap: float = DEFAULT_CAP_S, rand: Callable[[], float] = random.random
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self._base = base
        self._cap = cap
        self._rand = rand
        self._attempts = 0

    @property
    def attempts(self) -> int:
        return self._attempts

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay for a given attempt number (0-based)."""
        # 2**attempt overflows floats after ~1000 attempts; the cap is reached long before that.
        exponent = min(attempt, 64)
        return min(self._cap, self._base * math.pow(2.0, exponent))

    def next_delay(self) -> float:
        delay = self._rand() * self.ceiling(self._attempts)
        self._attempts += 1
        return delay

    def reset(self) -> None:
        self._attempts = 0


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date); None when absent or invalid.

    Decimal seconds are accepted leniently. The result is clamped to [0, MAX_RETRY_AFTER_S].
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _looks_numeric(text):
        try:
            seconds = float(text)
        except ValueError:
            return None
        if not math.isfinite(seconds):
            return None
        return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    return min(max((when - reference).total_seconds(), 0.0), MAX_RETRY_AFTER_S)


def _looks_numeric(text: str) -> bool:
    return text[0].isdigit() or text[0] in "+-."
