"""Justification validation, countdown and the violation.justified / usb.exception_requested drafts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent_app.core.pipeline import Notice
from agent_app.core.prompts import drafts
from agent_app.core.prompts.justification import (
    OTHER_REASON,
    JustificationCountdown,
    shortfall,
    timed_out,
    validate,
)
from collectors.base import Decision
from policy_client.schema import Action, EventKind, JustificationControl, Severity

CONTROL = JustificationControl(min_length=15, reasons=["Customer requested it"], timeout_seconds=60)


def test_listed_reason_is_enough() -> None:
    answer = validate(CONTROL, reason="Customer requested it", text="")
    assert answer is not None
    assert answer.reason == "Customer requested it"


def test_unlisted_reason_needs_text() -> None:
    assert validate(CONTROL, reason="made up", text="") is None


def test_free_text_needs_min_length_after_trimming() -> None:
    assert validate(CONTROL, reason=None, text="   too short    ") is None
    assert shortfall(CONTROL, "   too short    ") == 6
    answer = validate(CONTROL, reason=None, text="the customer asked for a copy")
    assert answer is not None
    assert answer.reason == OTHER_REASON


def test_text_is_capped_at_500_characters() -> None:
    answer = validate(CONTROL, reason=None, text="x" * 900)
    assert answer is not None
    assert len(answer.text) == 500


def test_countdown_with_fake_clock() -> None:
    now = [datetime(2025, 1, 1, tzinfo=UTC)]
    countdown = JustificationCountdown(CONTROL, clock=lambda: now[0])
    assert countdown.remaining() == 60
    now[0] += timedelta(seconds=59.5)
    assert countdown.remaining() == 1
    assert not countdown.expired()
    now[0] += timedelta(seconds=0.5)
    assert countdown.expired()


def test_timeout_applies_policy_default() -> None:
    answer = timed_out(CONTROL)
    assert answer.timed_out
    assert answer.reason == CONTROL.default_on_timeout


def test_justified_draft_refers_to_the_notice() -> None:
    decision = Decision(action="warn", rule_id="usb.warn", policy_version=4, severity=Severity.medium, message="m")
    notice = Notice(seq=42, kind="usb.mounted", control="usb", decision=decision, outcome=Action.warned, summary={})
    draft = drafts.justified(notice, timed_out(CONTROL))
    assert draft.kind is EventKind.violation_justified
    assert draft.data == {
        "ref_seq": 42,
        "rule": "usb.warn",
        "reason": CONTROL.default_on_timeout,
        "text": "",
        "timed_out": True,
    }
    assert draft.rule is not None
    assert draft.rule.policy_version == 4


def test_exception_request_draft() -> None:
    draft = drafts.exception_requested(
        vendor_id="0781", product_id="5581", serial="4C53", minutes=60, reason="  auditor   forms  "
    )
    assert draft.kind is EventKind.usb_exception_requested
    assert draft.data == {
        "vendor_id": "0781",
        "product_id": "5581",
        "serial": "4C53",
        "minutes": 60,
        "reason": "auditor forms",
    }


def test_personal_data_typed_into_a_justification_is_masked_before_it_leaves() -> None:
    from agent_app.core.prompts.justification import Justification
    from tests.gui.helpers import notice

    answer = Justification(reason="other", text="customer 4111 1111 1111 1111 asked for the statement", timed_out=False)
    draft = drafts.justified(notice("warn"), answer)
    assert draft.data["text"] == "customer XXXX XXXX XXXX 1111 asked for the statement"
    request = drafts.exception_requested(
        vendor_id="0781", product_id="5581", serial=None, minutes=60, reason="copy for jane.doe@example.com"
    )
    assert "jane.doe@example.com" not in str(request.data["reason"])
