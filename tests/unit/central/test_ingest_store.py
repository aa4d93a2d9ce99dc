"""The store's ingest path: exactly-once storage per (device_id, seq) and the per-device HMAC chain checks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from central.alerting.classify import classify_events
from central.runtime import Runtime
from central.store import alerts, devices, events, tables
from central.store.ingest import DeviceGone, ingest_batch
from policy_client.schema import Event, EventKind, Severity
from tests.unit.central.conftest import enroll_agent


def _count_events(runtime: Runtime, device_id: str) -> int:
    with runtime.db.read() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(tables.events).where(tables.events.c.device_id == device_id)
            ).scalar_one()
        )


def _alert_kinds(runtime: Runtime, device_id: str) -> list[str]:
    return [a["kind"] for a in alerts.list_alerts(runtime.db, device_id=device_id)]


def _forged(event: Event) -> Event:
    """The same event with its data changed after the agent chained it (the mac no longer fits)."""
    return event.model_copy(update={"data": {"detector": "card", "count": 99}})


def test_batch_is_stored_once_and_a_replay_counts_only_duplicates(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    batch = agent.batch(agent.events(500))

    first = ingest_batch(runtime.db, agent.device_id, batch, now=runtime.clock(), classify=classify_events)
    replay = ingest_batch(runtime.db, agent.device_id, batch, now=runtime.clock(), classify=classify_events)

    assert (first.accepted, first.duplicates) == (500, 0)
    assert (replay.accepted, replay.duplicates) == (0, 500)
    assert _count_events(runtime, agent.device_id) == 500
    assert _alert_kinds(runtime, agent.device_id) == []


def test_overlapping_batch_stores_only_the_new_part_and_keeps_the_chain(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    events = agent.events(15)
    ingest_batch(runtime.db, agent.device_id, agent.batch(events[:10]), now=runtime.clock(), classify=classify_events)

    outcome = ingest_batch(
        runtime.db, agent.device_id, agent.batch(events[4:]), now=runtime.clock(), classify=classify_events
    )

    assert (outcome.accepted, outcome.duplicates) == (5, 6)
    assert _count_events(runtime, agent.device_id) == 15
    assert _alert_kinds(runtime, agent.device_id) == []


def test_same_seq_twice_in_one_batch_is_one_event_and_one_duplicate(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    events = agent.events(3)

    outcome = ingest_batch(
        runtime.db, agent.device_id, agent.batch([*events, events[1]]), now=runtime.clock(), classify=classify_events
    )

    assert (outcome.accepted, outcome.duplicates) == (3, 1)
    assert _count_events(runtime, agent.device_id) == 3


def test_seq_gap_is_alerted_once_and_filling_it_later_raises_nothing(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    events = agent.events(10)
    ingest_batch(runtime.db, agent.device_id, agent.batch(events[:5]), now=runtime.clock(), classify=classify_events)

    ingest_batch(runtime.db, agent.device_id, agent.batch(events[8:]), now=runtime.clock(), classify=classify_events)
    raised = alerts.list_alerts(runtime.db, device_id=agent.device_id)
    assert [a["kind"] for a in raised] == [alerts.SEQ_GAP]
    assert raised[0]["data"]["missing_ranges"] == [[6, 8]]
    assert raised[0]["data"]["missing_count"] == 3
    assert raised[0]["team"] == "collections"
    assert raised[0]["status"] == "open"

    late = ingest_batch(
        runtime.db, agent.device_id, agent.batch(events[5:8]), now=runtime.clock(), classify=classify_events
    )
    assert late.accepted == 3
    assert _alert_kinds(runtime, agent.device_id) == [alerts.SEQ_GAP]
    listed = devices.list_devices(runtime.db, now=runtime.clock(), offline_after=timedelta(minutes=3))
    assert listed[0]["missing_events"] == 0
    assert listed[0]["last_seq"] == 10


def test_gap_filled_out_of_order_in_pieces_raises_nothing_more(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    events = agent.events(12)
    for piece in (events[0:2], events[10:12], events[6:8], events[2:4], events[8:10], events[4:6]):
        ingest_batch(runtime.db, agent.device_id, agent.batch(piece), now=runtime.clock(), classify=classify_events)

    assert _alert_kinds(runtime, agent.device_id) == [alerts.SEQ_GAP]
    assert _count_events(runtime, agent.device_id) == 12
    with runtime.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(tables.chain_pending)).scalar_one() == 0


def test_first_batch_not_starting_at_one_is_a_gap(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    events = agent.events(4)

    ingest_batch(runtime.db, agent.device_id, agent.batch(events[2:]), now=runtime.clock(), classify=classify_events)

    raised = alerts.list_alerts(runtime.db, device_id=agent.device_id)
    assert raised[0]["data"]["missing_ranges"] == [[1, 2]]


def test_altered_event_breaks_the_chain(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    events = agent.events(6)
    events[3] = _forged(events[3])

    outcome = ingest_batch(
        runtime.db, agent.device_id, agent.batch(events), now=runtime.clock(), classify=classify_events
    )

    assert outcome.accepted == 6
    raised = alerts.list_alerts(runtime.db, device_id=agent.device_id)
    assert [(a["kind"], a["event_seq"]) for a in raised] == [(alerts.CHAIN_BROKEN, 4)]
    assert raised[0]["severity"] == "high"


def test_broken_link_across_batches_uses_the_stored_chain_head(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    events = agent.events(6)
    ingest_batch(runtime.db, agent.device_id, agent.batch(events[:3]), now=runtime.clock(), classify=classify_events)

    ingest_batch(
        runtime.db,
        agent.device_id,
        agent.batch([_forged(events[3]), *events[4:]]),
        now=runtime.clock(),
        classify=classify_events,
    )

    assert [(a["kind"], a["event_seq"]) for a in alerts.list_alerts(runtime.db)] == [(alerts.CHAIN_BROKEN, 4)]


def test_forged_event_after_a_gap_is_caught_when_the_gap_fills(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    events = agent.events(6)
    ingest_batch(runtime.db, agent.device_id, agent.batch(events[:3]), now=runtime.clock(), classify=classify_events)
    ingest_batch(
        runtime.db,
        agent.device_id,
        agent.batch([_forged(events[4]), events[5]]),
        now=runtime.clock(),
        classify=classify_events,
    )
    assert _alert_kinds(runtime, agent.device_id) == [alerts.SEQ_GAP]

    ingest_batch(runtime.db, agent.device_id, agent.batch([events[3]]), now=runtime.clock(), classify=classify_events)

    raised = alerts.list_alerts(runtime.db, device_id=agent.device_id)
    assert [(a["kind"], a["event_seq"]) for a in raised] == [(alerts.SEQ_GAP, 5), (alerts.CHAIN_BROKEN, 5)]


def test_forged_event_filling_a_gap_is_caught(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    events = agent.events(6)
    ingest_batch(
        runtime.db,
        agent.device_id,
        agent.batch([*events[:3], *events[4:]]),
        now=runtime.clock(),
        classify=classify_events,
    )

    ingest_batch(
        runtime.db, agent.device_id, agent.batch([_forged(events[3])]), now=runtime.clock(), classify=classify_events
    )

    kinds = [(a["kind"], a["event_seq"]) for a in alerts.list_alerts(runtime.db, device_id=agent.device_id)]
    assert kinds == [(alerts.SEQ_GAP, 5), (alerts.CHAIN_BROKEN, 4)]


def test_events_chained_with_another_key_break_the_chain(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    impostor = enroll_agent(runtime)
    impostor.device_id = agent.device_id

    ingest_batch(
        runtime.db, agent.device_id, impostor.batch(impostor.events(2)), now=runtime.clock(), classify=classify_events
    )

    assert _alert_kinds(runtime, agent.device_id) == [alerts.CHAIN_BROKEN, alerts.CHAIN_BROKEN]


def test_agent_tamper_and_stopped_events_raise_alerts(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    events = [
        agent.next_event(kind=EventKind.agent_tamper, severity=Severity.low, data={"reason": "key file fallback"}),
        agent.next_event(kind=EventKind.usb_mounted),
        agent.next_event(kind=EventKind.agent_stopped, severity=Severity.info, data={}),
    ]

    ingest_batch(runtime.db, agent.device_id, agent.batch(events), now=runtime.clock(), classify=classify_events)

    raised = alerts.list_alerts(runtime.db, device_id=agent.device_id)
    assert [(a["kind"], a["event_seq"], a["severity"]) for a in raised] == [
        (alerts.AGENT_TAMPER, 1, "high"),
        (alerts.AGENT_STOPPED, 3, "medium"),
    ]
    assert raised[0]["data"]["reason"] == "key file fallback"


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("helper_stopped", alerts.HELPER_STOPPED),
        ("helper_missing", alerts.HELPER_MISSING),
        ("unclean_stop", alerts.UNCLEAN_STOP),
        ("uninstall_refused", alerts.AGENT_TAMPER),
        (None, alerts.AGENT_TAMPER),
        (7, alerts.AGENT_TAMPER),
    ],
)
def test_agent_tamper_alert_kind_follows_the_reported_reason(runtime: Runtime, reason: object, kind: str) -> None:
    agent = enroll_agent(runtime)
    data = {} if reason is None else {"reason": reason}
    event = agent.next_event(kind=EventKind.agent_tamper, severity=Severity.medium, data=data)

    ingest_batch(runtime.db, agent.device_id, agent.batch([event]), now=runtime.clock(), classify=classify_events)

    raised = alerts.list_alerts(runtime.db, device_id=agent.device_id)
    assert [(a["kind"], a["severity"], a["event_seq"]) for a in raised] == [(kind, "high", 1)]


def test_keyring_unavailable_is_stored_but_not_alerted(runtime: Runtime) -> None:
    """It is expected where no keyring exists, and drowned real tamper alerts (22 of 40 in a demo)."""
    agent = enroll_agent(runtime)
    event = agent.next_event(
        kind=EventKind.agent_tamper, severity=Severity.high, data={"reason": "keyring_unavailable", "detail": "x"}
    )

    outcome = ingest_batch(
        runtime.db, agent.device_id, agent.batch([event]), now=runtime.clock(), classify=classify_events
    )

    assert (outcome.accepted, outcome.alerts) == (1, ())
    assert _alert_kinds(runtime, agent.device_id) == []
    stored = events.list_events(runtime.db, device_id=agent.device_id, kind="agent.tamper")
    assert [e["data"]["reason"] for e in stored] == ["keyring_unavailable"]


def test_replayed_tamper_event_does_not_alert_twice(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    batch = agent.batch([agent.next_event(kind=EventKind.agent_stopped)])

    ingest_batch(runtime.db, agent.device_id, batch, now=runtime.clock(), classify=classify_events)
    ingest_batch(runtime.db, agent.device_id, batch, now=runtime.clock(), classify=classify_events)

    assert _alert_kinds(runtime, agent.device_id) == [alerts.AGENT_STOPPED]


def test_devices_keep_separate_chains_and_seqs(runtime: Runtime) -> None:
    one, two = enroll_agent(runtime, team="a"), enroll_agent(runtime, team="b")

    for agent in (one, two):
        outcome = ingest_batch(
            runtime.db, agent.device_id, agent.batch(agent.events(20)), now=runtime.clock(), classify=classify_events
        )
        assert outcome.accepted == 20

    assert _count_events(runtime, one.device_id) == _count_events(runtime, two.device_id) == 20
    assert alerts.list_alerts(runtime.db) == []


def test_ingest_updates_last_seen_and_user(runtime: Runtime) -> None:
    agent = enroll_agent(runtime, user="first")
    agent.user = "second"
    runtime.clock.advance(timedelta(minutes=10))  # type: ignore[attr-defined]

    ingest_batch(
        runtime.db, agent.device_id, agent.batch(agent.events(2)), now=runtime.clock(), classify=classify_events
    )

    (listed,) = devices.list_devices(runtime.db, now=runtime.clock(), offline_after=timedelta(minutes=3))
    assert listed["user"] == "second"
    assert listed["last_seen"] == runtime.clock().isoformat()
    assert listed["online"] is True


def test_revoked_device_cannot_ingest(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    assert devices.revoke_device(runtime.db, agent.device_id, now=runtime.clock())

    with pytest.raises(DeviceGone):
        ingest_batch(
            runtime.db, agent.device_id, agent.batch(agent.events(1)), now=runtime.clock(), classify=classify_events
        )


def test_event_time_with_an_offset_is_stored_as_the_same_instant(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    local = datetime(2026, 4, 1, 14, 30, 15, 250000, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    event = agent.next_event(ts=local)

    ingest_batch(runtime.db, agent.device_id, agent.batch([event]), now=runtime.clock(), classify=classify_events)

    (stored,) = events.list_events(runtime.db, device_id=agent.device_id)
    assert datetime.fromisoformat(stored["ts"]) == local
    assert stored["ts"].endswith("+00:00")
    assert alerts.list_alerts(runtime.db) == []


def test_enforced_and_warned_control_events_alert_supervisors_and_audits_do_not(runtime: Runtime) -> None:
    agent = enroll_agent(runtime)
    events = [
        agent.next_event(kind=EventKind.usb_mounted, action="observed"),  # audit mode: recorded only
        agent.next_event(kind=EventKind.usb_blocked, severity=Severity.high, action="blocked"),
        agent.next_event(kind=EventKind.clipboard_sensitive, action="masked"),  # protected, counted in reports
        agent.next_event(kind=EventKind.clipboard_sensitive, action="warned"),
        agent.next_event(kind=EventKind.download_quarantined, severity=Severity.high, action="quarantined"),
        agent.next_event(kind=EventKind.capture_tool_started, action="failed"),
        agent.next_event(kind=EventKind.usb_exception_requested, severity=Severity.low, action="observed"),
        agent.next_event(kind=EventKind.agent_collector_failed, action="observed", data={"gave_up": False}),
        agent.next_event(kind=EventKind.agent_collector_failed, action="observed", data={"gave_up": True}),
    ]

    ingest_batch(runtime.db, agent.device_id, agent.batch(events), now=runtime.clock(), classify=classify_events)

    raised = alerts.list_alerts(runtime.db, device_id=agent.device_id)
    assert sorted((a["event_seq"], a["kind"], a["severity"]) for a in raised) == [
        (2, "usb.blocked", "high"),
        (4, "clipboard.sensitive", "medium"),
        (5, "download.quarantined", "high"),
        (6, "capture.tool_started", "medium"),
        (7, "usb.exception_requested", "low"),
        (9, "agent.collector_failed", "medium"),
    ]
