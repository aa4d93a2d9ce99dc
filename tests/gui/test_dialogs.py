"""Each dialog on its own: gating, validation, timeouts and the signals they emit."""

# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QLabel, QTableWidgetItem
from pytestqt.qtbot import QtBot

from agent_app.core import texts
from agent_app.core.prompts.cleandesk import ShowPrompt, Trigger
from agent_app.core.prompts.justification import Justification
from agent_app.ui.dialogs.about import AboutDialog, UnlockDialog
from agent_app.ui.dialogs.acknowledgement import AcknowledgementDialog
from agent_app.ui.dialogs.cleandesk import CleanDeskDialog
from agent_app.ui.dialogs.notices import BlockNoticeDialog, WarnNoticeDialog
from agent_app.ui.dialogs.transparency import ReportedDialog
from policy_client.schema import Action, JustificationControl
from tests.gui.fake_port import UNLOCK_TOKEN, default_status
from tests.gui.helpers import LONG_POLICY, FakeClock, notice, policy

pytestmark = pytest.mark.gui


def _prompt(left: int = 2, *, first: bool = True) -> ShowPrompt:
    return ShowPrompt(Trigger.scheduled, first, 2 - left, left, FakeClock().now)


# --- acknowledgement -------------------------------------------------------------------------------


def test_ack_checkbox_and_button_unlock_only_after_scrolling_to_the_end(qtbot: QtBot) -> None:
    dialog = AcknowledgementDialog(policy(text=LONG_POLICY))
    qtbot.addWidget(dialog)
    dialog.resize(500, 300)
    dialog.show()
    qtbot.waitExposed(dialog)
    bar = dialog.browser.verticalScrollBar()
    assert bar.maximum() > 0, "the test policy must be long enough to scroll"
    assert not dialog.checkbox.isEnabled()
    assert dialog.ack_button is not None
    assert not dialog.ack_button.isEnabled()
    bar.setValue(bar.maximum() // 2)
    assert not dialog.checkbox.isEnabled()
    bar.setValue(bar.maximum())
    assert dialog.checkbox.isEnabled()
    assert not dialog.ack_button.isEnabled(), "the checkbox must still be ticked"
    dialog.checkbox.setChecked(True)
    assert dialog.ack_button.isEnabled()
    with qtbot.waitSignal(dialog.acknowledged, timeout=1000):
        qtbot.mouseClick(dialog.ack_button, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()


def test_ack_keyboard_only(qtbot: QtBot) -> None:
    dialog = AcknowledgementDialog(policy(text=LONG_POLICY))
    qtbot.addWidget(dialog)
    dialog.resize(500, 300)
    dialog.show()
    qtbot.waitExposed(dialog)
    dialog.browser.setFocus()
    qtbot.keyClick(dialog.browser, Qt.Key.Key_PageDown)
    assert not dialog.checkbox.isEnabled()
    qtbot.keyClick(dialog.browser, Qt.Key.Key_End)
    assert dialog.checkbox.isEnabled()
    dialog.checkbox.setFocus()
    qtbot.keyClick(dialog.checkbox, Qt.Key.Key_Space)
    assert dialog.checkbox.isChecked()
    with qtbot.waitSignal(dialog.acknowledged, timeout=1000):
        qtbot.keyClick(dialog, Qt.Key.Key_Return)


def test_short_policy_needs_no_scrolling_but_still_the_checkbox(qtbot: QtBot) -> None:
    dialog = AcknowledgementDialog(policy(text="# Short\n\nOne line."))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    qtbot.waitUntil(dialog.checkbox.isEnabled, timeout=1000)
    assert dialog.ack_button is not None
    assert not dialog.ack_button.isEnabled()


def test_ack_later_does_not_acknowledge(qtbot: QtBot) -> None:
    dialog = AcknowledgementDialog(policy(text="short"))
    qtbot.addWidget(dialog)
    dialog.show()
    with qtbot.assertNotEmitted(dialog.acknowledged), qtbot.waitSignal(dialog.rejected, timeout=1000):
        qtbot.keyClick(dialog, Qt.Key.Key_Escape)


def test_view_only_policy_has_no_acknowledge_button(qtbot: QtBot) -> None:
    dialog = AcknowledgementDialog(policy(text="text"), view_only=True, note="You acknowledged it.")
    qtbot.addWidget(dialog)
    assert dialog.ack_button is None
    assert "I acknowledge" not in [b.text() for b in dialog.buttons.buttons()]


# --- clean desk ------------------------------------------------------------------------------------


def test_cleandesk_confirm_needs_every_item(qtbot: QtBot) -> None:
    dialog = CleanDeskDialog(["a", "b", "c"], _prompt(), snooze_minutes=5, grace_minutes=15)
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.confirm_button.isEnabled()
    for check in dialog.checks[:2]:
        check.setChecked(True)
    assert not dialog.confirm_button.isEnabled()
    dialog.checks[2].setChecked(True)
    assert dialog.confirm_button.isEnabled()
    with qtbot.waitSignal(dialog.attested, timeout=1000):
        qtbot.keyClick(dialog, Qt.Key.Key_Return)


def test_cleandesk_snooze_button_disabled_at_the_limit(qtbot: QtBot) -> None:
    dialog = CleanDeskDialog(["a"], _prompt(left=1), snooze_minutes=5, grace_minutes=15)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.snooze_button.isEnabled()
    assert "5 min" in dialog.snooze_button.text()
    with qtbot.waitSignal(dialog.snoozed, timeout=1000):
        qtbot.mouseClick(dialog.snooze_button, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()
    dialog.show_prompt(_prompt(left=0, first=False))
    dialog.show()
    assert not dialog.snooze_button.isEnabled()
    assert dialog.snooze_note.text() == texts.CLEANDESK_NO_SNOOZES
    with qtbot.assertNotEmitted(dialog.snoozed):
        qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    assert dialog.isVisible(), "without snoozes left, Esc must not dismiss the checklist"


def test_cleandesk_escape_snoozes_when_allowed(qtbot: QtBot) -> None:
    dialog = CleanDeskDialog(["a"], _prompt(left=2), snooze_minutes=5, grace_minutes=15)
    qtbot.addWidget(dialog)
    dialog.show()
    with qtbot.waitSignal(dialog.snoozed, timeout=1000):
        qtbot.keyClick(dialog, Qt.Key.Key_Escape)


# --- warn notice -----------------------------------------------------------------------------------

JUSTIFY = JustificationControl(min_length=15, reasons=["Customer requested it"], timeout_seconds=60)


def test_warn_notice_explains_rule_and_details(qtbot: QtBot) -> None:
    dialog = WarnNoticeDialog(notice("warn"), JUSTIFY, clock=FakeClock())
    qtbot.addWidget(dialog)
    shown = " ".join(label.text() for label in dialog.findChildren(QLabel))
    assert "not approved" in shown
    assert "usb.warn" in shown
    assert "vendor id: 0781" in shown


def test_warn_notice_free_text_needs_minimum_length(qtbot: QtBot) -> None:
    dialog = WarnNoticeDialog(notice("warn"), JUSTIFY, clock=FakeClock())
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.send_button.isEnabled()
    qtbot.keyClicks(dialog.text, "too short")
    assert not dialog.send_button.isEnabled()
    assert "9 so far" in dialog.validation.text()
    qtbot.keyClicks(dialog.text, " but now long enough")
    assert dialog.send_button.isEnabled()
    with qtbot.waitSignal(dialog.justified, timeout=1000) as blocker:
        qtbot.mouseClick(dialog.send_button, Qt.MouseButton.LeftButton)
    answer = blocker.args[0]
    assert isinstance(answer, Justification)
    assert answer.reason == "other"
    assert answer.text == "too short but now long enough"
    assert not answer.timed_out


def test_warn_notice_listed_reason_is_enough(qtbot: QtBot) -> None:
    dialog = WarnNoticeDialog(notice("warn"), JUSTIFY, clock=FakeClock())
    qtbot.addWidget(dialog)
    dialog.reason.setCurrentIndex(0)
    assert dialog.send_button.isEnabled()
    with qtbot.waitSignal(dialog.justified, timeout=1000) as blocker:
        dialog.send_button.click()
    assert blocker.args[0].reason == "Customer requested it"


def test_warn_notice_timeout_applies_policy_default(qtbot: QtBot) -> None:
    clock = FakeClock()
    dialog = WarnNoticeDialog(notice("warn"), JUSTIFY, clock=clock)
    qtbot.addWidget(dialog)
    dialog.show()
    assert "60 s" in dialog.countdown_label.text()
    clock.advance(seconds=45)
    dialog.tick()
    assert "15 s" in dialog.countdown_label.text()
    assert dialog.answer is None
    clock.advance(seconds=15)
    with qtbot.waitSignal(dialog.justified, timeout=1000) as blocker:
        dialog.tick()
    assert blocker.args[0] == Justification(reason=JUSTIFY.default_on_timeout, text="", timed_out=True)
    assert not dialog.isVisible()
    assert not dialog.timer.isActive()


def test_warn_notice_escape_does_not_dismiss(qtbot: QtBot) -> None:
    dialog = WarnNoticeDialog(notice("warn"), JUSTIFY, clock=FakeClock())
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    assert dialog.isVisible()
    dialog.close()
    assert dialog.isVisible()


# --- block notice ----------------------------------------------------------------------------------


def test_block_notice_offers_exception_request_when_allowed(qtbot: QtBot) -> None:
    dialog = BlockNoticeDialog(notice("block", exception_allowed=True, outcome=Action.blocked), min_reason=10)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.offer is not None
    assert dialog.form is not None
    assert not dialog.form.isVisible()
    qtbot.mouseClick(dialog.offer, Qt.MouseButton.LeftButton)
    assert dialog.form.isVisible()
    assert not dialog.form.send.isEnabled()
    dialog.form.duration.setCurrentIndex(2)
    qtbot.keyClicks(dialog.form.reason, "auditor forms")
    with qtbot.waitSignal(dialog.exception_requested, timeout=1000) as blocker:
        qtbot.keyClick(dialog.form.reason, Qt.Key.Key_Return)
    assert blocker.args == [240, "auditor forms"]
    assert dialog.form.status.text() == texts.EXCEPTION_SENT


def test_block_notice_without_exception_has_no_offer(qtbot: QtBot) -> None:
    dialog = BlockNoticeDialog(notice("block", exception_allowed=False, outcome=Action.blocked))
    qtbot.addWidget(dialog)
    assert dialog.offer is None


def test_failed_enforcement_says_so(qtbot: QtBot) -> None:
    dialog = BlockNoticeDialog(notice("block", outcome=Action.failed))
    qtbot.addWidget(dialog)
    assert any(label.text() == texts.NOTICE_FAILED for label in dialog.findChildren(QLabel))


# --- transparency, about, unlock -------------------------------------------------------------------


def test_reported_view_lists_history_read_only(qtbot: QtBot) -> None:
    rows: list[dict[str, Any]] = [
        {
            "ts": "2025-03-03T09:00:00+00:00",
            "kind": "usb.mounted",
            "action": "blocked",
            "severity": "high",
            "rule": {"id": "usb.block", "policy_version": 7},
            "data": {"vendor_id": "0781", "product_id": "5581", "label": "SANDISK", "mount_point": "/media/p/SANDISK"},
        },
        {"ts": "2025-03-03T08:00:00+00:00", "kind": "policy.acknowledged", "action": "observed", "severity": "info"},
    ]
    dialog = ReportedDialog(rows, retention_days=30, tz=UTC)
    qtbot.addWidget(dialog)
    table = dialog.table
    assert table.rowCount() == 2
    assert table.editTriggers() == table.EditTrigger.NoEditTriggers

    def cell(row: int, column: int) -> str:
        item = table.item(row, column)
        assert isinstance(item, QTableWidgetItem)
        return item.text()

    assert cell(0, 0) == "2025-03-03 09:00:00"
    assert cell(0, 1) == texts.kind_label("usb.mounted")
    assert cell(0, 2) == "Blocked"
    assert cell(0, 4) == "usb.block (v7)"
    assert cell(0, 5) == "You connected the USB stick “SANDISK” (0781:5581); DeskWarden blocked it"
    assert cell(1, 5) == "You acknowledged the policy"
    assert not dialog.empty.isVisibleTo(dialog)


def test_reported_view_shows_sentences_not_raw_metadata(qtbot: QtBot) -> None:
    """Regression: the view used to dump each event's data as JSON (keys, hashes, paths and all)."""
    finding = {"type": "card", "count": 2, "sample": "XXXX XXXX XXXX 1111", "hash": "0b26c1f3d9e2"}
    rows: list[dict[str, Any]] = [
        {
            "ts": "2025-03-03T09:00:00+00:00",
            "kind": "clipboard.sensitive",
            "action": "masked",
            "severity": "high",
            "rule": {"id": "clipboard.mask", "policy_version": 7},
            "data": {"findings": [finding], "length": 40, "format": "text/plain", "scan_truncated": False},
        }
    ]
    dialog = ReportedDialog(rows, retention_days=30)
    qtbot.addWidget(dialog)
    shown = [dialog.table.item(0, column).text() for column in range(dialog.table.columnCount())]  # type: ignore[union-attr]
    assert shown[5] == "You copied 2 card numbers; the clipboard was masked (XXXX XXXX XXXX 1111)"
    assert not any(mark in text for text in shown for mark in ("{", "findings", "0b26c1f3d9e2", "scan_truncated"))


def test_reported_view_empty(qtbot: QtBot) -> None:
    dialog = ReportedDialog([], retention_days=30)
    qtbot.addWidget(dialog)
    assert dialog.empty.isVisibleTo(dialog)


def test_about_shows_device_and_user(qtbot: QtBot) -> None:
    dialog = AboutDialog(default_status(), user="priya.n")
    qtbot.addWidget(dialog)
    assert any("dev-7f3a" in label.text() for label in dialog.findChildren(QLabel))


def test_unlock_dialog_asks_for_the_administrators_token_and_shows_refusal(qtbot: QtBot) -> None:
    dialog = UnlockDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    shown = " ".join(label.text() for label in dialog.findChildren(QLabel))
    assert "unlock token from your administrator" in shown
    assert "unlock code" not in shown.lower()
    qtbot.keyClicks(dialog.token, "1234")
    with qtbot.waitSignal(dialog.token_entered, timeout=1000) as blocker:
        qtbot.keyClick(dialog.token, Qt.Key.Key_Return)
    assert blocker.args == ["1234"]
    dialog.refuse()
    assert dialog.error.isVisible()
    assert dialog.token.textCursor().selectedText() == "1234", "kept and selected, so the next paste replaces it"


def test_unlock_dialog_takes_a_long_pasted_token_whole_without_whitespace(qtbot: QtBot) -> None:
    dialog = UnlockDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    # As it arrives from an e-mail: leading blanks, a line break in the middle, a trailing newline.
    QGuiApplication.clipboard().setText("  " + UNLOCK_TOKEN[:61] + "\r\n" + UNLOCK_TOKEN[61:] + " \n")
    dialog.token.setFocus()
    dialog.token.paste()
    with qtbot.waitSignal(dialog.token_entered, timeout=1000) as blocker:
        dialog.quit_button.click()
    assert blocker.args == [UNLOCK_TOKEN]
    assert len(UNLOCK_TOKEN) > 120
    assert dialog.token.toPlainText().count("DW1-") == 1, "shown as pasted, nothing cut off"


def test_unlock_dialog_refuses_a_mistaken_huge_paste_instead_of_cutting_it(qtbot: QtBot) -> None:
    dialog = UnlockDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.token.setPlainText("Dear Priya, here is the token you asked for: " + UNLOCK_TOKEN * 40)
    with qtbot.assertNotEmitted(dialog.token_entered):
        dialog.quit_button.click()
    assert dialog.error.isVisible()


def test_unlock_dialog_ignores_an_empty_or_blank_entry(qtbot: QtBot) -> None:
    dialog = UnlockDialog()
    qtbot.addWidget(dialog)
    qtbot.keyClicks(dialog.token, "   ")
    with qtbot.assertNotEmitted(dialog.token_entered):
        dialog.quit_button.click()
