"""classify_events: which stored events raise an alert, by the class the event vocabulary gives their kind."""

from __future__ import annotations

from typing import Any

import pytest

from central.alerting.classify import TAMPER_KIND_ALERTS, classify_events
from central.reports.figures import VIOLATION_KINDS
from central.simulate import SimulatedAgent
from central.store import alerts
from policy_client.event_vocabulary import (
    DEVICE_CONTROLS,
    VIOLATION_ACTIONS,
    VOCABULARY,
    EventClass,
    enforced_kind,
    kinds_of,
)
from policy_client.schema import Action, Event, EventKind, Severity

AGENT = SimulatedAgent(device_id="desk-1")


def ev(kind: EventKind, action: Action = Action.observed, **fields: Any) -> Event:
    data = fields.pop("data", {"n": 1})
    severity = fields.pop("severity", Severity.medium)
    return AGENT.next_event(kind=kind, action=action.value, severity=severity, data=data)


def alerted(event: Event) -> list[tuple[str, str]]:
    return [(a.kind, a.severity) for a in classify_events([event])]


@pytest.mark.parametrize("kind", sorted(kinds_of(EventClass.violation, EventClass.containment)))
@pytest.mark.parametrize("action", list(Action), ids=lambda action: action.value)
def test_violation_and_containment_alert_only_for_a_violation_action(kind: EventKind, action: Action) -> None:
    expected = [(kind.value, "medium")] if action in VIOLATION_ACTIONS else []
    assert alerted(ev(kind, action)) == expected


def test_masked_and_cleared_copies_are_not_alerted_but_a_warned_one_is() -> None:
    assert alerted(ev(EventKind.clipboard_sensitive, Action.masked)) == []
    assert alerted(ev(EventKind.clipboard_sensitive, Action.cleared)) == []
    assert alerted(ev(EventKind.clipboard_sensitive, Action.warned, severity=Severity.low)) == [
        ("clipboard.sensitive", "low")
    ]


@pytest.mark.parametrize("kind", sorted(kinds_of(EventClass.attention)))
def test_attention_events_alert_whatever_their_action(kind: EventKind) -> None:
    data = {"gave_up": True} if kind is EventKind.agent_collector_failed else {"n": 1}
    for action in (Action.observed, Action.allowed):
        (alert,) = classify_events([ev(kind, action, data=data, severity=Severity.high)])
        assert (alert.kind, alert.severity) == (kind.value, "high")
        assert alert.data["event_id"]


def test_a_collector_restarted_within_its_budget_is_not_alerted_until_it_gives_up() -> None:
    assert alerted(ev(EventKind.agent_collector_failed, data={"collector": "usb", "restarts": 1})) == []
    assert alerted(ev(EventKind.agent_collector_failed, data={"collector": "usb", "gave_up": True})) == [
        ("agent.collector_failed", "medium")
    ]


def test_record_kinds_of_a_device_control_alert_only_a_failed_or_enforcing_action() -> None:
    assert alerted(ev(EventKind.download_released, Action.allowed)) == []
    assert alerted(ev(EventKind.download_released, Action.failed)) == [("download.released", "medium")]
    assert alerted(ev(EventKind.download_deleted, Action.failed)) == [("download.deleted", "medium")]
    assert alerted(ev(EventKind.usb_removed)) == []


@pytest.mark.parametrize(
    "kind",
    sorted(kinds_of(EventClass.record) - {k for k, f in VOCABULARY.items() if f.control in DEVICE_CONTROLS}),
)
def test_other_record_kinds_never_alert(kind: EventKind) -> None:
    assert [alerted(ev(kind, action)) for action in Action] == [[] for _ in Action]


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("helper_stopped", alerts.HELPER_STOPPED),
        ("helper_missing", alerts.HELPER_MISSING),
        ("unclean_stop", alerts.UNCLEAN_STOP),
        ("uninstall_refused", alerts.AGENT_TAMPER),
        ("unlock_refused", alerts.AGENT_TAMPER),
        (None, alerts.AGENT_TAMPER),
        (7, alerts.AGENT_TAMPER),
    ],
)
def test_agent_tamper_alerts_by_its_reason_at_least_high(reason: object, kind: str) -> None:
    data = {} if reason is None else {"reason": reason}
    assert alerted(ev(EventKind.agent_tamper, data=data, severity=Severity.low)) == [(kind, "high")]
    assert alerted(ev(EventKind.agent_tamper, data=data, severity=Severity.critical)) == [(kind, "critical")]


def test_a_missing_keyring_is_stored_not_alerted() -> None:
    assert alerted(ev(EventKind.agent_tamper, data={"reason": "keyring_unavailable"}, severity=Severity.low)) == []


def test_agent_stopped_alerts_as_medium_whatever_its_severity() -> None:
    assert alerted(ev(EventKind.agent_stopped, data={}, severity=Severity.info)) == [(alerts.AGENT_STOPPED, "medium")]
    assert alerted(ev(EventKind.agent_stopped, data={}, severity=Severity.high)) == [(alerts.AGENT_STOPPED, "medium")]


def test_every_tamper_kind_has_an_alert_kind_of_its_own() -> None:
    assert kinds_of(EventClass.tamper) == {EventKind.agent_tamper, *TAMPER_KIND_ALERTS}
    for kind in kinds_of(EventClass.tamper):
        for alert_kind, _severity in alerted(ev(kind, data={})):
            assert alert_kind.startswith("tamper.")


def test_alerts_keep_the_batch_order_and_carry_the_event_data() -> None:
    batch = [
        ev(EventKind.usb_blocked, Action.blocked, data={"vendor_id": "0781"}),
        ev(EventKind.agent_heartbeat),
        ev(EventKind.cleandesk_missed, data={"trigger": "scheduled"}),
    ]
    out = classify_events(batch)
    assert [(a.kind, a.event_seq) for a in out] == [("usb.blocked", batch[0].seq), ("cleandesk.missed", batch[2].seq)]
    assert out[0].data == {"event_id": str(batch[0].id), "vendor_id": "0781"}


@pytest.mark.parametrize(
    ("observed", "action"),
    [(facts.kind, action) for facts in VOCABULARY.values() for action in facts.enforced_as],
    ids=str,
)
def test_what_the_agent_records_for_an_enforcement_the_endpoint_alerts_and_reports_count(
    observed: EventKind, action: Action
) -> None:
    """Agent and endpoint agree: the kind the pipeline records an enforcement under is a containment the endpoint
    alerts, and the reports count it under the same control as the observation."""
    recorded = enforced_kind(observed, action)
    assert VOCABULARY[recorded].event_class is EventClass.containment
    assert alerted(ev(recorded, action)) == [(recorded.value, "medium")]
    assert VIOLATION_KINDS[recorded.value] == VIOLATION_KINDS[observed.value] == VOCABULARY[observed].control
