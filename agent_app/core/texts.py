"""Every string the person at the desk reads, in one place so it can be translated later.

Plain constants and tiny formatting helpers; safe from any thread (the UI reads them on the GUI thread).
"""

from __future__ import annotations

from typing import Final

from policy_client.event_vocabulary import VOCABULARY, label_of

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
STATUS_UNPROTECTED: Final = "Developer mode: not tamper-resistant"
"""Shown when service and tray run as the desk user (`deskwarden demo`): enforcement works, but the person
could stop it. Informational, so it neither changes the icon nor raises attention."""
TOOLTIP_UNPROTECTED: Final = "Developer mode: not tamper-resistant"
STATUS_EXCEPTION: Final = "Allowed until {until}: {device}"

ATTENTION_ACK_OVERDUE: Final = "policy acknowledgement overdue"
ATTENTION_CLEANDESK_MISSED: Final = "clean-desk check missed"

# --- quit with an unlock token ------------------------------------------------------------------
UNLOCK_TITLE: Final = "Quit DeskWarden"
UNLOCK_TEXT: Final = (
    "Your organisation's policy keeps DeskWarden running. To quit, paste or type the unlock token from your "
    "administrator. Quitting is recorded."
)
UNLOCK_LABEL: Final = "Unlock token from your administrator:"
UNLOCK_PLACEHOLDER: Final = "DW1-…"
UNLOCK_REFUSED: Final = (
    "That unlock token is not valid for this PC, or it has expired. Check that you pasted all of it, "
    "or ask your administrator for a new one. DeskWarden keeps running."
)
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
    "These are the events DeskWarden sent (or will send) from this PC about you, in plain words. Apart from "
    "technical details such as device ids and file fingerprints, nothing else leaves this PC: no clipboard text, "
    "file contents, keystrokes or screen images, and customer data only masked, like XXXX XXXX XXXX 1111. "
    "Entries are kept here for {days} days."
)
REPORTED_EMPTY: Final = "Nothing has been reported from this PC yet."
REPORTED_COLUMNS: Final = ("Time", "What", "Outcome", "Severity", "Rule", "What was reported")
ACTION_LABELS: Final = {
    "observed": "Recorded",
    "warned": "Warned",
    "blocked": "Blocked",
    "masked": "Masked",
    "cleared": "Cleared",
    "quarantined": "Quarantined",
    "deleted": "Deleted",
    "terminated": "Closed",
    "allowed": "Allowed",
    "failed": "Could not act",
}
SEVERITY_LABELS: Final = {"info": "Info", "low": "Low", "medium": "Medium", "high": "High", "critical": "Critical"}

# One plain sentence per reported event (agent_app.core.history_text builds them). No trailing full stop:
# they sit in a table cell. `{device}` is one of the USB_DEVICE_* phrases.
USB_DEVICE_NAMED: Final = "the USB stick “{label}” ({ids})"
USB_DEVICE_IDS: Final = "the USB stick {ids}"
USB_DEVICE_LABEL_ONLY: Final = "the USB stick “{label}”"
USB_DEVICE_UNKNOWN: Final = "a USB stick"
H_USB_MOUNTED: Final = "You connected {device}"
H_USB_PRESENT: Final = "{device} was connected when DeskWarden started"
H_USB_BLOCKED: Final = "{device} was blocked"
H_USB_READ_ONLY: Final = "{device} was allowed read-only"
H_USB_REMOVED: Final = "{device} was removed"
H_USB_EXCEPTION: Final = "You asked to use {device} for {duration}"
H_REASON: Final = ": “{reason}”"
H_SOME_TIME: Final = "a while"
H_SOME_MONITOR: Final = "a monitor"
H_DOWNLOAD: Final = "You downloaded “{name}”"
H_DOWNLOAD_SOMETHING: Final = "You downloaded a file"
H_DOWNLOAD_BLOCKED_TYPE: Final = "file type {extension} not allowed"
H_DOWNLOAD_OVERSIZE: Final = "larger than allowed"
H_DOWNLOAD_FINDINGS: Final = "contains {findings}"
H_DOWNLOAD_RELEASED: Final = "An administrator released a quarantined download back to your Downloads"
H_DOWNLOAD_DELETED: Final = "An administrator had a quarantined download deleted"
H_CLIPBOARD: Final = "You copied {findings}"
H_CLIPBOARD_SOMETHING: Final = "You copied customer data"
H_CAPTURE_TOOL: Final = "The screen-capture tool “{name}” was started"
H_CAPTURE_TOOL_UNNAMED: Final = "A screen-capture tool was started"
H_CAPTURE_HOTKEY: Final = "You pressed the screenshot shortcut {shortcut}"
H_CAPTURE_HOTKEY_UNNAMED: Final = "You pressed a screenshot shortcut"
H_CAPTURE_SUPPRESSED: Final = "; no screenshot was taken"
H_POLICY_UPDATED: Final = "Policy version {version} came into force"
H_POLICY_REPLACING: Final = " (replacing version {previous})"
H_POLICY_REJECTED: Final = "A policy update{offered} was refused because {why}; the policy in force stays"
H_POLICY_OFFERED: Final = " (version {version})"
H_POLICY_ACKNOWLEDGED: Final = "You acknowledged the policy version {version}"
H_POLICY_ACKNOWLEDGED_NO_VERSION: Final = "You acknowledged the policy"
H_CLEANDESK_PROMPTED: Final = "The clean-desk check was shown {trigger}"
H_CLEANDESK_ATTESTED: Final = "You confirmed the clean-desk check"
H_CLEANDESK_MISSED: Final = "The clean-desk check was not confirmed in time"
H_CLEANDESK_ITEMS: Final = " ({items})"
H_CLEANDESK_SNOOZES: Final = " after {snoozes}"
H_JUSTIFIED: Final = "You gave a reason: “{reason}”"
H_JUSTIFIED_BOTH: Final = "You gave a reason: “{reason}”, “{text}”"
H_JUSTIFIED_TIMEOUT: Final = "No reason was given in time, so “{reason}” was recorded"
H_AGENT_STARTED: Final = "DeskWarden started"
H_AGENT_VERSION: Final = " (version {version})"
H_AGENT_UNCLEAN: Final = " after an unexpected stop"
H_AGENT_STOPPED: Final = "DeskWarden stopped"
H_AGENT_STOPPED_WHY: Final = "DeskWarden stopped: {why}"
H_HEARTBEAT: Final = "DeskWarden reported that it is running"
H_COLLECTOR_FAILED: Final = "Monitoring of {collector} stopped working and was restarted"
H_COLLECTOR_GAVE_UP: Final = "Monitoring of {collector} stopped working and could not be restarted"
H_TAMPER: Final = "DeskWarden reported a possible tampering"
H_LOSS: Final = "{count} could not be kept on this PC"
H_LOSS_WHY: Final = "{count} could not be kept on this PC ({why})"
H_DEAD_LETTER: Final = "The DeskWarden server refused {count}"
H_UNLOCK_USED: Final = "An unlock token from your administrator was used"
H_UNLOCK_SCOPE: Final = " to {scope}"
H_UNLOCK_FOR: Final = " for {duration}"
H_UNKNOWN: Final = "DeskWarden recorded an event of type “{kind}”"

OUTCOME_CLAUSES: Final = {
    "warned": "; DeskWarden asked you for a reason",
    "blocked": "; DeskWarden blocked it",
    "masked": "; DeskWarden masked it",
    "cleared": "; DeskWarden cleared it",
    "quarantined": "; DeskWarden moved it to quarantine",
    "deleted": "; DeskWarden deleted it",
    "terminated": "; DeskWarden closed it",
    "failed": "; DeskWarden tried to act but could not",
}
"""What DeskWarden did, appended to the sentence; `observed` and `allowed` add nothing."""
CLIPBOARD_OUTCOMES: Final = {
    "masked": "; the clipboard was masked",
    "cleared": "; the clipboard was cleared",
}
HOTKEY_OUTCOMES: Final = {"cleared": "; DeskWarden removed the screenshot from the clipboard"}
READ_ONLY_OUTCOME: Final = "; DeskWarden made it read-only"
CLEANDESK_TRIGGERS: Final = {
    "scheduled": "at a scheduled time",
    "idle_return": "when you came back",
    "shift_end": "at the end of your shift",
    "manual": "on request",
}
POLICY_REJECT_REASONS: Final = {
    "too_large": "it was too large",
    "invalid_json": "it was not a valid policy",
    "invalid_envelope": "it was not a valid policy",
    "invalid_schema": "it was not a valid policy",
    "unknown_key": "it was signed with an unknown key",
    "bad_signature": "its signature did not check out",
    "rollback": "it was older than the policy in force",
    "version_conflict": "it reused a version number with different content",
    "tampered_cache": "the copy kept on this PC had been changed",
}
POLICY_REJECT_OTHER: Final = "it failed a check"
STOP_REASONS: Final = {
    "user_quit": "you quit it",
    "admin_unlock": "you quit it with an unlock token",
    "logout": "you logged off",
    "sigterm": "the system stopped it",
    "sigint": "the system stopped it",
    "sighup": "the system stopped it",
    "uninstall": "it was uninstalled",
    "exit": "it was closed",
    "quit": "it was closed",
}
TAMPER_REASONS: Final = {
    "unclean_stop": "DeskWarden did not stop cleanly last time",
    "keyring_unavailable": "The secure key store was not available, so DeskWarden keeps its keys in a file",
    "uninstall_refused": "An attempt to uninstall DeskWarden without an unlock token was refused",
    "helper_stopped": "The DeskWarden tray stopped while you were signed in",
    "helper_missing": "The DeskWarden tray was not running in your session",
    "unlock_refused": "An unlock token was refused",
}
LOSS_REASONS: Final = {
    "quota": "the storage limit was reached",
    "disk_full": "the disk was full",
    "corruption": "the local store was damaged",
    "lost_commits": "DeskWarden stopped before saving them",
    "seq_resync": "this PC's local record was lost or replaced, so the endpoint's numbering was taken up again",
}
UNLOCK_SCOPES: Final = {"quit": "quit DeskWarden", "uninstall": "uninstall DeskWarden"}
COLLECTOR_LABELS: Final = {
    "usb": "USB storage",
    "downloads": "downloads",
    "clipboard": "the clipboard",
    "screen_capture": "screen capture",
}
COUNT_WORDS: Final = {
    "event": ("event", "events"),
    "item": ("item", "items"),
    "reminder": ("reminder", "reminders"),
    "minute": ("minute", "minutes"),
    "hour": ("hour", "hours"),
    "day": ("day", "days"),
}
SIZE_UNITS: Final = ("bytes", "KB", "MB", "GB", "TB")

# --- USB exception news (agent_app.core.news_exceptions decides; the tray shows them) ------------
NEWS_GRANTED_TITLE: Final = "USB exception approved"
NEWS_GRANTED: Final = "Your exception for {device} was approved until {until}."
NEWS_GRANTED_EVERYONE: Final = "{device} may be used on this PC until {until}."
NEWS_EXTENDED_TITLE: Final = "USB exception extended"
NEWS_EXTENDED: Final = "Your exception for {device} now lasts until {until}."
NEWS_SHORTENED_TITLE: Final = "USB exception changed"
NEWS_SHORTENED: Final = "Your exception for {device} now ends at {until}."
NEWS_WITHDRAWN_TITLE: Final = "USB exception withdrawn"
NEWS_WITHDRAWN: Final = "Your exception for {device} was withdrawn; the usual USB rules apply again."
NEWS_ENDED_TITLE: Final = "USB exception ended"
NEWS_ENDED: Final = "Your exception for {device} has ended; the usual USB rules apply again."

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

KIND_LABELS: Final = {facts.kind.value: facts.label for facts in VOCABULARY.values()}
"""Event kind labels, from the one vocabulary (policy_client/event_vocabulary.py)."""


def kind_label(kind: str) -> str:
    return label_of(kind)


def tray_tooltip(state: str, *, mode: str) -> str:
    """The tray icon's tooltip: the state, plus a second line in developer (unprotected) mode."""
    text = TRAY_TOOLTIP.get(state, APP_NAME)
    return f"{text}\n{TOOLTIP_UNPROTECTED}" if mode == "unprotected" else text


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
