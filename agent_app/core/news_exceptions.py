"""What changed in this PC's USB exceptions: approvals travel inside the next signed policy
(`controls.usb.exceptions`, added by central/store/exception_requests.py), so comparing two policies tells the
person "approved until 17:00", "extended", "withdrawn", and the tray's timer tells them "ended".

Pure functions; the tray calls them on the GUI thread from its policy listener and its 30 s prompt timer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal

from agent_app.core import texts
from agent_app.core.history_text import usb_device_phrase
from policy_client.schema import PolicyDocument, UsbException

ChangeKind = Literal["granted", "extended", "shortened", "withdrawn", "ended"]
DeviceKey = tuple[str, str, str | None]
"""(vendor id, product id, serial or None for any serial), ids in lower case."""

_USB_KINDS = frozenset({"usb.mounted", "usb.blocked", "usb.removed", "usb.exception_requested"})


@dataclass(frozen=True, slots=True)
class ExceptionChange:
    change: ChangeKind
    exception: UsbException
    """The exception as it stands now (for `withdrawn` and `ended`: as it was)."""
    previous_expiry: datetime | None = None


def exception_key(exception: UsbException) -> DeviceKey:
    return (exception.vendor_id.lower(), exception.product_id.lower(), exception.serial)


def applies_to(exception: UsbException, device_id: str | None) -> bool:
    """An exception without a device id reaches every PC the policy reaches; one with an id only that PC."""
    return exception.device_id is None or exception.device_id == device_id


def _latest(policy: PolicyDocument | None, device_id: str | None) -> dict[DeviceKey, UsbException]:
    """Per device key, the applicable exception that runs longest (approvals are appended, so a stick approved
    twice has two entries; the later expiry is the one in force)."""
    latest: dict[DeviceKey, UsbException] = {}
    if policy is None:
        return latest
    for exception in policy.controls.usb.exceptions:
        if not applies_to(exception, device_id):
            continue
        key = exception_key(exception)
        known = latest.get(key)
        if known is None or exception.expires_at > known.expires_at:
            latest[key] = exception
    return latest


def active_exceptions(policy: PolicyDocument, *, device_id: str | None, now: datetime) -> list[UsbException]:
    """The exceptions in force on this PC at `now`, soonest to end first."""
    active = [e for e in _latest(policy, device_id).values() if e.expires_at > now]
    return sorted(active, key=lambda e: e.expires_at)


def exception_changes(
    old: PolicyDocument | None, new: PolicyDocument, *, device_id: str | None, now: datetime
) -> list[ExceptionChange]:
    """What a policy update changed for this PC: new grants, longer or shorter ones, and withdrawn ones.

    An exception that had already ended before the update (and is cleaned out by it) is not news."""
    before = _latest(old, device_id)
    after = _latest(new, device_id)
    changes: list[ExceptionChange] = []
    for key, exception in after.items():
        was = before.get(key)
        if exception.expires_at <= now:
            if was is not None and was.expires_at > now:
                changes.append(ExceptionChange("withdrawn", was, was.expires_at))
            continue
        if was is None or was.expires_at <= now:
            changes.append(ExceptionChange("granted", exception))
        elif exception.expires_at > was.expires_at:
            changes.append(ExceptionChange("extended", exception, was.expires_at))
        elif exception.expires_at < was.expires_at:
            changes.append(ExceptionChange("shortened", exception, was.expires_at))
    for key, was in before.items():
        if key not in after and was.expires_at > now:
            changes.append(ExceptionChange("withdrawn", was, was.expires_at))
    return sorted(changes, key=lambda c: (c.exception.expires_at, exception_key(c.exception)))


def exceptions_ended(
    policy: PolicyDocument, *, device_id: str | None, since: datetime, now: datetime
) -> list[ExceptionChange]:
    """Exceptions in `policy` that ran out in (`since`, `now`]: no policy update announces those."""
    ended = [e for e in _latest(policy, device_id).values() if since < e.expires_at <= now]
    return [ExceptionChange("ended", e) for e in sorted(ended, key=lambda e: e.expires_at)]


def device_labels(history: Iterable[Mapping[str, Any]]) -> dict[DeviceKey, str]:
    """Volume labels of USB sticks seen in this PC's history (`usb.*` events), so a message can say “SANDISK”
    instead of only 0781:5581. The newest label wins; each is also filed under the any-serial key."""
    labels: dict[DeviceKey, str] = {}
    for event in history:
        data = event.get("data")
        if event.get("kind") not in _USB_KINDS or not isinstance(data, Mapping):
            continue
        vendor, product, serial, label = (data.get(k) for k in ("vendor_id", "product_id", "serial", "label"))
        if not (isinstance(vendor, str) and isinstance(product, str) and isinstance(label, str) and label.strip()):
            continue
        ids = (vendor.lower(), product.lower())
        if isinstance(serial, str):
            labels.setdefault((*ids, serial), label)
        labels.setdefault((*ids, None), label)
    return labels


def until_phrase(moment: datetime, *, now: datetime, tz: tzinfo | None = None) -> str:
    """`17:00` today, `2025-03-04 17:00` on another day (local time, or `tz`)."""
    local, today = moment.astimezone(tz), now.astimezone(tz)
    return local.strftime("%H:%M") if local.date() == today.date() else local.strftime("%Y-%m-%d %H:%M")


def device_phrase(exception: UsbException, labels: Mapping[DeviceKey, str] | None = None) -> str:
    key = exception_key(exception)
    label = None
    if labels:
        label = labels.get(key) or labels.get((key[0], key[1], None))
    return usb_device_phrase(exception.vendor_id, exception.product_id, label)


def change_message(
    change: ExceptionChange,
    *,
    now: datetime,
    tz: tzinfo | None = None,
    labels: Mapping[DeviceKey, str] | None = None,
) -> tuple[str, str]:
    """(title, body) of the tray notification for one change."""
    exception = change.exception
    device = device_phrase(exception, labels)
    until = until_phrase(exception.expires_at, now=now, tz=tz)
    if change.change == "granted":
        body = texts.NEWS_GRANTED if exception.device_id is not None else texts.NEWS_GRANTED_EVERYONE
        return texts.NEWS_GRANTED_TITLE, _capitalised(body.format(device=device, until=until))
    templates: dict[ChangeKind, tuple[str, str]] = {
        "extended": (texts.NEWS_EXTENDED_TITLE, texts.NEWS_EXTENDED),
        "shortened": (texts.NEWS_SHORTENED_TITLE, texts.NEWS_SHORTENED),
        "withdrawn": (texts.NEWS_WITHDRAWN_TITLE, texts.NEWS_WITHDRAWN),
        "ended": (texts.NEWS_ENDED_TITLE, texts.NEWS_ENDED),
    }
    title, body = templates[change.change]
    return title, _capitalised(body.format(device=device, until=until))


def active_lines(
    policy: PolicyDocument,
    *,
    device_id: str | None,
    now: datetime,
    tz: tzinfo | None = None,
    labels: Mapping[DeviceKey, str] | None = None,
) -> list[str]:
    """Tray menu lines for the exceptions in force, so the person can check them after the notification."""
    return [
        texts.STATUS_EXCEPTION.format(device=device_phrase(e, labels), until=until_phrase(e.expires_at, now=now, tz=tz))
        for e in active_exceptions(policy, device_id=device_id, now=now)
    ]


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]
