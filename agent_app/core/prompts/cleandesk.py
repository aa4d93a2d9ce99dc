"""Clean-desk scheduler: decides when to prompt (policy times, return from idle, shift end), bounds snoozes,
and turns an unanswered prompt into a miss after the grace period.

Pure logic with an injectable clock; the tray calls `tick()` from a coarse QTimer on the GUI thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum

from policy_client.schema import CleanDeskControl, utc_now

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
LastInput = Callable[[], datetime | None]


class Trigger(StrEnum):
    scheduled = "scheduled"
    idle_return = "idle_return"
    shift_end = "shift_end"
    manual = "manual"


@dataclass(frozen=True, slots=True)
class ShowPrompt:
    """Show (or show again after a snooze) the checklist. `first` is True once per prompt: record `prompted`."""

    trigger: Trigger
    first: bool
    snoozes_used: int
    snoozes_left: int
    deadline: datetime
    """When the prompt counts as missed unless confirmed (or snoozed) before."""


@dataclass(frozen=True, slots=True)
class PromptMissed:
    """The grace period ran out: close the dialog and record `cleandesk.missed`."""

    trigger: Trigger
    snoozes_used: int


@dataclass(frozen=True, slots=True)
class Attested:
    trigger: Trigger
    snoozes_used: int


CleanDeskAction = ShowPrompt | PromptMissed


@dataclass(slots=True)
class _Active:
    trigger: Trigger
    snoozes: int = 0
    shown_at: datetime | None = None
    remind_at: datetime | None = None


class CleanDeskScheduler:
    """One prompt at a time; triggers that fire while a prompt is open are merged into it."""

    def __init__(
        self,
        control: CleanDeskControl,
        *,
        clock: Clock = utc_now,
        last_input: LastInput = lambda: None,
        tz: tzinfo | None = None,
    ) -> None:
        self._control = control
        self._clock = clock
        self._last_input = last_input
        self._tz = tz
        self._last_tick = clock()
        self._seen_input = last_input()
        self._active: _Active | None = None

    # --- queries ------------------------------------------------------------------------------------

    @property
    def control(self) -> CleanDeskControl:
        return self._control

    @property
    def active(self) -> bool:
        return self._active is not None

    @property
    def snoozes_left(self) -> int:
        used = self._active.snoozes if self._active else 0
        return max(self._control.max_snoozes - used, 0)

    # --- commands -----------------------------------------------------------------------------------

    def reconfigure(self, control: CleanDeskControl) -> None:
        self._control = control

    def tick(self) -> list[CleanDeskAction]:
        now = self._clock()
        actions: list[CleanDeskAction] = []
        active = self._active
        if active is not None:
            if active.shown_at is None and active.remind_at is not None and now >= active.remind_at:
                active.shown_at, active.remind_at = now, None
                actions.append(self._show(active, first=False))
            elif active.shown_at is not None and now >= active.shown_at + self._grace:
                log.info("clean-desk prompt (%s) missed after %d snoozes", active.trigger, active.snoozes)
                actions.append(PromptMissed(active.trigger, active.snoozes))
                self._active = None
        trigger = self._fired(now)
        self._last_tick = now
        if trigger is not None and self._active is None and not actions:
            actions.append(self._start(trigger, now))
        return actions

    def request(self, trigger: Trigger = Trigger.manual) -> ShowPrompt | None:
        """Start a prompt now (e.g. from a menu or a test); None when one is already open."""
        if self._active is not None:
            return None
        return self._start(trigger, self._clock())

    def snooze(self) -> bool:
        """Hide the prompt for `snooze_minutes`. False (and nothing changes) when no snooze is left."""
        active = self._active
        if active is None or active.shown_at is None or self.snoozes_left <= 0:
            return False
        active.snoozes += 1
        active.shown_at = None
        active.remind_at = self._clock() + timedelta(minutes=self._control.snooze_minutes)
        return True

    def attest(self) -> Attested | None:
        active = self._active
        if active is None:
            return None
        self._active = None
        return Attested(active.trigger, active.snoozes)

    # --- internals ----------------------------------------------------------------------------------

    @property
    def _grace(self) -> timedelta:
        return timedelta(minutes=self._control.grace_minutes)

    def _start(self, trigger: Trigger, now: datetime) -> ShowPrompt:
        self._active = _Active(trigger=trigger, shown_at=now)
        log.info("clean-desk prompt (%s)", trigger)
        return self._show(self._active, first=True)

    def _show(self, active: _Active, *, first: bool) -> ShowPrompt:
        assert active.shown_at is not None  # noqa: S101 - internal invariant: only shown prompts are shown
        return ShowPrompt(
            trigger=active.trigger,
            first=first,
            snoozes_used=active.snoozes,
            snoozes_left=self.snoozes_left,
            deadline=active.shown_at + self._grace,
        )

    def _fired(self, now: datetime) -> Trigger | None:
        fired: Trigger | None = None
        if self._idle_return():
            fired = Trigger.idle_return
        if any(self._passed(hhmm, now) for hhmm in self._control.times):
            fired = Trigger.scheduled
        if self._control.shift_end and self._passed(self._control.shift_end, now):
            fired = Trigger.shift_end
        return fired

    def _idle_return(self) -> bool:
        latest = self._last_input()
        previous, self._seen_input = self._seen_input, latest if latest is not None else self._seen_input
        minutes = self._control.after_idle_minutes
        if minutes is None or latest is None or previous is None:
            return False
        return latest - previous >= timedelta(minutes=minutes)

    def _passed(self, hhmm: str, now: datetime) -> bool:
        """True when a local HH:MM fell in (last tick, now] and is still within the grace period
        (a time slept through long ago is skipped: the return-from-idle prompt covers it)."""
        hour, minute = (int(part) for part in hhmm.split(":"))
        local_now = now.astimezone(self._tz)
        today = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        for candidate in (today, today - timedelta(days=1)):
            if self._last_tick < candidate <= now and now - candidate <= self._grace:
                return True
        return False
