"""Every string the person at the desk reads, in one place so it can be translated later.

Plain constants and tiny formatting helpers; safe from any thread (the UI reads them on the GUI thread).
"""

from __future__ import annotations

from typing import Final

APP_NAME: Final = "DeskWarden"

# --- tray ---------------------------------------------------------------------------------------
TRAY_TOOLTIP: Final = {
    "protected": "DeskWarden: protected",
    "offline": "DeskWarden: offline, events are kept on this PC until the connection returns",
    "attention": "DeskWarden: attention needed",
    "needs_reenrolment": "DeskWarden: this PC must be enrolled again, contact IT",
}
TRAY_STATE_LINE: Final = {
    "protected": "Protected",
    "offline": "Offline (events kept on this PC)",
    "attention": "Attention needed",
    "needs_reenrolment": "Needs re-enrolment, contact IT",
}
STATUS_POLICY: Final = "Policy version: {version}"
STATUS_LAST_SYNC: Final = "Last sync: {when}"
STATUS_NEVER: Final = "never"
STATUS_QUEUE: Final = "Events waiting to upload: {count}"
STATUS_COLLECTORS_OK: Final = "Monitoring: all {count} running"
STATUS_COLLECTORS: Final = "Monitoring: {running} of {count} running ({problems})"
STATUS_NO_COLLECTORS: Final = "Monitoring: none running"
STATUS_ATTENTION: Final = "Needs you: {reason}"
MENU_VIEW_POLICY: Final = "View policy"
MENU_REPORTED: Final = "What was reported about me"
MENU_EXCEPTION: Final = "Request an exception"
MENU_ABOUT: Final = "About DeskWarden"
MENU_QUIT: Final = "Quit"
MENU_QUIT_LOCKED: Final = "Quit…"

ATTENTION_ACK_OVERDUE: Final = "policy acknowledgement overdue"
ATTENTION_CLEANDESK_MISSED: Final = "clean-desk check missed"

# --- quit with an unlock code -------------------------------------------------------------------
UNLOCK_TITLE: Final = "Quit DeskWarden"
UNLOCK_TEXT: Final = (
    "Your organisation's policy keeps DeskWarden running. To quit, enter the unlock code from your IT administrator. "
    "Quitting is recorded."
)
UNLOCK_LABEL: Final = "Unlock code:"
UNLOCK_REFUSED: Final = "That unlock code is not valid. DeskWarden keeps running."
UNLOCK_OK: Final = "Quit"
CANCEL: Final = "Cancel"
CLOSE: Final = "Close"

# --- policy acknowledgement ---------------------------------------------------------------------
ACK_TITLE: Final = "Please read and acknowledge the policy"
ACK_INTRO: Final = "Policy version {version} from {org}. Read it to the end, then confirm below."
ACK_INTRO_NO_ORG: Final = "Policy version {version}. Read it to the end, then confirm below."
ACK_SCROLL_HINT: Final = "Scroll to the end of the policy to continue."
ACK_CHECKBOX: Final = "I have read and understood this policy"
ACK_BUTTON: Final = "I acknowledge"
ACK_LATER: Final = "Later"
POLICY_VIEW_TITLE: Final = "Policy in force"
POLICY_ACKED_ON: Final = "You acknowledged this version on {when}."
POLICY_NOT_ACKED: Final = "You have not acknowledged this version yet."

# --- clean desk ---------------------------------------------------------------------------------
CLEANDESK_TITLE: Final = "Clean-desk check"
CLEANDESK_INTRO: Final = {
    "scheduled": "It is time for the scheduled clean-desk check. Tick each item once it is true.",
    "idle_return": "Welcome back. Before you continue, tick each item once it is true.",
    "shift_end": "Your shift is ending. Before you leave, tick each item once it is true.",
    "manual": "Tick each item once it is true.",
}
CLEANDESK_DEADLINE: Final = "Please confirm within {minutes} min, or the check is reported as missed."
CLEANDESK_CONFIRM: Final = "Confirm"
CLEANDESK_SNOOZE: Final = "Remind me in {minutes} min"
CLEANDESK_SNOOZES_LEFT: Final = "Reminders left: {count}"
CLEANDESK_NO_SNOOZES: Final = "No more reminders: please confirm now."

# --- violation notices --------------------------------------------------------------------------
WARN_TITLE: Final = "DeskWarden needs a reason"
BLOCK_TITLE: Final = "DeskWarden stopped something"
NOTICE_RULE: Final = "Rule: {rule} (policy version {version})"
NOTICE_DETAILS: Final = "Details"
NOTICE_FAILED: Final = "DeskWarden could not carry out this action; it has been reported to your supervisor."
JUSTIFY_PROMPT: Final = "Why did you need to do this? Pick a reason or write one (at least {min_length} characters)."
JUSTIFY_PICK: Final = "Reason:"
JUSTIFY_OWN: Final = "Other (write below)"
JUSTIFY_TEXT_LABEL: Final = "Your explanation:"
JUSTIFY_PLACEHOLDER: Final = "For example: the customer asked me to send the form by e-mail"
JUSTIFY_TOO_SHORT: Final = "Write at least {min_length} characters ({count} so far), or pick a reason."
JUSTIFY_SEND: Final = "Send"
JUSTIFY_COUNTDOWN: Final = "Without an answer in {seconds} s, DeskWarden records: “{default}”."
EXCEPTION_OFFER: Final = "Request an exception…"
EXCEPTION_TITLE: Final = "Request an exception"
EXCEPTION_INTRO: Final = (
    "Ask your supervisor to allow this device for a limited time. You are told in the tray when it is approved."
)
EXCEPTION_DEVICE: Final = "Device: {vendor}:{product}{serial}"
EXCEPTION_DURATION: Final = "For how long:"
EXCEPTION_REASON: Final = "Why you need it:"
EXCEPTION_REASON_PLACEHOLDER: Final = "For example: the client's auditor hands over signed forms on this stick"
EXCEPTION_SEND: Final = "Send request"
EXCEPTION_SENT: Final = "Your request was sent to your supervisor."
EXCEPTION_NONE: Final = (
    "Exceptions are requested for a USB storage device that DeskWarden blocked. "
    "No blocked device was seen recently, so there is nothing to request yet."
)
EXCEPTION_NOT_ALLOWED: Final = "Your organisation's policy does not allow exception requests."
EXCEPTION_DURATIONS: Final = ((30, "30 minutes"), (60, "1 hour"), (240, "4 hours"), (480, "8 hours (one shift)"))

# --- transparency view --------------------------------------------------------------------------
REPORTED_TITLE: Final = "What was reported about me"
REPORTED_NOTE: Final = (
    "This is everything DeskWarden sent (or will send) from this PC about you: the time, what happened, "
    "what DeskWarden did, and the details listed. Nothing else leaves this PC: no clipboard text, file contents, "
    "keystrokes or screen images. Entries are kept here for {days} days."
)
REPORTED_EMPTY: Final = "Nothing has been reported from this PC yet."
REPORTED_COLUMNS: Final = ("Time", "What", "Action", "Severity", "Rule", "Details sent")

# --- about --------------------------------------------------------------------------------------
ABOUT_TITLE: Final = "About DeskWarden"
ABOUT_TEXT: Final = (
    "<b>DeskWarden {version}</b><br>"
    "Keeps customer data safe on this PC and tells you whenever it acts.<br><br>"
    "Device: {device}<br>Signed in as: {user}<br>Endpoint: {server}<br>Policy version: {policy}"
)
ABOUT_NOT_ENROLLED: Final = "not enrolled"

# --- supervisor notifications -------------------------------------------------------------------
ALERT_TITLE: Final = "{severity} alert: {kind}"
ALERT_BODY: Final = "Team {team}, device {device}. Click to open the console."

KIND_LABELS: Final = {
    "usb.mounted": "USB storage connected",
    "usb.blocked": "USB storage blocked",
    "usb.removed": "USB storage removed",
    "usb.exception_requested": "Exception requested",
    "download.detected": "Download",
    "download.quarantined": "Download quarantined",
    "clipboard.sensitive": "Customer data copied",
    "capture.tool_started": "Screen-capture tool started",
    "capture.tool_terminated": "Screen-capture tool closed",
    "capture.hotkey": "Screenshot key pressed",
    "policy.updated": "Policy updated",
    "policy.rejected": "Policy rejected",
    "policy.acknowledged": "Policy acknowledged",
    "cleandesk.prompted": "Clean-desk check shown",
    "cleandesk.attested": "Clean-desk check confirmed",
    "cleandesk.missed": "Clean-desk check missed",
    "violation.justified": "Reason given",
    "agent.started": "DeskWarden started",
    "agent.stopped": "DeskWarden stopped",
    "agent.heartbeat": "Health check",
    "agent.collector_failed": "Monitoring problem",
    "agent.tamper": "Tamper warning",
    "agent.loss": "Events lost",
    "agent.dead_letter": "Events refused",
}


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


DETECTOR_LABELS = {
    "card": "card number",
    "aadhaar": "Aadhaar number",
    "pan": "PAN",
    "iban": "IBAN",
    "ssn": "social security number",
    "email": "e-mail address",
    "phone": "phone number",
}

HIDDEN_DETAIL_KEYS = frozenset({"hash", "sha256", "mac", "quarantine_id", "scan_truncated", "pid", "target"})
"""Metadata that is reported but means nothing to the person reading a notice."""


def finding_line(finding: object) -> str:
    """`2 card numbers, e.g. XXXX XXXX XXXX 1111` for one finding summary."""
    if not isinstance(finding, dict):
        return str(finding)
    count = finding.get("count", 1)
    label = DETECTOR_LABELS.get(str(finding.get("type")), str(finding.get("type")))
    plural = "s" if isinstance(count, int) and count != 1 else ""
    sample = finding.get("sample")
    return f"{count} {label}{plural}" + (f", e.g. {sample}" if sample else "")


def notice_details(summary: dict[str, object]) -> list[tuple[str, str]]:
    """The (label, value) lines a notice shows for an event's metadata, in a readable order."""
    lines: list[tuple[str, str]] = []
    findings = summary.get("findings")
    if isinstance(findings, list) and findings:
        lines.append(("found", "; ".join(finding_line(item) for item in findings)))
    for key in sorted(summary):
        value = summary[key]
        if key == "findings" or key in HIDDEN_DETAIL_KEYS or value is None or value is False:
            continue
        lines.append((key.replace("_", " "), value if isinstance(value, str) else _compact(value)))
    return lines


def _compact(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
