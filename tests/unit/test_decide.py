"""decide(): what the agent does about an observation under each control's modes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent_app.core.decide import decide
from policy_client.schema import (
    ClipboardControl,
    Controls,
    DownloadsControl,
    EventDraft,
    EventKind,
    PolicyDocument,
    ScreenCaptureControl,
    Severity,
    UsbControl,
    UsbDeviceId,
    UsbException,
)

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
STICK = {"vendor_id": "0781", "product_id": "5581", "serial": "4C530001"}


def policy(**controls: object) -> PolicyDocument:
    return PolicyDocument(version=7, controls=Controls(**controls))  # type: ignore[arg-type]


def usb_draft(**data: str) -> EventDraft:
    return EventDraft(kind=EventKind.usb_mounted, data={**STICK, **data})


@pytest.mark.parametrize(
    ("mode", "action"),
    [("off", "ignore"), ("audit", "audit"), ("warn", "warn"), ("block", "block"), ("read_only", "read_only")],
)
def test_usb_modes_for_an_unknown_stick(mode: str, action: str) -> None:
    decision = decide(usb_draft(), policy(usb=UsbControl(mode=mode)), now=NOW)  # type: ignore[arg-type]
    assert decision.action == action
    assert decision.policy_version == 7


def test_usb_allow_list_matches_vendor_product_and_serial() -> None:
    allow = [UsbDeviceId(vendor_id="0781", product_id="5581", serial="4C530001")]
    blocked = policy(usb=UsbControl(mode="block", allow=allow))
    assert decide(usb_draft(), blocked, now=NOW).action == "audit"
    assert decide(usb_draft(serial="OTHER"), blocked, now=NOW).action == "block"


def test_usb_exception_is_time_boxed_and_device_scoped() -> None:
    exception = UsbException(vendor_id="0781", product_id="5581", expires_at=NOW + timedelta(hours=1), device_id="d1")
    blocked = policy(usb=UsbControl(mode="block", exceptions=[exception]))
    assert decide(usb_draft(), blocked, device_id="d1", now=NOW).action == "audit"
    assert decide(usb_draft(), blocked, device_id="d2", now=NOW).action == "block"
    assert decide(usb_draft(), blocked, device_id="d1", now=NOW + timedelta(hours=2)).action == "block"


def test_usb_block_offers_an_exception_only_when_policy_allows() -> None:
    assert decide(usb_draft(), policy(usb=UsbControl(mode="block")), now=NOW).exception_allowed
    denied = policy(usb=UsbControl(mode="block", exceptions_allowed=False))
    assert not decide(usb_draft(), denied, now=NOW).exception_allowed


def download(**data: object) -> EventDraft:
    return EventDraft(kind=EventKind.download_detected, data=data)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("quarantine_on", "data", "action"),
    [
        ("blocked", {"blocked_extension": True}, "quarantine"),
        ("blocked", {"findings": [{"type": "card"}]}, "audit"),
        ("sensitive", {"findings": [{"type": "card"}]}, "quarantine"),
        ("sensitive", {}, "audit"),
        ("any", {}, "quarantine"),
    ],
)
def test_download_quarantine_applies_to_what_policy_names(
    quarantine_on: str, data: dict[str, object], action: str
) -> None:
    control = DownloadsControl(mode="quarantine", quarantine_on=quarantine_on)  # type: ignore[arg-type]
    assert decide(download(**data), policy(downloads=control)).action == action


def test_download_with_findings_is_high_severity_and_warn_mode_warns() -> None:
    decision = decide(download(findings=[{"type": "aadhaar"}]), policy(downloads=DownloadsControl(mode="warn")))
    assert decision.action == "warn"
    assert decision.severity is Severity.high
    assert decide(download(), policy(downloads=DownloadsControl(mode="warn"))).action == "audit"


ENCRYPTED = {"encrypted": True, "encrypted_members": 1}


@pytest.mark.parametrize(
    ("mode", "encrypted_archives", "action", "rule"),
    [
        ("audit", "audit", "audit", "downloads.audit"),
        ("audit", "warn", "warn", "downloads.encrypted_warn"),
        ("audit", "quarantine", "quarantine", "downloads.encrypted_quarantine"),
        ("warn", "quarantine", "quarantine", "downloads.encrypted_quarantine"),
        ("quarantine", "warn", "warn", "downloads.encrypted_warn"),  # quarantine_on "blocked": this file is not
        ("delete", "quarantine", "quarantine", "downloads.encrypted_quarantine"),
        ("off", "quarantine", "ignore", "downloads.off"),
    ],
)
def test_encrypted_download_gets_the_stronger_of_mode_and_encrypted_archives(
    mode: str, encrypted_archives: str, action: str, rule: str
) -> None:
    control = DownloadsControl(mode=mode, encrypted_archives=encrypted_archives)  # type: ignore[arg-type]
    decision = decide(download(**ENCRYPTED), policy(downloads=control))
    assert (decision.action, decision.rule_id) == (action, rule)
    if rule.startswith("downloads.encrypted"):
        assert decision.severity is Severity.medium
        assert "encrypted" in decision.message


def test_encrypted_archives_leaves_stronger_rules_and_readable_files_alone() -> None:
    control = DownloadsControl(mode="delete", quarantine_on="any", encrypted_archives="quarantine")
    assert decide(download(**ENCRYPTED), policy(downloads=control)).action == "delete"
    warn = DownloadsControl(mode="audit", encrypted_archives="warn")
    assert decide(download(), policy(downloads=warn)).action == "audit"
    assert decide(download(encrypted=False), policy(downloads=warn)).action == "audit"


def test_encrypted_archives_is_validated_and_old_policies_without_it_load() -> None:
    assert DownloadsControl().encrypted_archives == "audit"
    old = PolicyDocument.model_validate_json(
        '{"version": 3, "controls": {"downloads": {"mode": "quarantine", "quarantine_on": "sensitive"}}}'
    )
    assert old.controls.downloads.encrypted_archives == "audit"
    with pytest.raises(ValueError, match="encrypted_archives"):
        DownloadsControl.model_validate({"encrypted_archives": "delete"})


@pytest.mark.parametrize("mode", ["audit", "warn", "clear", "mask"])
def test_clipboard_mode_is_the_action(mode: str) -> None:
    draft = EventDraft(kind=EventKind.clipboard_sensitive)
    assert decide(draft, policy(clipboard=ClipboardControl(mode=mode))).action == mode  # type: ignore[arg-type]


def test_capture_block_terminates_tools_and_clears_hotkey_screenshots() -> None:
    blocked = policy(screen_capture=ScreenCaptureControl(mode="block"))
    assert decide(EventDraft(kind=EventKind.capture_tool_started), blocked).action == "terminate"
    assert decide(EventDraft(kind=EventKind.capture_hotkey), blocked).action == "clear"
    no_hotkeys = policy(screen_capture=ScreenCaptureControl(mode="block", hotkeys=False))
    assert decide(EventDraft(kind=EventKind.capture_hotkey), no_hotkeys).action == "ignore"


def test_agent_events_are_recorded_as_raised() -> None:
    draft = EventDraft(kind=EventKind.agent_loss, severity=Severity.high)
    decision = decide(draft, policy())
    assert decision.action == "audit"
    assert decision.severity is Severity.high
