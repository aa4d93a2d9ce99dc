"""Which newly stored events raise an alert, and under what kind and severity: a pure function of the events, driven
by the event vocabulary (policy_client/event_vocabulary.py).

The store stores; this decides. The HTTP layer hands `classify_events` to `ingest_batch`, which calls it on a
request worker thread inside the batch's transaction. Integrity alerts (broken chain, seq gap, seq reuse, forged
unlock token) are facts the store detects and are not made here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from central.store.alerts import AGENT_STOPPED, AGENT_TAMPER, HELPER_MISSING, HELPER_STOPPED, UNCLEAN_STOP, NewAlert
from policy_client.event_vocabulary import DEVICE_CONTROLS, VIOLATION_ACTIONS, VOCABULARY, EventClass, kinds_of
from policy_client.schema import Event, EventKind, Severity

TAMPER_KIND_ALERTS: Mapping[EventKind, tuple[str, Severity]] = {
    EventKind.agent_stopped: (AGENT_STOPPED, Severity.medium)
}
"""Tamper-class kinds alerted under a kind of their own at a fixed severity; `agent.tamper` goes by its reason."""

TAMPER_REASON_ALERTS: Mapping[str, str | None] = {
    "helper_stopped": HELPER_STOPPED,
    "helper_missing": HELPER_MISSING,
    "unclean_stop": UNCLEAN_STOP,
    # Expected where the OS has no usable keyring (headless and some VDI desks): stored, not alerted.
    "keyring_unavailable": None,
}
"""`agent.tamper` alert kind by `data.reason`, at least high; None stores the event without an alert; any other
reason (or none) alerts as `tamper.agent_reported`."""

# Plain-string sets: a set lookup keyed by an enum member calls `Enum.__hash__`, a Python function, and most events
# of a batch are audit observations that must be skipped cheaply.
_ON_VIOLATION = frozenset(
    facts.kind.value
    for facts in VOCABULARY.values()
    if facts.control in DEVICE_CONTROLS and facts.event_class not in (EventClass.attention, EventClass.tamper)
)
"""A device control's kinds, alerted when their action is a violation action."""
_VIOLATION_ACTIONS = frozenset(action.value for action in VIOLATION_ACTIONS)
_ATTENTION = frozenset(kind.value for kind in kinds_of(EventClass.attention))
_TAMPER = frozenset(kind.value for kind in kinds_of(EventClass.tamper))


def classify_events(events: Sequence[Event]) -> list[NewAlert]:
    """The alerts `events` raise, in their order: a device control's event whose action is a violation action, an
    attention event (a crashed collector only once it gave up), and tamper evidence under its `tamper.*` kind."""
    out: list[NewAlert] = []
    for ev in events:
        kind_value = ev.kind._value_
        if kind_value in _ON_VIOLATION:
            if ev.action._value_ not in _VIOLATION_ACTIONS:
                continue
            kind, severity = kind_value, ev.severity
        elif kind_value in _ATTENTION:
            if ev.kind is EventKind.agent_collector_failed and not ev.data.get("gave_up"):
                continue  # restarted within its budget; the agent.collector_failed event itself is enough
            kind, severity = kind_value, ev.severity
        elif kind_value in _TAMPER:
            tamper = tamper_alert(ev)
            if tamper is None:
                continue  # a reason that is stored without an alert
            kind, severity = tamper
        else:
            continue
        out.append(
            NewAlert(kind=kind, severity=severity.value, event_seq=ev.seq, data={"event_id": str(ev.id), **ev.data})
        )
    return out


def tamper_alert(event: Event) -> tuple[str, Severity] | None:
    """The alert kind and severity of a tamper-class event, or None when its reason is stored without an alert."""
    fixed = TAMPER_KIND_ALERTS.get(event.kind)
    if fixed is not None:
        return fixed
    reason = event.data.get("reason")
    kind = TAMPER_REASON_ALERTS.get(reason, AGENT_TAMPER) if isinstance(reason, str) else AGENT_TAMPER
    if kind is None:
        return None
    severity = event.severity if event.severity.rank >= Severity.high.rank else Severity.high
    return kind, severity
