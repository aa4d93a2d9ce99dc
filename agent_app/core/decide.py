"""Policy decisions: `decide(observation, policy)` maps what a collector saw to what the agent does.

A pure function of its inputs; called on the pipeline thread.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from collectors.base import Decision, DecisionAction
from collectors.pii import confidence_at_least
from policy_client.event_vocabulary import VOCABULARY, notice_message
from policy_client.schema import EventDraft, EventKind, PolicyDocument, Severity, UsbDeviceId, utc_now


def message_for(control: str, action: str) -> str:
    """The notice for a decision of `control` (the vocabulary's NOTICE_MESSAGES); "" shows none."""
    return notice_message(control, action)


def _decision(
    control: str, action: DecisionAction, policy: PolicyDocument, severity: Severity, *, suffix: str = ""
) -> Decision:
    return Decision(
        action=action,
        rule_id=f"{control}.{suffix or action}",
        policy_version=policy.version,
        severity=severity,
        message=message_for(control, action),
        exception_allowed=control == "usb"
        and action in ("block", "read_only")
        and policy.controls.usb.exceptions_allowed,
    )


def _usb(draft: EventDraft, policy: PolicyDocument, device_id: str, now: datetime) -> Decision:
    usb = policy.controls.usb
    if usb.mode == "off":
        return _decision("usb", "ignore", policy, Severity.info, suffix="off")
    vendor, product, serial = (_str(draft.data.get(k)) for k in ("vendor_id", "product_id", "serial"))
    allowed: list[UsbDeviceId] = list(usb.allow)
    allowed += [e for e in usb.exceptions if e.expires_at > now and e.device_id in (None, device_id)]
    if any(entry.matches(vendor, product, serial) for entry in allowed):
        return _decision("usb", "audit", policy, Severity.info, suffix="allowed")
    severity = Severity.medium if usb.mode in ("audit", "warn") else Severity.high
    return _decision("usb", "audit" if usb.mode == "audit" else usb.mode, policy, severity)


def _sensitive(findings: Any, min_confidence: str) -> bool:
    """Some finding summary reaches `min_confidence`; a summary without a confidence (an older agent's) counts."""
    if not isinstance(findings, list):
        return False
    levels = (str(f.get("confidence") or "high") for f in findings if isinstance(f, dict))
    return any(confidence_at_least(level, min_confidence) for level in levels)


_DOWNLOAD_STRENGTH = {"ignore": 0, "audit": 1, "warn": 2, "quarantine": 3, "delete": 4}


def _downloads(draft: EventDraft, policy: PolicyDocument) -> Decision:
    """The download rules (`mode`, `quarantine_on`), then the stronger of that and `encrypted_archives` for a download
    whose content is encrypted (it could not be checked)."""
    by_mode = _downloads_by_mode(draft, policy)
    control = policy.controls.downloads
    if control.mode == "off" or draft.data.get("encrypted") is not True or control.encrypted_archives == "audit":
        return by_mode
    action: DecisionAction = control.encrypted_archives
    if _DOWNLOAD_STRENGTH[by_mode.action] >= _DOWNLOAD_STRENGTH[action]:
        return by_mode
    return Decision(
        action=action,
        rule_id=f"downloads.encrypted_{action}",
        policy_version=policy.version,
        severity=max(by_mode.severity, Severity.medium, key=_rank),
        message=message_for("downloads_encrypted", action),
    )


def _downloads_by_mode(draft: EventDraft, policy: PolicyDocument) -> Decision:
    control = policy.controls.downloads
    blocked = bool(draft.data.get("blocked_extension")) or bool(draft.data.get("oversize"))
    sensitive = _sensitive(draft.data.get("findings"), control.min_confidence)
    severity = Severity.high if sensitive else Severity.medium if blocked else Severity.info
    if control.mode == "off":
        return _decision("downloads", "ignore", policy, Severity.info, suffix="off")
    if control.mode in ("quarantine", "delete"):
        hit = {"any": True, "blocked": blocked, "sensitive": blocked or sensitive}[control.quarantine_on]
        if hit:
            return _decision("downloads", control.mode, policy, max(severity, Severity.medium, key=_rank))
        return _decision("downloads", "audit", policy, severity)
    if control.mode == "warn" and (blocked or sensitive):
        return _decision("downloads", "warn", policy, severity)
    return _decision("downloads", "audit", policy, severity)


def _clipboard(draft: EventDraft, policy: PolicyDocument) -> Decision:
    control = policy.controls.clipboard
    mode = control.mode
    if mode == "off":
        return _decision("clipboard", "ignore", policy, Severity.info, suffix="off")
    # A clipboard.sensitive draft without a finding summary cannot be graded: it is acted on as before.
    findings = draft.data.get("findings")
    if findings is not None and not _sensitive(findings, control.min_confidence):
        return _decision("clipboard", "ignore", policy, Severity.info, suffix="below_confidence")
    severity = Severity.medium if mode in ("audit", "warn") else Severity.low
    return _decision("clipboard", mode, policy, severity)


def _capture(draft: EventDraft, policy: PolicyDocument) -> Decision:
    control = policy.controls.screen_capture
    if control.mode == "off" or (draft.kind is EventKind.capture_hotkey and not control.hotkeys):
        return _decision("screen_capture", "ignore", policy, Severity.info, suffix="off")
    if control.mode == "block":
        action: DecisionAction = "clear" if draft.kind is EventKind.capture_hotkey else "terminate"
        return _decision("screen_capture", action, policy, Severity.high)
    return _decision("screen_capture", control.mode, policy, Severity.medium)


def decide(draft: EventDraft, policy: PolicyDocument, *, device_id: str = "", now: datetime | None = None) -> Decision:
    """What the agent does about `draft` under `policy`. Kinds without a control are recorded as they come."""
    control = VOCABULARY[draft.kind].policy_control
    if control == "usb":
        return _usb(draft, policy, device_id, now or utc_now())
    if control == "downloads":
        return _downloads(draft, policy)
    if control == "clipboard":
        return _clipboard(draft, policy)
    if control == "screen_capture":
        return _capture(draft, policy)
    return Decision(action="audit", rule_id="", policy_version=policy.version, severity=draft.severity)


def _rank(severity: Severity) -> int:
    return severity.rank


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
