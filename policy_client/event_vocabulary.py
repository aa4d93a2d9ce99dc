"""One vocabulary of event kinds: for each kind its control, its class, its label and its notice messages.

Defined once here, read by the agent (decide, pipeline, supervisor, notices, tray) and by the endpoint (alert
classification, reports). Pure frozen data and lookups; safe to call from any thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from policy_client.schema import Action, EventKind


class EventClass(StrEnum):
    """What an event of a kind means to a supervisor; the endpoint alerts and the reports count by it."""

    violation = "violation"
    """An observation the policy decides (a USB mount, a download, a copy, a capture): alerted when the person was
    warned, something was enforced, or enforcement failed; counted in the reports' access exceptions."""
    containment = "containment"
    """The record of an enforcement that contained a violation (blocked, quarantined, terminated): alerted and counted
    like a violation."""
    attention = "attention"
    """Needs a person whatever its action: a request to decide, a missed attestation, lost or refused data."""
    tamper = "tamper"
    """Evidence of tampering or of the agent going away: alerted under a `tamper.*` alert kind of its own."""
    record = "record"
    """Kept for audit and reports; alerted only when it belongs to a device control and its action is a violation
    action (an admin's release of a quarantined download that failed, say)."""


DEVICE_CONTROLS = frozenset({"usb", "download", "clipboard", "capture"})
"""Controls that act on the desk: a violation action (`VIOLATION_ACTIONS`) on any of their kinds is alerted."""

VIOLATION_ACTIONS = frozenset(
    {Action.warned, Action.blocked, Action.quarantined, Action.deleted, Action.terminated, Action.failed}
)
"""Actions a supervisor must see on a device control's event: the person was warned, something was enforced, or
enforcement failed. Audit-only observations and protective rewrites (masked, cleared) are counted, not alerted."""


@dataclass(frozen=True)
class KindFacts:
    """Everything agent and endpoint know about one event kind."""

    kind: EventKind
    control: str
    """The control the kind belongs to, as reports group it: usb, download, clipboard, capture, cleandesk, policy,
    violation (a person's justification) or agent."""
    event_class: EventClass
    label: str
    """What a person reads for the kind (tray history, notices, supervisor notifications)."""
    policy_control: str | None = None
    """The `PolicyDocument.controls` entry (and collector id) whose mode `decide` applies to the kind; only kinds of
    class violation have one."""
    enforced_as: Mapping[Action, EventKind] = field(default_factory=lambda: MappingProxyType({}))
    """The kind an observation of this kind is recorded under when enforcement acted on it."""


def _facts(
    kind: EventKind,
    control: str,
    event_class: EventClass,
    label: str,
    *,
    policy_control: str | None = None,
    enforced_as: Mapping[Action, EventKind] | None = None,
) -> KindFacts:
    return KindFacts(kind, control, event_class, label, policy_control, MappingProxyType(dict(enforced_as or {})))


_V, _C, _A, _T, _R = (
    EventClass.violation,
    EventClass.containment,
    EventClass.attention,
    EventClass.tamper,
    EventClass.record,
)
_K = EventKind

VOCABULARY: Mapping[EventKind, KindFacts] = MappingProxyType(
    {
        facts.kind: facts
        for facts in (
            _facts(
                _K.usb_mounted,
                "usb",
                _V,
                "USB storage connected",
                policy_control="usb",
                enforced_as={Action.blocked: _K.usb_blocked},
            ),
            _facts(_K.usb_blocked, "usb", _C, "USB storage blocked"),
            _facts(_K.usb_removed, "usb", _R, "USB storage removed"),
            _facts(_K.usb_exception_requested, "usb", _A, "Exception requested"),
            _facts(
                _K.download_detected,
                "download",
                _V,
                "Download",
                policy_control="downloads",
                enforced_as={Action.quarantined: _K.download_quarantined, Action.deleted: _K.download_quarantined},
            ),
            _facts(_K.download_quarantined, "download", _C, "Download quarantined"),
            _facts(_K.download_released, "download", _R, "Download released"),
            _facts(_K.download_deleted, "download", _R, "Quarantined download deleted"),
            _facts(_K.clipboard_sensitive, "clipboard", _V, "Customer data copied", policy_control="clipboard"),
            _facts(
                _K.capture_tool_started,
                "capture",
                _V,
                "Screen-capture tool started",
                policy_control="screen_capture",
                enforced_as={Action.terminated: _K.capture_tool_terminated},
            ),
            _facts(_K.capture_tool_terminated, "capture", _C, "Screen-capture tool closed"),
            _facts(_K.capture_hotkey, "capture", _V, "Screenshot key pressed", policy_control="screen_capture"),
            _facts(_K.policy_updated, "policy", _R, "Policy updated"),
            _facts(_K.policy_rejected, "policy", _A, "Policy rejected"),
            _facts(_K.policy_acknowledged, "policy", _R, "Policy acknowledged"),
            _facts(_K.cleandesk_prompted, "cleandesk", _R, "Clean-desk check shown"),
            _facts(_K.cleandesk_attested, "cleandesk", _R, "Clean-desk check confirmed"),
            _facts(_K.cleandesk_missed, "cleandesk", _A, "Clean-desk check missed"),
            _facts(_K.violation_justified, "violation", _R, "Reason given"),
            _facts(_K.agent_started, "agent", _R, "DeskWarden started"),
            _facts(_K.agent_stopped, "agent", _T, "DeskWarden stopped"),
            _facts(_K.agent_heartbeat, "agent", _R, "Health check"),
            _facts(_K.agent_collector_failed, "agent", _A, "Monitoring problem"),
            _facts(_K.agent_tamper, "agent", _T, "Tamper warning"),
            _facts(_K.agent_loss, "agent", _A, "Events lost"),
            _facts(_K.agent_dead_letter, "agent", _A, "Events refused"),
            _facts(_K.agent_unlock_used, "agent", _R, "Unlock token used"),
        )
    }
)
"""Every `EventKind`, once (tests/unit/test_event_vocabulary.py checks that none is missing)."""

NOTICE_MESSAGES: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        ("usb", "warn"): "This USB storage device is not approved for customer data. Explain why you need it.",
        ("usb", "block"): "This USB storage device is not approved, so DeskWarden removed it.",
        ("usb", "read_only"): "This USB storage device is not approved, so DeskWarden made it read-only.",
        ("downloads", "warn"): "This download breaks the download policy. Explain why you need it.",
        ("downloads", "quarantine"): "This download broke the download policy, so DeskWarden moved it to quarantine.",
        ("downloads", "delete"): "This download broke the download policy, so DeskWarden deleted it.",
        ("downloads_encrypted", "warn"): "This download is encrypted, so DeskWarden could not check it for customer "
        "data. Explain why you need it.",
        ("downloads_encrypted", "quarantine"): "This download is encrypted, so DeskWarden could not check it for "
        "customer data and moved it to quarantine.",
        ("clipboard", "warn"): "You copied customer data. Explain why you need it on the clipboard.",
        ("clipboard", "mask"): "You copied customer data, so DeskWarden masked it on the clipboard.",
        ("clipboard", "clear"): "You copied customer data, so DeskWarden cleared the clipboard.",
        ("screen_capture", "warn"): "A screen-capture tool was used. Explain why you need it.",
        ("screen_capture", "terminate"): "Screen-capture tools are not allowed on this desk, so DeskWarden closed it.",
        ("screen_capture", "clear"): "Screenshots are not allowed on this desk, so DeskWarden cleared the screenshot.",
    }
)
"""The notice shown at the desk, by (policy control, decision action); `downloads_encrypted` is the download control
deciding a download it could not check."""

POLICY_CONTROLS = frozenset(f.policy_control for f in VOCABULARY.values() if f.policy_control is not None)
"""The policy controls `decide` applies, which are also the ids of the collectors that serve them."""


def facts_of(kind: EventKind) -> KindFacts:
    return VOCABULARY[kind]


def kinds_of(*classes: EventClass) -> frozenset[EventKind]:
    """The kinds whose class is one of `classes`."""
    return frozenset(f.kind for f in VOCABULARY.values() if f.event_class in classes)


_LABELS = {f.kind.value: f.label for f in VOCABULARY.values()}


def label_of(kind: str) -> str:
    """The human label of a kind given as its string; an unknown kind (an alert kind such as `tamper.seq_gap`, say)
    reads as itself."""
    return _LABELS.get(kind, kind)


def notice_message(policy_control: str, action: str) -> str:
    """The notice for a decision, or "" when the decision shows none."""
    return NOTICE_MESSAGES.get((policy_control, action), "")


def enforced_kind(kind: EventKind, action: Action) -> EventKind:
    """The kind an observation of `kind` is recorded under once enforcement ended with `action`."""
    return VOCABULARY[kind].enforced_as.get(action, kind)
