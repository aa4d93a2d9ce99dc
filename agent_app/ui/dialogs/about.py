"""The About window and the unlock-token prompt shown by "Quit…" when policy keeps the agent running.

GUI thread only.
"""

from __future__ import annotations

import html

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QFontDatabase, QKeyEvent, QTextOption
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QWidget

from agent_app import __version__
from agent_app.core import texts
from agent_app.core.status import AgentStatus
from agent_app.ui.dialogs.common import dialog_layout, prepare, set_width_in_chars, wrapped

MAX_TOKEN_CHARS = 4096
"""Far above any token the endpoint issues (about 120 characters). Longer input is refused, never cut short,
and never sent to the service: it is a mistaken paste, not a token."""
TOKEN_LINES = 3
"""Rows of the token field: a 120-character token wraps onto about two at the field's width."""


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
    """Asks for the unlock token an administrator issued; the tray checks it with `AgentPort.may_quit(token)`.

    Tokens are long (about 120 characters) and usually pasted, often with line breaks from an e-mail or chat
    window. The field wraps so the whole token stays visible (the person can see the paste is complete; it is
    bound to this PC, time-limited and its use is reported), has no length limit that could cut a paste
    short, and whitespace anywhere in it is dropped. Enter submits.
    """

    token_entered = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        prepare(self, texts.UNLOCK_TITLE)
        layout = dialog_layout(self)
        intro = wrapped(texts.UNLOCK_TEXT)
        set_width_in_chars(intro, 60)
        layout.addWidget(intro)
        label = QLabel(texts.UNLOCK_LABEL)
        layout.addWidget(label)
        self.token = QPlainTextEdit()
        self.token.setPlaceholderText(texts.UNLOCK_PLACEHOLDER)
        self.token.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.token.setWordWrapMode(QTextOption.WrapMode.WrapAnywhere)
        self.token.setTabChangesFocus(True)
        self.token.setAccessibleName(texts.UNLOCK_LABEL)
        lines = self.token.fontMetrics().lineSpacing() * TOKEN_LINES
        margins = self.token.contentsMargins()
        frame = 2 * (self.token.frameWidth() + int(self.token.document().documentMargin()))
        self.token.setFixedHeight(lines + frame + margins.top() + margins.bottom())
        set_width_in_chars(self.token, 60)
        self.token.installEventFilter(self)
        label.setBuddy(self.token)
        layout.addWidget(self.token)
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
        self.token.setFocus()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # A multi-line field would take Enter as a line break; here Enter means "Quit", as in any dialog.
        is_enter = isinstance(event, QKeyEvent) and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if watched is self.token and event.type() == QEvent.Type.KeyPress and is_enter:
            self._submit()
            return True
        return super().eventFilter(watched, event)

    def entered_token(self) -> str:
        """What was typed or pasted, without spaces, tabs or line breaks anywhere in it."""
        return "".join(self.token.toPlainText().split())

    def refuse(self) -> None:
        """Keep the text (a 120-character paste is tedious to redo) and select it, so a new paste replaces it."""
        self.error.setVisible(True)
        self.token.setFocus()
        self.token.selectAll()

    def _submit(self) -> None:
        token = self.entered_token()
        if len(token) > MAX_TOKEN_CHARS:
            self.refuse()  # a whole e-mail pasted by mistake: say so instead of sending it anywhere
        elif token:
            self.token_entered.emit(token)
