"""Clean-desk scheduler with a fake clock and a fake last-input source: no sleeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent_app.core.prompts import drafts
from agent_app.core.prompts.cleandesk import CleanDeskScheduler, PromptMissed, ShowPrompt, Trigger
from policy_client.schema import CleanDeskControl, Controls, EventKind, PolicyDocument


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def _scheduler(
    control: CleanDeskControl, start: datetime, last_input: list[datetime | None] | None = None
) -> tuple[CleanDeskScheduler, FakeClock]:
    clock = FakeClock(start)
    inputs = last_input if last_input is not None else [None]
    return CleanDeskScheduler(control, clock=clock, last_input=lambda: inputs[0], tz=UTC), clock


T0 = datetime(2025, 3, 3, 12, 55, tzinfo=UTC)


def test_scheduled_time_prompts_once() -> None:
    scheduler, clock = _scheduler(CleanDeskControl(times=["13:00"]), T0)
    assert scheduler.tick() == []
    clock.advance(minutes=5)
    actions = scheduler.tick()
    assert len(actions) == 1
    prompt = actions[0]
    assert isinstance(prompt, ShowPrompt)
    assert prompt.trigger is Trigger.scheduled
    assert prompt.first
    assert prompt.deadline == clock.now + timedelta(minutes=15)
    scheduler.attest()
    clock.advance(seconds=30)
    assert scheduler.tick() == []


def test_time_slept_through_long_ago_is_skipped() -> None:
    scheduler, clock = _scheduler(CleanDeskControl(times=["13:00"], grace_minutes=15), T0)
    clock.advance(hours=2)  # machine asleep over 13:00
    assert scheduler.tick() == []


def test_time_passed_within_grace_after_resume_still_prompts() -> None:
    scheduler, clock = _scheduler(CleanDeskControl(times=["13:00"], grace_minutes=15), T0)
    clock.advance(minutes=14)
    assert [type(a) for a in scheduler.tick()] == [ShowPrompt]


def test_time_crossing_midnight() -> None:
    start = datetime(2025, 3, 3, 23, 58, tzinfo=UTC)
    scheduler, clock = _scheduler(CleanDeskControl(times=["00:00"]), start)
    clock.advance(minutes=3)
    actions = scheduler.tick()
    assert len(actions) == 1


def test_shift_end_wins_over_a_schedule_at_the_same_time() -> None:
    scheduler, clock = _scheduler(CleanDeskControl(times=["13:00"], shift_end="13:00"), T0)
    clock.advance(minutes=6)
    (prompt,) = scheduler.tick()
    assert isinstance(prompt, ShowPrompt)
    assert prompt.trigger is Trigger.shift_end


def test_return_from_idle_longer_than_threshold() -> None:
    inputs: list[datetime | None] = [T0]
    scheduler, clock = _scheduler(CleanDeskControl(after_idle_minutes=10), T0, inputs)
    clock.advance(minutes=9)
    inputs[0] = clock.now  # back after 9 minutes: no prompt
    assert scheduler.tick() == []
    clock.advance(minutes=10)
    assert scheduler.tick() == []  # still away, nothing new
    clock.advance(minutes=1)
    inputs[0] = clock.now  # back after 11 minutes
    (prompt,) = scheduler.tick()
    assert isinstance(prompt, ShowPrompt)
    assert prompt.trigger is Trigger.idle_return


def test_idle_detection_unavailable_never_prompts() -> None:
    scheduler, clock = _scheduler(CleanDeskControl(after_idle_minutes=1), T0, [None])
    clock.advance(hours=3)
    assert scheduler.tick() == []


def test_snoozes_are_bounded_and_reprompt_after_snooze() -> None:
    control = CleanDeskControl(snooze_minutes=5, max_snoozes=2, grace_minutes=15)
    scheduler, clock = _scheduler(control, T0)
    prompt = scheduler.request(Trigger.manual)
    assert prompt is not None
    assert prompt.snoozes_left == 2
    for expected_left in (1, 0):
        assert scheduler.snooze()
        clock.advance(minutes=4)
        assert scheduler.tick() == []
        clock.advance(minutes=1)
        (again,) = scheduler.tick()
        assert isinstance(again, ShowPrompt)
        assert not again.first
        assert again.snoozes_left == expected_left
    assert not scheduler.snooze()
    assert scheduler.snoozes_left == 0


def test_grace_period_turns_into_missed() -> None:
    scheduler, clock = _scheduler(CleanDeskControl(grace_minutes=15), T0)
    scheduler.request(Trigger.manual)
    clock.advance(minutes=14, seconds=59)
    assert scheduler.tick() == []
    clock.advance(seconds=1)
    assert scheduler.tick() == [PromptMissed(Trigger.manual, 0)]
    assert not scheduler.active
    assert scheduler.attest() is None


def test_triggers_while_open_are_merged() -> None:
    scheduler, clock = _scheduler(CleanDeskControl(times=["13:00"]), T0)
    assert scheduler.request() is not None
    assert scheduler.request() is None
    clock.advance(minutes=6)
    assert scheduler.tick() == []


def test_attest_reports_snoozes() -> None:
    scheduler, _clock = _scheduler(CleanDeskControl(), T0)
    scheduler.request(Trigger.shift_end)
    scheduler.snooze()
    result = scheduler.attest()
    assert result is not None
    assert (result.trigger, result.snoozes_used) == (Trigger.shift_end, 1)


@pytest.mark.parametrize(
    "kind", [EventKind.cleandesk_prompted, EventKind.cleandesk_attested, EventKind.cleandesk_missed]
)
def test_cleandesk_drafts(kind: EventKind) -> None:
    policy = PolicyDocument(version=3, controls=Controls(clean_desk=CleanDeskControl(checklist=["a", "b"])))
    draft = drafts.cleandesk(kind, policy, trigger=Trigger.idle_return, snoozes=1)
    assert draft.kind is kind
    assert draft.data == {"trigger": "idle_return", "items": 2, "snoozes": 1}


def test_cleandesk_draft_refuses_other_kinds() -> None:
    with pytest.raises(ValueError, match="not a clean-desk event"):
        drafts.cleandesk(EventKind.usb_mounted, PolicyDocument(version=1), trigger=Trigger.manual, snoozes=0)
