"""Shared builders for GUI tests: a fake clock, notices and policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agent_app.core.pipeline import Notice
from collectors.base import Decision, DecisionAction
from policy_client.schema import Action, CleanDeskControl, Controls, JustificationControl, PolicyDocument, Severity


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2025, 3, 3, 12, 55, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


USB_SUMMARY: dict[str, Any] = {"vendor_id": "0781", "product_id": "5581", "serial": "4C530001", "label": "SANDISK"}


def notice(
    action: DecisionAction = "warn",
    *,
    control: str = "usb",
    exception_allowed: bool = False,
    seq: int = 41,
    summary: dict[str, Any] | None = None,
    outcome: Action = Action.warned,
) -> Notice:
    decision = Decision(
        action=action,
        rule_id=f"{control}.{action}",
        policy_version=7,
        severity=Severity.high,
        message="This USB storage device is not approved for customer data. Explain why you need it.",
        exception_allowed=exception_allowed,
    )
    return Notice(seq, "usb.mounted", control, decision, outcome, dict(summary or USB_SUMMARY))


def policy(
    *,
    text: str | None = None,
    clean_desk: CleanDeskControl | None = None,
    justification: JustificationControl | None = None,
    allow_quit: bool = False,
) -> PolicyDocument:
    data: dict[str, Any] = {}
    if text is not None:
        data["acknowledgement"] = {"text_markdown": text}
    if clean_desk is not None:
        data["clean_desk"] = clean_desk.model_dump()
    if justification is not None:
        data["justification"] = justification.model_dump()
    data["agent"] = {"allow_quit": allow_quit}
    return PolicyDocument(version=7, org="Acme CX", controls=Controls.model_validate(data))


LONG_POLICY = "# Acceptable use\n\n" + "\n\n".join(
    f"{n}. Customer data stays in the approved systems; rule number {n} explains why in plain words." for n in range(60)
)
