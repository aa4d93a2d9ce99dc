"""The sentences of "What was reported about me": one per event kind, never a dumped dict or a hidden value."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_app.core import texts
from agent_app.core.history_text import KNOWN_KINDS, describe, duration_phrase, history_row, size_phrase
from policy_client.schema import Action, EventKind

HASH = "0b26c1f3d9e2a7b8"
CARD = {"type": "card", "count": 2, "sample": "XXXX XXXX XXXX 1111", "hash": HASH}
EMAIL = {"type": "email", "count": 1, "sample": "p****@example.com", "hash": "77aa01"}
USB = {
    "vendor_id": "0781",
    "product_id": "5581",
    "serial": "4C530001",
    "bus": "usb",
    "label": "SANDISK",
    "filesystem": "vfat",
    "size_bytes": 31914983424,
    "mount_point": "/media/priya/SANDISK",
}

# The action and data each kind carries as collectors, prompts and the runtime raise it (docs/events.md).
EXAMPLES: dict[EventKind, tuple[str, dict[str, Any], str]] = {
    EventKind.usb_mounted: ("warned", USB, "You connected the USB stick “SANDISK” (0781:5581); DeskWarden asked you"),
    EventKind.usb_blocked: ("blocked", USB, "The USB stick “SANDISK” (0781:5581) was blocked"),
    EventKind.usb_removed: ("observed", USB, "The USB stick “SANDISK” (0781:5581) was removed"),
    EventKind.usb_exception_requested: (
        "observed",
        {"vendor_id": "0781", "product_id": "5581", "serial": "4C530001", "minutes": 240, "reason": "auditor forms"},
        "You asked to use the USB stick 0781:5581 for 4 hours: “auditor forms”",
    ),
    EventKind.download_detected: (
        "warned",
        {
            "name": "rates.exe",
            "extension": ".exe",
            "size_bytes": 2_100_000,
            "sha256": "ab" * 32,
            "folder": "/home/priya/Downloads",
            "blocked_extension": True,
            "oversize": False,
            "findings": [],
            "scan_truncated": False,
        },
        "You downloaded “rates.exe” (2.1 MB): file type .exe not allowed; DeskWarden asked you for a reason",
    ),
    EventKind.download_quarantined: (
        "quarantined",
        {"name": "statement.pdf", "extension": ".pdf", "size_bytes": 48_000, "findings": [CARD], "quarantine_id": "q1"},
        "You downloaded “statement.pdf” (48.0 KB): contains 2 card numbers; DeskWarden moved it to quarantine "
        "(XXXX XXXX XXXX 1111)",
    ),
    EventKind.download_released: (
        "allowed",
        {"command_id": "91c2a7b8d4e5f601", "quarantine_id": "q1", "issued_by": "ada"},
        "An administrator released a quarantined download back to your Downloads",
    ),
    EventKind.download_deleted: (
        "failed",
        {"command_id": "91c2a7b8d4e5f601", "quarantine_id": "q1", "error": "not in quarantine"},
        "An administrator had a quarantined download deleted; DeskWarden tried to act but could not",
    ),
    EventKind.clipboard_sensitive: (
        "masked",
        {"findings": [CARD], "length": 40, "format": "text/plain", "scan_truncated": False},
        "You copied 2 card numbers; the clipboard was masked (XXXX XXXX XXXX 1111)",
    ),
    EventKind.capture_tool_started: (
        "warned",
        {"name": "flameshot", "exe": "/usr/bin/flameshot", "pid": 4242, "same_user": True},
        "The screen-capture tool “flameshot” was started; DeskWarden asked you for a reason",
    ),
    EventKind.capture_tool_terminated: (
        "terminated",
        {"name": "SnippingTool.exe", "exe": "C:\\Windows\\SnippingTool.exe", "pid": 77, "same_user": True},
        "The screen-capture tool “SnippingTool.exe” was started; DeskWarden closed it",
    ),
    EventKind.capture_hotkey: (
        "cleared",
        {"shortcut": "PrintScreen"},
        "You pressed the screenshot shortcut PrintScreen; DeskWarden removed the screenshot from the clipboard",
    ),
    EventKind.policy_updated: (
        "observed",
        {"version": 8, "previous_version": 7, "key_id": "k1"},
        "Policy version 8 came into force (replacing version 7)",
    ),
    EventKind.policy_rejected: (
        "observed",
        {"reason": "rollback", "message": "offered 5 < 7", "offered_version": 5, "current_version": 7},
        "A policy update (version 5) was refused because it was older than the policy in force; "
        "the policy in force stays",
    ),
    EventKind.policy_acknowledged: (
        "observed",
        {"version": 7, "text_sha256": "5d41" * 16},
        "You acknowledged the policy version 7",
    ),
    EventKind.cleandesk_prompted: (
        "observed",
        {"trigger": "idle_return", "items": 3, "snoozes": 0},
        "The clean-desk check was shown when you came back",
    ),
    EventKind.cleandesk_attested: (
        "observed",
        {"trigger": "scheduled", "items": 3, "snoozes": 1},
        "You confirmed the clean-desk check (3 items) after 1 reminder",
    ),
    EventKind.cleandesk_missed: (
        "observed",
        {"trigger": "scheduled", "items": 3, "snoozes": 2},
        "The clean-desk check was not confirmed in time after 2 reminders",
    ),
    EventKind.violation_justified: (
        "observed",
        {"ref_seq": 311, "rule": "clipboard.warn", "reason": "Customer requested it", "text": "", "timed_out": False},
        "You gave a reason: “Customer requested it”",
    ),
    EventKind.agent_started: (
        "observed",
        {"version": "0.4.0", "unclean_previous_stop": True, "pid": 812},
        "DeskWarden started (version 0.4.0) after an unexpected stop",
    ),
    EventKind.agent_stopped: ("observed", {"reason": "logout"}, "DeskWarden stopped: you logged off"),
    EventKind.agent_heartbeat: ("observed", {}, "DeskWarden reported that it is running"),
    EventKind.agent_collector_failed: (
        "observed",
        {"collector": "clipboard", "error": "RuntimeError", "restarts": 3, "gave_up": True},
        "Monitoring of the clipboard stopped working and could not be restarted",
    ),
    EventKind.agent_tamper: (
        "observed",
        {"reason": "uninstall_refused"},
        "An attempt to uninstall DeskWarden without an unlock token was refused",
    ),
    EventKind.agent_loss: (
        "observed",
        {"reason": "quota", "dropped": {"agent.heartbeat": 40}, "count": 40},
        "40 events could not be kept on this PC (the storage limit was reached)",
    ),
    EventKind.agent_dead_letter: (
        "failed",
        {"count": 3, "first_seq": 10, "last_seq": 12, "seqs": [10, 11, 12], "status": 422, "detail": "bad"},
        "The DeskWarden server refused 3 events",
    ),
    EventKind.agent_unlock_used: (
        "observed",
        {"token_id": "91c2a7b8d4e5f601", "scope": "quit", "minutes": 30},
        "An unlock token from your administrator was used to quit DeskWarden for 30 minutes",
    ),
}


def test_every_event_kind_has_a_sentence_and_a_label() -> None:
    assert set(EXAMPLES) == set(EventKind), "add an example (and a sentence) for the new kind"
    assert {kind.value for kind in EventKind} <= KNOWN_KINDS
    assert {kind.value for kind in EventKind} <= set(texts.KIND_LABELS)


@pytest.mark.parametrize("kind", list(EventKind), ids=lambda kind: kind.value)
def test_each_kind_reads_as_one_plain_sentence(kind: EventKind) -> None:
    action, data, expected = EXAMPLES[kind]
    sentence = describe(kind.value, action, data)
    assert sentence.startswith(expected)
    assert sentence != texts.H_UNKNOWN.format(kind=kind.value)
    assert not any(mark in sentence for mark in ("{", "}", "[", "]", "None", "True", "False", "\n"))
    for hidden in (HASH, "ab" * 32, "/media/priya", "91c2a7b8d4e5f601", "RuntimeError", "4242", "q1"):
        assert hidden not in sentence


def test_unknown_kind_gets_the_fallback_sentence_without_its_data() -> None:
    sentence = describe("printer.job", "observed", {"document": "salary list.xlsx", "pages": 3})
    assert sentence == "DeskWarden recorded an event of type “printer.job”"


def test_clipboard_with_several_detectors_names_each_with_its_masked_sample() -> None:
    sentence = describe("clipboard.sensitive", "cleared", {"findings": [CARD, EMAIL]})
    assert sentence == (
        "You copied 2 card numbers and 1 e-mail address; the clipboard was cleared "
        "(XXXX XXXX XXXX 1111, p****@example.com)"
    )


def test_failed_enforcement_says_deskwarden_could_not_act() -> None:
    assert describe("usb.mounted", "failed", USB).endswith("; DeskWarden tried to act but could not")


def test_read_only_usb_says_so() -> None:
    assert describe("usb.blocked", "blocked", {**USB, "read_only": True}) == (
        "The USB stick “SANDISK” (0781:5581) was allowed read-only"
    )


def test_usb_without_label_or_ids_still_reads() -> None:
    assert describe("usb.blocked", "blocked", {"vendor_id": "0781", "product_id": "5581"}) == (
        "The USB stick 0781:5581 was blocked"
    )
    assert describe("usb.removed", "observed", {}) == "A USB stick was removed"


def test_timed_out_justification_names_the_recorded_default() -> None:
    data = {"reason": "No justification given", "text": "", "timed_out": True}
    assert describe("violation.justified", "observed", data) == (
        "No reason was given in time, so “No justification given” was recorded"
    )


def test_free_text_is_one_line_and_shortened() -> None:
    data = {"reason": "other", "text": "line one\nline two " + "x" * 200, "timed_out": False}
    sentence = describe("violation.justified", "observed", data)
    assert "\n" not in sentence
    assert sentence.startswith("You gave a reason: “line one line two x")
    assert sentence.endswith("…”")


def test_history_row_has_time_label_outcome_and_rule() -> None:
    event = {
        "ts": "2025-03-03T09:00:00+00:00",
        "kind": "usb.blocked",
        "action": "blocked",
        "severity": "high",
        "rule": {"id": "usb.block", "policy_version": 7},
        "data": USB,
        "mac": "f" * 64,
        "sent": True,
    }
    row = history_row(event, tz=timezone(timedelta(hours=5, minutes=30)))
    assert row.cells() == [
        "2025-03-03 14:30:00",
        texts.kind_label("usb.blocked"),
        "Blocked",
        "High",
        "usb.block (v7)",
        "The USB stick “SANDISK” (0781:5581) was blocked",
    ]


def test_history_row_of_a_damaged_event_does_not_fail() -> None:
    row = history_row({"ts": "yesterday", "kind": 5, "data": ["not", "a", "dict"], "rule": "odd"}, tz=UTC)
    assert row.when == "yesterday"
    assert row.rule == "odd"
    assert row.sentence == "DeskWarden recorded an event of type “”"


def test_every_action_has_an_outcome_label() -> None:
    assert {action.value for action in Action} <= set(texts.ACTION_LABELS)


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        (30, "30 minutes"),
        (60, "1 hour"),
        (90, "1 hour 30 minutes"),
        (480, "8 hours"),
        (2880, "2 days"),
        (0, "0 minutes"),
    ],
)
def test_duration_phrase(minutes: int, expected: str) -> None:
    assert duration_phrase(minutes) == expected


@pytest.mark.parametrize(
    ("size", "expected"), [(512, "512 bytes"), (48_000, "48.0 KB"), (2_100_000, "2.1 MB"), (31914983424, "31.9 GB")]
)
def test_size_phrase(size: int, expected: str) -> None:
    assert size_phrase(size) == expected


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_keys = st.sampled_from(["vendor_id", "product_id", "label", "findings", "name", "reason", "count", "version", "x"])


@given(
    kind=st.sampled_from([kind.value for kind in EventKind] + ["made.up"]),
    action=st.sampled_from([action.value for action in Action] + ["", "weird"]),
    data=st.dictionaries(_keys | st.text(max_size=10), _json, max_size=6),
)
def test_any_metadata_gives_one_line_and_never_raises(kind: str, action: str, data: dict[str, Any]) -> None:
    sentence = describe(kind, action, data)
    assert sentence
    assert sentence == " ".join(sentence.split()), "one line, whitespace collapsed"
