"""What counts as a justification for a warned action, and the countdown that applies the policy default.

Pure logic with an injectable clock; the warn notice dialog calls it on the GUI thread.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from policy_client.schema import JustificationControl, utc_now

Clock = Callable[[], datetime]
MAX_TEXT = 500
OTHER_REASON = "other"


@dataclass(frozen=True, slots=True)
class Justification:
    reason: str
    """A reason from the policy list, `other` for free text, or the policy default on timeout."""
    text: str
    timed_out: bool = False


def shortfall(control: JustificationControl, text: str) -> int:
    """How many more characters the free text needs (0 when long enough)."""
    return max(control.min_length - len(text.strip()), 0)


def validate(control: JustificationControl, *, reason: str | None, text: str) -> Justification | None:
    """A listed reason is enough on its own; otherwise the free text must reach `min_length`. None when invalid."""
    cleaned = " ".join(text.split())[:MAX_TEXT]
    if reason is not None and reason in control.reasons:
        return Justification(reason=reason, text=cleaned)
    if cleaned and shortfall(control, cleaned) == 0:
        return Justification(reason=OTHER_REASON, text=cleaned)
    return None


def timed_out(control: JustificationControl) -> Justification:
    return Justification(reason=control.default_on_timeout, text="", timed_out=True)


class JustificationCountdown:
    """Seconds left to answer; the dialog polls it from a 1 s QTimer."""

    def __init__(self, control: JustificationControl, *, clock: Clock = utc_now) -> None:
        self._clock = clock
        self._started = clock()
        self._timeout = control.timeout_seconds

    def remaining(self) -> int:
        elapsed = (self._clock() - self._started).total_seconds()
        return max(math.ceil(self._timeout - elapsed), 0)

    def expired(self) -> bool:
        return self.remaining() <= 0
