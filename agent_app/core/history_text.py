"""Plain sentences for "What was reported about me": one per event, built from its kind, outcome and metadata.

Pure functions, safe from any thread (the transparency view calls them on the GUI thread). They read only the
fields they know, never dump a dict, and show personal data only as the masked samples the event already holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from agent_app.core import texts

MAX_QUOTED = 80
"""Longest free text (a volume label, a reason the person typed, a file name) quoted in a sentence."""


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """The cells of one row of the transparency view, in `texts.REPORTED_COLUMNS` order."""

    when: str
    what: str
    outcome: str
    severity: str
    rule: str
    sentence: str

    def cells(self) -> list[str]:
        return [self.when, self.what, self.outcome, self.severity, self.rule, self.sentence]


def history_row(event: Mapping[str, Any], *, tz: tzinfo | None = None) -> HistoryRow:
    """One event as `AgentPort.history()` returns it (the JSON that leaves the PC) as table cells."""
    kind = _text(event.get("kind"))
    action = _text(event.get("action"))
    data = event.get("data")
    return HistoryRow(
        when=format_when(event.get("ts"), tz=tz),
        what=texts.kind_label(kind),
        outcome=texts.ACTION_LABELS.get(action, action.capitalize()),
        severity=texts.SEVERITY_LABELS.get(_text(event.get("severity")), _text(event.get("severity"))),
        rule=_rule(event.get("rule")),
        sentence=describe(kind, action, data if isinstance(data, Mapping) else {}),
    )


def format_when(value: object, *, tz: tzinfo | None = None) -> str:
    """`2025-03-03 14:05:00` in local time (or `tz`); text that is not a timestamp is shown as it is."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return _text(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(tz)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def describe(kind: str, action: str, data: Mapping[str, Any]) -> str:
    """The sentence for one event; a generic one for kinds this version does not know."""
    build = _BUILDERS.get(kind)
    if build is None:
        return texts.H_UNKNOWN.format(kind=_quoted(kind))
    return _capitalised(build(action, data))


# --- shared phrases -----------------------------------------------------------------------------------------


def usb_device_phrase(vendor_id: object, product_id: object, label: object = None) -> str:
    """`the USB stick “SANDISK” (0781:5581)`, or as much of it as is known."""
    ids = f"{vendor_id}:{product_id}" if isinstance(vendor_id, str) and isinstance(product_id, str) else ""
    name = _quoted(label) if isinstance(label, str) and label.strip() else ""
    if name and ids:
        return texts.USB_DEVICE_NAMED.format(label=name, ids=ids)
    if ids:
        return texts.USB_DEVICE_IDS.format(ids=ids)
    if name:
        return texts.USB_DEVICE_LABEL_ONLY.format(label=name)
    return texts.USB_DEVICE_UNKNOWN


def counted(count: int, word: str) -> str:
    """`1 event`, `3 events` for a word in `texts.COUNT_WORDS`."""
    singular, plural = texts.COUNT_WORDS.get(word, (word, word))
    return f"{count} {singular if count == 1 else plural}"


def duration_phrase(minutes: int) -> str:
    """`30 minutes`, `1 hour`, `1 hour 30 minutes`, `2 days`."""
    if minutes <= 0:
        return counted(0, "minute")
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [counted(n, word) for n, word in ((days, "day"), (hours, "hour"), (mins, "minute")) if n]
    return " ".join(parts)


def size_phrase(size: int) -> str:
    """`512 bytes`, `2.1 MB` (powers of 1000, as file managers show them)."""
    value = float(size)
    for unit in texts.SIZE_UNITS:
        if value < 1000 or unit == texts.SIZE_UNITS[-1]:
            return f"{size} {unit}" if unit == texts.SIZE_UNITS[0] else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} {texts.SIZE_UNITS[0]}"  # pragma: no cover - the loop always returns


def findings_phrases(findings: object) -> tuple[str, str]:
    """(`2 card numbers and 1 e-mail address`, `XXXX XXXX XXXX 1111, p****@example.com`) from finding summaries.

    Only the detector type, the count and the masked sample are read; the keyed hash is never shown."""
    if not isinstance(findings, Sequence) or isinstance(findings, str):
        return "", ""
    counts: list[str] = []
    samples: list[str] = []
    for item in findings:
        if not isinstance(item, Mapping):
            continue
        kind = _text(item.get("type"))
        label = texts.DETECTOR_LABELS.get(kind, _clip(kind.replace("_", " ")) or "value")
        count = _int(item.get("count"))
        count = 1 if count is None or count < 1 else count
        counts.append(f"{count} {label}{'' if count == 1 else 's'}")
        sample = item.get("sample")
        if isinstance(sample, str) and sample.strip():
            samples.append(_clip(sample))
    return _joined(counts), ", ".join(samples)


# --- per kind ----------------------------------------------------------------------------------------------


def _usb_device(data: Mapping[str, Any]) -> str:
    return usb_device_phrase(data.get("vendor_id"), data.get("product_id"), data.get("label"))


def _usb_mounted(action: str, data: Mapping[str, Any]) -> str:
    device = _usb_device(data)
    if action == "blocked" and data.get("read_only") is True:
        return texts.H_USB_MOUNTED.format(device=device) + texts.READ_ONLY_OUTCOME
    if data.get("present_at_start") is True and action in ("observed", "allowed", ""):
        return texts.H_USB_PRESENT.format(device=device)
    return texts.H_USB_MOUNTED.format(device=device) + _outcome(action)


def _usb_blocked(action: str, data: Mapping[str, Any]) -> str:
    device = _usb_device(data)
    if action == "failed":
        return texts.H_USB_MOUNTED.format(device=device) + _outcome(action)
    if data.get("read_only") is True:
        return texts.H_USB_READ_ONLY.format(device=device)
    return texts.H_USB_BLOCKED.format(device=device)


def _usb_removed(action: str, data: Mapping[str, Any]) -> str:
    return texts.H_USB_REMOVED.format(device=_usb_device(data))


def _usb_exception(action: str, data: Mapping[str, Any]) -> str:
    minutes = _int(data.get("minutes"))
    sentence = texts.H_USB_EXCEPTION.format(
        device=_usb_device(data), duration=duration_phrase(minutes) if minutes else texts.H_SOME_TIME
    )
    reason = data.get("reason")
    if isinstance(reason, str) and reason.strip():
        sentence += texts.H_REASON.format(reason=_clip(reason))
    return sentence


def _download(action: str, data: Mapping[str, Any]) -> str:
    name = data.get("name")
    sentence = (
        texts.H_DOWNLOAD.format(name=_clip(name))
        if isinstance(name, str) and name.strip()
        else texts.H_DOWNLOAD_SOMETHING
    )
    size = _int(data.get("size_bytes"))
    if size is not None and size >= 0:
        sentence += f" ({size_phrase(size)})"
    problems: list[str] = []
    if data.get("blocked_extension") is True:
        extension = _text(data.get("extension")) or "?"
        problems.append(texts.H_DOWNLOAD_BLOCKED_TYPE.format(extension=_clip(extension)))
    if data.get("oversize") is True:
        problems.append(texts.H_DOWNLOAD_OVERSIZE)
    counts, samples = findings_phrases(data.get("findings"))
    if counts:
        problems.append(texts.H_DOWNLOAD_FINDINGS.format(findings=counts))
    if problems:
        sentence += ": " + ", ".join(problems)
    return sentence + _outcome(action) + (f" ({samples})" if samples else "")


def _released(action: str, data: Mapping[str, Any]) -> str:
    return texts.H_DOWNLOAD_RELEASED + _outcome(action)


def _deleted_by_admin(action: str, data: Mapping[str, Any]) -> str:
    return texts.H_DOWNLOAD_DELETED + _outcome(action)


def _clipboard(action: str, data: Mapping[str, Any]) -> str:
    counts, samples = findings_phrases(data.get("findings"))
    sentence = texts.H_CLIPBOARD.format(findings=counts) if counts else texts.H_CLIPBOARD_SOMETHING
    sentence += texts.CLIPBOARD_OUTCOMES.get(action) or _outcome(action)
    return sentence + (f" ({samples})" if samples else "")


def _capture_tool(action: str, data: Mapping[str, Any]) -> str:
    name = data.get("name")
    base = (
        texts.H_CAPTURE_TOOL.format(name=_clip(name))
        if isinstance(name, str) and name.strip()
        else texts.H_CAPTURE_TOOL_UNNAMED
    )
    return base + _outcome(action)


def _capture_terminated(action: str, data: Mapping[str, Any]) -> str:
    return _capture_tool("terminated" if action in ("", "observed") else action, data)


def _capture_hotkey(action: str, data: Mapping[str, Any]) -> str:
    shortcut = data.get("shortcut")
    sentence = (
        texts.H_CAPTURE_HOTKEY.format(shortcut=_clip(shortcut))
        if isinstance(shortcut, str) and shortcut.strip()
        else texts.H_CAPTURE_HOTKEY_UNNAMED
    )
    if data.get("suppressed") is True:
        sentence += texts.H_CAPTURE_SUPPRESSED
    return sentence + (texts.HOTKEY_OUTCOMES.get(action) or _outcome(action))


def _policy_updated(action: str, data: Mapping[str, Any]) -> str:
    version = _int(data.get("version"))
    sentence = texts.H_POLICY_UPDATED.format(version=version if version is not None else "?")
    previous = _int(data.get("previous_version"))
    if previous is not None:
        sentence += texts.H_POLICY_REPLACING.format(previous=previous)
    return sentence


def _policy_rejected(action: str, data: Mapping[str, Any]) -> str:
    offered = _int(data.get("offered_version"))
    why = texts.POLICY_REJECT_REASONS.get(_text(data.get("reason")), texts.POLICY_REJECT_OTHER)
    return texts.H_POLICY_REJECTED.format(
        offered=texts.H_POLICY_OFFERED.format(version=offered) if offered is not None else "", why=why
    )


def _policy_acknowledged(action: str, data: Mapping[str, Any]) -> str:
    version = _int(data.get("version"))
    if version is None:
        return texts.H_POLICY_ACKNOWLEDGED_NO_VERSION
    return texts.H_POLICY_ACKNOWLEDGED.format(version=version)


def _snoozes(data: Mapping[str, Any]) -> str:
    snoozes = _int(data.get("snoozes"))
    return texts.H_CLEANDESK_SNOOZES.format(snoozes=counted(snoozes, "reminder")) if snoozes else ""


def _cleandesk_prompted(action: str, data: Mapping[str, Any]) -> str:
    trigger = texts.CLEANDESK_TRIGGERS.get(_text(data.get("trigger")), "")
    return texts.H_CLEANDESK_PROMPTED.format(trigger=trigger).rstrip()


def _cleandesk_attested(action: str, data: Mapping[str, Any]) -> str:
    items = _int(data.get("items"))
    sentence = texts.H_CLEANDESK_ATTESTED
    if items:
        sentence += texts.H_CLEANDESK_ITEMS.format(items=counted(items, "item"))
    return sentence + _snoozes(data)


def _cleandesk_missed(action: str, data: Mapping[str, Any]) -> str:
    return texts.H_CLEANDESK_MISSED + _snoozes(data)


def _justified(action: str, data: Mapping[str, Any]) -> str:
    reason = _text(data.get("reason"))
    text = _text(data.get("text")).strip()
    if data.get("timed_out") is True:
        return texts.H_JUSTIFIED_TIMEOUT.format(reason=_clip(reason) or "?")
    if reason in ("", "other"):
        return texts.H_JUSTIFIED.format(reason=_clip(text) or "?")
    if text:
        return texts.H_JUSTIFIED_BOTH.format(reason=_clip(reason), text=_clip(text))
    return texts.H_JUSTIFIED.format(reason=_clip(reason))


def _agent_started(action: str, data: Mapping[str, Any]) -> str:
    sentence = texts.H_AGENT_STARTED
    version = data.get("version")
    if isinstance(version, str) and version:
        sentence += texts.H_AGENT_VERSION.format(version=_clip(version))
    if data.get("unclean_previous_stop") is True:
        sentence += texts.H_AGENT_UNCLEAN
    return sentence


def _agent_stopped(action: str, data: Mapping[str, Any]) -> str:
    why = texts.STOP_REASONS.get(_text(data.get("reason")))
    return texts.H_AGENT_STOPPED_WHY.format(why=why) if why else texts.H_AGENT_STOPPED


def _heartbeat(action: str, data: Mapping[str, Any]) -> str:
    return texts.H_HEARTBEAT


def _collector_failed(action: str, data: Mapping[str, Any]) -> str:
    name = _text(data.get("collector"))
    collector = texts.COLLECTOR_LABELS.get(name, _clip(name.replace("_", " ")) or texts.H_SOME_MONITOR)
    template = texts.H_COLLECTOR_GAVE_UP if data.get("gave_up") is True else texts.H_COLLECTOR_FAILED
    return template.format(collector=collector)


def _tamper(action: str, data: Mapping[str, Any]) -> str:
    return texts.TAMPER_REASONS.get(_text(data.get("reason")), texts.H_TAMPER)


def _loss(action: str, data: Mapping[str, Any]) -> str:
    count = _int(data.get("count"))
    events = counted(count, "event") if count is not None else texts.COUNT_WORDS["event"][1].capitalize()
    why = texts.LOSS_REASONS.get(_text(data.get("reason")))
    return texts.H_LOSS_WHY.format(count=events, why=why) if why else texts.H_LOSS.format(count=events)


def _dead_letter(action: str, data: Mapping[str, Any]) -> str:
    count = _int(data.get("count"))
    return texts.H_DEAD_LETTER.format(
        count=counted(count, "event") if count is not None else texts.COUNT_WORDS["event"][1]
    )


def _unlock_used(action: str, data: Mapping[str, Any]) -> str:
    scope = texts.UNLOCK_SCOPES.get(_text(data.get("scope")))
    sentence = texts.H_UNLOCK_USED + (texts.H_UNLOCK_SCOPE.format(scope=scope) if scope else "")
    minutes = _int(data.get("minutes"))
    if scope and minutes is not None and minutes > 0 and data.get("scope") == "quit":
        sentence += texts.H_UNLOCK_FOR.format(duration=duration_phrase(minutes))
    return sentence


_BUILDERS: dict[str, Callable[[str, Mapping[str, Any]], str]] = {
    "usb.mounted": _usb_mounted,
    "usb.blocked": _usb_blocked,
    "usb.removed": _usb_removed,
    "usb.exception_requested": _usb_exception,
    "download.detected": _download,
    "download.quarantined": _download,
    "download.released": _released,
    "download.deleted": _deleted_by_admin,
    "clipboard.sensitive": _clipboard,
    "capture.tool_started": _capture_tool,
    "capture.tool_terminated": _capture_terminated,
    "capture.hotkey": _capture_hotkey,
    "policy.updated": _policy_updated,
    "policy.rejected": _policy_rejected,
    "policy.acknowledged": _policy_acknowledged,
    "cleandesk.prompted": _cleandesk_prompted,
    "cleandesk.attested": _cleandesk_attested,
    "cleandesk.missed": _cleandesk_missed,
    "violation.justified": _justified,
    "agent.started": _agent_started,
    "agent.stopped": _agent_stopped,
    "agent.heartbeat": _heartbeat,
    "agent.collector_failed": _collector_failed,
    "agent.tamper": _tamper,
    "agent.loss": _loss,
    "agent.dead_letter": _dead_letter,
    "agent.unlock_used": _unlock_used,
}
KNOWN_KINDS = frozenset(_BUILDERS)


# --- small helpers ----------------------------------------------------------------------------------------


def _outcome(action: str) -> str:
    return texts.OUTCOME_CLAUSES.get(action, "")


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _clip(value: str) -> str:
    """One line, at most MAX_QUOTED characters: free text must not break the table or hide the rest."""
    line = " ".join(value.split())
    return line if len(line) <= MAX_QUOTED else line[: MAX_QUOTED - 1] + "…"


def _quoted(value: object) -> str:
    return _clip(value) if isinstance(value, str) else ""


def _joined(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _capitalised(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def _rule(value: object) -> str:
    if isinstance(value, Mapping):
        rule_id = _text(value.get("id"))
        version = _int(value.get("policy_version"))
        return f"{rule_id} (v{version if version is not None else '?'})" if rule_id else ""
    return _text(value)
