"""Policy acknowledgement dialog (and the read-only "View policy" window): Markdown text that must be scrolled
to the end before the checkbox and "I acknowledge" become available.

GUI thread only; emits `acknowledged` and leaves recording to the tray.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QCheckBox, QDialog, QDialogButtonBox, QPushButton, QTextBrowser, QWidget

from agent_app.core import texts
from agent_app.ui.dialogs.common import dialog_layout, prepare, set_width_in_chars, wrapped
from policy_client.schema import PolicyDocument


class AcknowledgementDialog(QDialog):
    acknowledged = Signal()

    def __init__(
        self, policy: PolicyDocument, *, view_only: bool = False, note: str = "", parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        prepare(self, texts.POLICY_VIEW_TITLE if view_only else texts.ACK_TITLE)
        self.policy = policy
        self.view_only = view_only
        intro = (
            texts.ACK_INTRO.format(version=policy.version, org=policy.org)
            if policy.org
            else texts.ACK_INTRO_NO_ORG.format(version=policy.version)
        )
        layout = dialog_layout(self)
        layout.addWidget(wrapped(note if view_only and note else intro))
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(False)
        self.browser.setOpenLinks(False)
        self.browser.setMarkdown(policy.controls.acknowledgement.text_markdown)
        self.browser.setAccessibleName(texts.POLICY_VIEW_TITLE)
        set_width_in_chars(self.browser, 84)
        self.browser.setMinimumHeight(self.browser.fontMetrics().lineSpacing() * 20)
        layout.addWidget(self.browser, 1)
        self.hint = wrapped(texts.ACK_SCROLL_HINT)
        self.checkbox = QCheckBox(texts.ACK_CHECKBOX)
        self.buttons = QDialogButtonBox()
        if view_only:
            self.ack_button: QPushButton | None = None
            close = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
            close.setText(texts.CLOSE)
            close.setDefault(True)
            self.buttons.rejected.connect(self.reject)
        else:
            layout.addWidget(self.hint)
            layout.addWidget(self.checkbox)
            self.checkbox.setEnabled(False)
            self.ack_button = self.buttons.addButton(texts.ACK_BUTTON, QDialogButtonBox.ButtonRole.AcceptRole)
            self.ack_button.setEnabled(False)
            self.ack_button.setDefault(True)
            later = self.buttons.addButton(texts.ACK_LATER, QDialogButtonBox.ButtonRole.RejectRole)
            later.setAutoDefault(False)
            self.buttons.accepted.connect(self._acknowledge)
            self.buttons.rejected.connect(self.reject)
            self.checkbox.toggled.connect(self.ack_button.setEnabled)
            bar = self.browser.verticalScrollBar()
            bar.valueChanged.connect(self._check_scrolled)
            bar.rangeChanged.connect(self._check_scrolled)
        layout.addWidget(self.buttons)
        self.setTabOrder(self.browser, self.checkbox)
        self.browser.setFocus()

    @property
    def scrolled_to_end(self) -> bool:
        bar = self.browser.verticalScrollBar()
        return bar.value() >= bar.maximum()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._check_scrolled()

    def _check_scrolled(self, *_args: int) -> None:
        if self.view_only or self.checkbox.isEnabled() or not self.isVisible():
            return
        if self.scrolled_to_end:
            self.checkbox.setEnabled(True)
            self.hint.setVisible(False)

    def _acknowledge(self) -> None:
        if not self.checkbox.isChecked():
            return
        self.acknowledged.emit()
        self.accept()
