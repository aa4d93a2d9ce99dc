"""The About window and the admin unlock-code prompt shown by "Quit…" when policy keeps the agent running.

GUI thread only.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QWidget

from agent_app import __version__
from agent_app.core import texts
from agent_app.core.status import AgentStatus
from agent_app.ui.dialogs.common import dialog_layout, prepare, set_width_in_chars, wrapped


class AboutDialog(QDialog):
    def __init__(self, status: AgentStatus, *, user: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        prepare(self, texts.ABOUT_TITLE)
        layout = dialog_layout(self)
        body = texts.ABOUT_TEXT.format(
            version=html.escape(__version__),
            device=html.escape(status.device_id or texts.ABOUT_NOT_ENROLLED),
            user=html.escape(user),
            server=html.escape(status.server_url or texts.ABOUT_NOT_ENROLLED),
            policy=status.policy_version,
        )
        label = wrapped(body, rich=True)
        set_width_in_chars(label, 48)
        layout.addWidget(label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close = buttons.button(QDialogButtonBox.StandardButton.Close)
        close.setText(texts.CLOSE)
        close.setDefault(True)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


class UnlockDialog(QDialog):
    """Asks for the admin unlock code; the tray checks it with `AgentPort.may_quit(code)`."""

    code_entered = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        prepare(self, texts.UNLOCK_TITLE)
        layout = dialog_layout(self)
        intro = wrapped(texts.UNLOCK_TEXT)
        set_width_in_chars(intro, 52)
        layout.addWidget(intro)
        form = QFormLayout()
        self.code = QLineEdit()
        self.code.setEchoMode(QLineEdit.EchoMode.Password)
        form.addRow(texts.UNLOCK_LABEL, self.code)
        layout.addLayout(form)
        self.error = QLabel(texts.UNLOCK_REFUSED)
        self.error.setWordWrap(True)
        self.error.setVisible(False)
        layout.addWidget(self.error)
        buttons = QDialogButtonBox()
        self.quit_button = buttons.addButton(texts.UNLOCK_OK, QDialogButtonBox.ButtonRole.AcceptRole)
        self.quit_button.setDefault(True)
        cancel = buttons.addButton(texts.CANCEL, QDialogButtonBox.ButtonRole.RejectRole)
        cancel.setAutoDefault(False)
        buttons.accepted.connect(self._submit)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.code.setFocus()

    def refuse(self) -> None:
        self.error.setVisible(True)
        self.code.clear()
        self.code.setFocus()

    def _submit(self) -> None:
        code = self.code.text()
        if code:
            self.code_entered.emit(code)
