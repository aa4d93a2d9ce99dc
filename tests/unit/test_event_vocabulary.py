"""The one event vocabulary: every kind has its facts, and the agent reads them rather than keeping its own copy."""

from __future__ import annotations

import pytest

from agent_app.core import texts
from agent_app.core.decide import decide
from agent_app.core.supervisor import control_mode
from policy_client.event_vocabulary import (
    DEVICE_CONTROLS,
    POLICY_CONTROLS,
    VOCABULARY,
    EventClass,
    enforced_kind,
    kinds_of,
    label_of,
)
from policy_client.schema import Action, Controls, EventDraft, EventKind, PolicyDocument


def test_every_event_kind_has_one_entry_with_a_label() -> None:
    assert set(VOCABULARY) == set(EventKind), "add the new kind to policy_client/event_vocabulary.py"
    assert all(facts.kind is kind for kind, facts in VOCABULARY.items())
    labels = [facts.label for facts in VOCABULARY.values()]
    assert all(labels)
    assert len(set(labels)) == len(labels)
    assert kinds_of(*EventClass) == set(EventKind)


def test_kind_families_are_the_controls_named_by_their_prefix() -> None:
    for kind, facts in VOCABULARY.items():
        family = kind.value.split(".")[0]
        assert facts.control == family, kind


def test_every_containment_kind_records_an_enforcement_of_its_controls_observation() -> None:
    targets = {target: facts for facts in VOCABULARY.values() for target in facts.enforced_as.values()}
    assert set(targets) == kinds_of(EventClass.containment)
    for target, observed in targets.items():
        assert observed.event_class is EventClass.violation
        assert VOCABULARY[target].control == observed.control


def test_only_violations_are_decided_by_a_policy_control_of_a_device() -> None:
    for facts in VOCABULARY.values():
        assert (facts.policy_control is not None) == (facts.event_class is EventClass.violation), facts.kind
        if facts.policy_control is not None:
            assert facts.control in DEVICE_CONTROLS
    assert {"usb", "downloads", "clipboard", "screen_capture"} == POLICY_CONTROLS
    assert set(Controls.model_fields) >= POLICY_CONTROLS


@pytest.mark.parametrize("kind", list(EventKind), ids=lambda kind: kind.value)
def test_decide_applies_the_control_the_vocabulary_names(kind: EventKind) -> None:
    policy = PolicyDocument(version=3, controls=Controls())
    decision = decide(EventDraft(kind=kind, data={"vendor_id": "0781", "product_id": "5581"}), policy)
    control = VOCABULARY[kind].policy_control
    if control is None:
        assert (decision.action, decision.rule_id) == ("audit", "")
    else:
        assert decision.rule_id.startswith(control + ".")


def test_pipeline_enforcement_kinds_come_from_the_vocabulary() -> None:
    assert enforced_kind(EventKind.usb_mounted, Action.blocked) is EventKind.usb_blocked
    assert enforced_kind(EventKind.download_detected, Action.deleted) is EventKind.download_quarantined
    assert enforced_kind(EventKind.capture_tool_started, Action.terminated) is EventKind.capture_tool_terminated
    assert enforced_kind(EventKind.usb_mounted, Action.warned) is EventKind.usb_mounted
    assert enforced_kind(EventKind.clipboard_sensitive, Action.masked) is EventKind.clipboard_sensitive


def test_agent_labels_are_the_vocabularys() -> None:
    assert {facts.kind.value: facts.label for facts in VOCABULARY.values()} == texts.KIND_LABELS
    assert texts.kind_label("usb.blocked") == label_of("usb.blocked") == "USB storage blocked"
    assert texts.kind_label("tamper.seq_gap") == "tamper.seq_gap"


def test_collectors_of_a_policy_control_follow_its_mode() -> None:
    policy = PolicyDocument.model_validate({"version": 1, "controls": {"downloads": {"mode": "off"}}})
    assert control_mode("downloads", policy) == "off"
    assert control_mode("usb", policy) == policy.controls.usb.mode
    assert control_mode("some_collector_without_a_control", policy) == "audit"


DOCUMENTED_CLASSES = {
    "violation": {"usb.mounted", "download.detected", "clipboard.sensitive", "capture.tool_started", "capture.hotkey"},
    "containment": {"usb.blocked", "download.quarantined", "capture.tool_terminated"},
    "attention": {
        "usb.exception_requested",
        "cleandesk.missed",
        "policy.rejected",
        "agent.loss",
        "agent.dead_letter",
        "agent.collector_failed",
    },
    "tamper": {"agent.tamper", "agent.stopped"},
}
"""docs/events.md's "Classes" table, written out by hand: a kind moved to another class in the vocabulary changes
what alerts and what the reports count, so it must be a deliberate change here and in the docs too."""


def test_the_classes_are_the_ones_docs_events_md_documents() -> None:
    for name, kinds in DOCUMENTED_CLASSES.items():
        assert {kind.value for kind in kinds_of(EventClass(name))} == kinds, name
    documented = set().union(*DOCUMENTED_CLASSES.values())
    assert {kind.value for kind in kinds_of(EventClass.record)} == {k.value for k in EventKind} - documented
