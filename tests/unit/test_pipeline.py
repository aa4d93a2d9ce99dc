"""The pipeline: decide, enforce, record durably, tell the person — with the real outbox."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from agent_app.core.outbox import Outbox
from agent_app.core.pipeline import Notice, Pipeline
from collectors.base import Collector, Decision, Observation, Outcome
from policy_client.schema import (
    Action,
    Controls,
    DownloadsControl,
    EventDraft,
    EventKind,
    PolicyDocument,
    UsbControl,
)
from policy_client.secrets import OutboxKeys


class Enforcing(Collector):
    """A collector whose enforcement result (or failure) the test chooses."""

    id = "usb"

    def __init__(self, outcome: Outcome | Exception) -> None:
        super().__init__()
        self.outcome = outcome
        self.calls: list[tuple[Any, Decision]] = []

    def enforce(self, target: Any, decision: Decision) -> Outcome:
        self.calls.append((target, decision))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


@pytest.fixture
def keys() -> OutboxKeys:
    return OutboxKeys(key_id="k1", data_key=b"d" * 32, chain_key=b"c" * 32)


def run_pipeline(
    tmp_path: Path,
    keys: OutboxKeys,
    policy: PolicyDocument,
    collector: Collector | None,
    items: list[Observation | EventDraft],
) -> tuple[list[dict[str, Any]], list[Notice]]:
    notices: list[Notice] = []
    written = threading.Event()
    pipeline = Pipeline(
        outbox_factory=lambda: Outbox(tmp_path / "outbox.db", keys=keys),
        policy=lambda: policy,
        collector=lambda name: collector if collector is not None and name == collector.id else None,
        user="agent7",
        on_notice=notices.append,
        on_written=lambda seqs: written.set(),
    )
    pipeline.start()
    for item in items:
        if isinstance(item, Observation):
            pipeline.emit(item)
        else:
            pipeline.record(item)
    assert pipeline.flush(10)
    pipeline.stop()
    with Outbox(tmp_path / "outbox.db", keys=keys) as outbox:
        return list(reversed(outbox.history(limit=10_000))), notices


def usb_observation() -> Observation:
    draft = EventDraft(kind=EventKind.usb_mounted, data={"vendor_id": "0781", "product_id": "5581"})
    return Observation(draft=draft, target="/media/stick", collector_id="usb")


def test_a_blocked_stick_is_enforced_recorded_as_usb_blocked_and_told(tmp_path: Path, keys: OutboxKeys) -> None:
    collector = Enforcing(Outcome(Action.blocked, {"unmounted": True}))
    policy = PolicyDocument(version=4, controls=Controls(usb=UsbControl(mode="block")))
    events, notices = run_pipeline(tmp_path, keys, policy, collector, [usb_observation()])

    assert [target for target, _ in collector.calls] == ["/media/stick"]
    (event,) = events
    assert event["kind"] == "usb.blocked"
    assert event["action"] == "blocked"
    assert event["rule"] == {"id": "usb.block", "policy_version": 4}
    assert event["user"] == "agent7"
    assert event["data"]["unmounted"] is True
    (notice,) = notices
    assert notice.seq == event["seq"]
    assert notice.control == "usb"
    assert notice.decision.exception_allowed


def test_failed_enforcement_is_recorded_as_failed_not_dropped(tmp_path: Path, keys: OutboxKeys) -> None:
    collector = Enforcing(RuntimeError("udisks went away"))
    policy = PolicyDocument(version=1, controls=Controls(usb=UsbControl(mode="block")))
    events, notices = run_pipeline(tmp_path, keys, policy, collector, [usb_observation()])
    (event,) = events
    assert event["kind"] == "usb.mounted"
    assert event["action"] == "failed"
    assert event["data"]["error"] == "RuntimeError"
    assert notices[0].outcome is Action.failed


def test_audit_mode_records_without_enforcing_and_off_records_nothing(tmp_path: Path, keys: OutboxKeys) -> None:
    collector = Enforcing(Outcome(Action.blocked))
    audit = PolicyDocument(version=1, controls=Controls(usb=UsbControl(mode="audit")))
    events, notices = run_pipeline(tmp_path / "a", keys, audit, collector, [usb_observation()])
    assert [e["action"] for e in events] == ["observed"]
    assert collector.calls == []
    assert notices == []

    off = PolicyDocument(version=1, controls=Controls(downloads=DownloadsControl(mode="off")))
    draft = EventDraft(kind=EventKind.download_detected, data={"name": "a.pdf"})
    events, _ = run_pipeline(tmp_path / "b", keys, off, None, [Observation(draft, "/x", "downloads")])
    assert events == []


def test_agent_events_get_the_session_user_and_keep_their_order(tmp_path: Path, keys: OutboxKeys) -> None:
    drafts: list[Observation | EventDraft] = [
        EventDraft(kind=EventKind.download_detected, data={"n": index}) for index in range(2500)
    ]
    events, _ = run_pipeline(tmp_path, keys, PolicyDocument(version=0), None, drafts)
    assert [e["data"]["n"] for e in events[-100:]] == list(range(2400, 2500))
    assert {e["user"] for e in events} == {"agent7"}
    assert [e["seq"] for e in events] == list(range(1, 2501))


class RefusingLowSeverity:
    """An outbox over its quota: it accepts only drafts of medium severity and above."""

    kinds: dict[int, str] = {}  # noqa: RUF012 - shared with the test, which cannot reach the pipeline's instance

    def __init__(self) -> None:
        self.next_seq = 0

    def append(self, drafts: Sequence[EventDraft]) -> list[int]:
        accepted = [d for d in drafts if d.severity.rank >= 2]
        seqs = list(range(self.next_seq + 1, self.next_seq + 1 + len(accepted)))
        self.next_seq += len(accepted)
        RefusingLowSeverity.kinds.update(zip(seqs, (d.kind.value for d in accepted), strict=True))
        return seqs

    def set_quota(self, quota_bytes: int) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_notice_never_points_at_another_events_seq_when_the_quota_refused_some() -> None:
    collector = Enforcing(Outcome(Action.blocked))
    notices: list[Notice] = []
    pipeline = Pipeline(
        outbox_factory=RefusingLowSeverity,
        policy=lambda: PolicyDocument(version=1, controls=Controls(usb=UsbControl(mode="block"))),
        collector=lambda name: collector,
        user="agent7",
        on_notice=notices.append,
    )
    RefusingLowSeverity.kinds.clear()
    pipeline.record(EventDraft(kind=EventKind.agent_heartbeat))  # info: refused, shifts the positions
    pipeline.emit(usb_observation())
    pipeline.record(EventDraft(kind=EventKind.agent_heartbeat))  # may share the enforcement result's group
    pipeline.start()
    assert pipeline.flush(10)
    pipeline.stop()
    (notice,) = notices  # the block notice is shown whatever the quota refused
    assert notice.seq == 0 or RefusingLowSeverity.kinds[notice.seq] == "usb.blocked"


class Stalling(Collector):
    """Enforcement that hangs until the test lets it go (an unmount stuck on a busy device)."""

    id = "usb"

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def enforce(self, target: Any, decision: Decision) -> Outcome:
        self.release.wait(10)
        return Outcome(Action.blocked)


def test_a_stuck_enforcement_holds_up_nothing_else_and_is_recorded_as_a_timeout(
    tmp_path: Path, keys: OutboxKeys
) -> None:
    """Regression: a USB block could hold the whole pipeline for up to 24 s, so other events waited behind it."""
    collector = Stalling()
    policy = PolicyDocument(version=1, controls=Controls(usb=UsbControl(mode="block")))
    notices: list[Notice] = []
    pipeline = Pipeline(
        outbox_factory=lambda: Outbox(tmp_path / "outbox.db", keys=keys),
        policy=lambda: policy,
        collector=lambda name: collector,
        user="agent7",
        on_notice=notices.append,
        enforce_timeout=1.0,
    )
    pipeline.start()
    try:
        pipeline.emit(usb_observation())
        assert pipeline.record_batch([EventDraft(kind=EventKind.policy_acknowledged)], timeout=0.5), (
            "an event behind a stuck enforcement must still be recorded at once"
        )
        assert pipeline.flush(5)  # waits for the enforcement's deadline, not longer
        collector.release.set()  # the late outcome changes nothing already recorded
        assert pipeline.flush(5)
    finally:
        pipeline.stop()
    reader = Outbox(tmp_path / "outbox.db", keys=keys, check=False)
    try:
        events = {e["kind"]: e for e in reader.pending()}
    finally:
        reader.close()
    assert set(events) == {"policy.acknowledged", "usb.mounted"}
    assert events["usb.mounted"]["action"] == "failed"
    assert events["usb.mounted"]["data"]["error"] == "timeout"
    assert [n.outcome for n in notices] == [Action.failed]
