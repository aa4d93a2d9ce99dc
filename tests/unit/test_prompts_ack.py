"""Acknowledgement due/overdue logic and its persisted state, driven by a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent_app.core.prompts import drafts
from agent_app.core.prompts.acknowledgement import (
    STATE_FILE,
    AcknowledgementTracker,
    AckReason,
    text_sha256,
)
from policy_client.schema import AcknowledgementControl, Controls, EventKind, PolicyDocument


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def _policy(
    version: int = 1, text: str = "# Rules\n\nBe careful.", *, reack_days: int = 90, required: bool = True
) -> PolicyDocument:
    ack = AcknowledgementControl(text_markdown=text, reack_days=reack_days, required=required)
    return PolicyDocument(version=version, controls=Controls(acknowledgement=ack))


def test_first_run_is_due_and_acknowledging_clears_it(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = AcknowledgementTracker(tmp_path, clock=clock)
    policy = _policy()
    assert tracker.due(policy) is AckReason.first_run
    tracker.acknowledged(policy)
    assert tracker.due(policy) is None
    assert tracker.state.text_sha256 == text_sha256(policy.controls.acknowledgement.text_markdown)


def test_state_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    policy = _policy()
    AcknowledgementTracker(tmp_path, clock=clock).acknowledged(policy)
    assert (tmp_path / STATE_FILE).exists()
    assert AcknowledgementTracker(tmp_path, clock=clock).due(policy) is None


def test_new_version_with_same_text_needs_no_ack_but_changed_text_does(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = AcknowledgementTracker(tmp_path, clock=clock)
    tracker.acknowledged(_policy(1))
    assert tracker.due(_policy(2)) is None
    assert tracker.due(_policy(3, "# Rules\n\nBe more careful.")) is AckReason.new_text


def test_reack_after_reack_days(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = AcknowledgementTracker(tmp_path, clock=clock)
    policy = _policy(reack_days=30)
    tracker.acknowledged(policy)
    clock.advance(days=29, hours=23)
    assert tracker.due(policy) is None
    clock.advance(hours=1)
    assert tracker.due(policy) is AckReason.reack


def test_not_required_is_never_due(tmp_path: Path) -> None:
    assert AcknowledgementTracker(tmp_path, clock=FakeClock()).due(_policy(required=False)) is None


def test_overdue_after_a_day_counted_from_first_ask_across_restarts(tmp_path: Path) -> None:
    clock = FakeClock()
    policy = _policy()
    tracker = AcknowledgementTracker(tmp_path, clock=clock)
    tracker.mark_asked(policy)
    clock.advance(hours=23)
    tracker = AcknowledgementTracker(tmp_path, clock=clock)
    tracker.mark_asked(policy)  # asking again must not restart the count
    assert not tracker.overdue(policy)
    clock.advance(hours=1)
    assert tracker.overdue(policy)
    tracker.acknowledged(policy)
    assert not tracker.overdue(policy)


def test_overdue_restarts_for_a_new_text(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = AcknowledgementTracker(tmp_path, clock=clock)
    tracker.mark_asked(_policy(1))
    clock.advance(days=2)
    changed = _policy(2, "changed")
    assert not tracker.overdue(changed)
    tracker.mark_asked(changed)
    clock.advance(hours=25)
    assert tracker.overdue(changed)


@pytest.mark.parametrize("content", ["not json", '{"version": "x", "acknowledged_at": 5}', "[]"])
def test_damaged_state_file_asks_again(tmp_path: Path, content: str) -> None:
    (tmp_path / STATE_FILE).write_text(content, encoding="utf-8")
    assert AcknowledgementTracker(tmp_path, clock=FakeClock()).due(_policy()) is AckReason.first_run


def test_acknowledged_draft_carries_version_and_text_hash() -> None:
    policy = _policy(7, "text")
    draft = drafts.acknowledged(policy)
    assert draft.kind is EventKind.policy_acknowledged
    assert draft.data == {"version": 7, "text_sha256": text_sha256("text")}
    assert draft.rule is not None
    assert draft.rule.policy_version == 7
