"""The events raised by the person's answers: acknowledgement, clean desk, justification, exception request.

Pure builders of `EventDraft`s; the GUI thread passes them to `AgentPort.record`.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import JsonValue

from agent_app.core.pipeline import Notice
from agent_app.core.prompts.acknowledgement import text_sha256
from agent_app.core.prompts.cleandesk import Trigger
from agent_app.core.prompts.justification import MAX_TEXT, Justification
from collectors.pii import mask_text, scan_text
from policy_client.schema import EventDraft, EventKind, PolicyDocument, RuleRef, Severity, utc_now

ACK_RULE = "acknowledgement"
CLEANDESK_RULE = "clean_desk"


def acknowledged(policy: PolicyDocument, *, ts: datetime | None = None) -> EventDraft:
    text = policy.controls.acknowledgement.text_markdown
    return EventDraft(
        kind=EventKind.policy_acknowledged,
        ts=ts or utc_now(),
        rule=RuleRef(id=ACK_RULE, policy_version=policy.version),
        data={"version": policy.version, "text_sha256": text_sha256(text)},
    )


def cleandesk(
    kind: EventKind, policy: PolicyDocument, *, trigger: Trigger, snoozes: int, ts: datetime | None = None
) -> EventDraft:
    if kind not in (EventKind.cleandesk_prompted, EventKind.cleandesk_attested, EventKind.cleandesk_missed):
        raise ValueError(f"{kind} is not a clean-desk event")
    return EventDraft(
        kind=kind,
        ts=ts or utc_now(),
        severity=Severity.low if kind is EventKind.cleandesk_missed else Severity.info,
        rule=RuleRef(id=CLEANDESK_RULE, policy_version=policy.version),
        data={"trigger": trigger.value, "items": len(policy.controls.clean_desk.checklist), "snoozes": snoozes},
    )


def masked_free_text(text: str) -> str:
    """What the person typed, with any personal data in it masked: a justification like "customer 4111 1111
    1111 1111 asked for it" must not carry the number off the desk."""
    return mask_text(text, scan_text(text))


def justified(notice: Notice, answer: Justification, *, ts: datetime | None = None) -> EventDraft:
    decision = notice.decision
    return EventDraft(
        kind=EventKind.violation_justified,
        ts=ts or utc_now(),
        severity=Severity.low if answer.timed_out else Severity.info,
        rule=RuleRef(id=decision.rule_id, policy_version=decision.policy_version) if decision.rule_id else None,
        data={
            "ref_seq": notice.seq,
            "rule": decision.rule_id,
            "reason": answer.reason,
            "text": masked_free_text(answer.text[:MAX_TEXT]),
            "timed_out": answer.timed_out,
        },
    )


def exception_requested(
    *,
    vendor_id: str,
    product_id: str,
    serial: str | None,
    minutes: int,
    reason: str,
    rule: RuleRef | None = None,
    ts: datetime | None = None,
) -> EventDraft:
    data: dict[str, JsonValue] = {
        "vendor_id": vendor_id,
        "product_id": product_id,
        "serial": serial,
        "minutes": minutes,
        "reason": masked_free_text(" ".join(reason.split())[:MAX_TEXT]),
    }
    return EventDraft(
        kind=EventKind.usb_exception_requested, ts=ts or utc_now(), severity=Severity.low, rule=rule, data=data
    )
