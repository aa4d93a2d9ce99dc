"""Violation notices: the warn notice asks for a justification with a visible countdown (timeout applies the
policy default); the block notice explains and, where policy allows, offers an exception request.

GUI thread only; answers leave as signals (`justified`, `exception_requested`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from agent_app.core import texts
from agent_app.core.pipeline import Notice
from agent_app.core.prompts.justification import (
    Justification,
    JustificationCountdown,
    shortfall,
    timed_out,
    validate,
)
from agent_app.ui.dialogs.common import details_text, dialog_layout, prepare, set_width_in_chars, wrapped
from agent_app.ui.dialogs.exception import ExceptionForm, device_line
from policy_client.schema import Action, JustificationControl, utc_now

WARN_ACTIONS = frozenset({"warn"})
BLOCK_ACTIONS = frozenset({"block", "terminate", "quarantine", "delete", "mask", "clear", "read_only"})
COUNTDOWN_TICK_MS = 1000


def _explanation(notice: Notice, layout: QVBoxLayout) -> None:
    decision = notice.decision
    message = decision.message or texts.kind_label(notice.kind)
    layout.addWidget(wrapped(message, bold=True))
    if notice.outcome is Action.failed:
        layout.addWidget(wrapped(texts.NOTICE_FAILED))
    if decision.rule_id:
        rule = wrapped(texts.NOTICE_RULE.format(rule=decision.rule_id, version=decision.policy_version))
        layout.addWidget(rule)
    details = details_text(notice.summary)
    if details:
        box = QLabel(details)
        box.setWordWrap(True)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.setFrameShape(QLabel.Shape.StyledPanel)
        box.setMargin(box.fontMetrics().averageCharWidth())
        box.setAccessibleName(texts.NOTICE_DETAILS)
        layout.addWidget(box)


class WarnNoticeDialog(QDialog):
    justified = Signal(object)
    """Emitted once with a `Justification` (answered, or the policy default on timeout)."""

    def __init__(
        self,
        notice: Notice,
        control: JustificationControl,
        *,
        clock: Callable[[], datetime] = utc_now,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        prepare(self, texts.WARN_TITLE)
        self.notice = notice
        self.control = control
        self.answer: Justification | None = None
        self.countdown = JustificationCountdown(control, clock=clock)
        layout = dialog_layout(self)
        _explanation(notice, layout)
        layout.addSpacing(self.fontMetrics().lineSpacing() // 2)
        prompt = wrapped(texts.JUSTIFY_PROMPT.format(min_length=control.min_length))
        set_width_in_chars(prompt, 60)
        layout.addWidget(prompt)
        form = QFormLayout()
        self.reason = QComboBox()
        for reason in control.reasons:
            self.reason.addItem(reason, reason)
        self.reason.addItem(texts.JUSTIFY_OWN, None)
        self.reason.setCurrentIndex(self.reason.count() - 1)
        form.addRow(texts.JUSTIFY_PICK, self.reason)
        self.text = QPlainTextEdit()
        self.text.setPlaceholderText(texts.JUSTIFY_PLACEHOLDER)
        self.text.setTabChangesFocus(True)
        self.text.setFixedHeight(self.text.fontMetrics().lineSpacing() * 4)
        form.addRow(texts.JUSTIFY_TEXT_LABEL, self.text)
        layout.addLayout(form)
        self.validation = wrapped("")
        layout.addWidget(self.validation)
        self.countdown_label = wrapped("")
        layout.addWidget(self.countdown_label)
        self.buttons = QDialogButtonBox()
        self.send_button: QPushButton = self.buttons.addButton(
            texts.JUSTIFY_SEND, QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.send_button.setDefault(True)
        self.buttons.accepted.connect(self._send)
        layout.addWidget(self.buttons)
        self.reason.currentIndexChanged.connect(self._update)
        self.text.textChanged.connect(self._update)
        self.timer = QTimer(self)
        self.timer.setInterval(COUNTDOWN_TICK_MS)
        self.timer.timeout.connect(self.tick)
        self.timer.start()
        self.setTabOrder(self.reason, self.text)
        self.setTabOrder(self.text, self.send_button)
        self.reason.setFocus()
        self._update()
        self.tick()

    def current(self) -> Justification | None:
        reason = self.reason.currentData()
        return validate(self.control, reason=reason if isinstance(reason, str) else None, text=self.text.toPlainText())

    def tick(self) -> None:
        """Refresh the countdown; apply the policy default once it reaches zero."""
        if self.answer is not None:
            return
        remaining = self.countdown.remaining()
        self.countdown_label.setText(
            texts.JUSTIFY_COUNTDOWN.format(seconds=remaining, default=self.control.default_on_timeout)
        )
        if remaining <= 0:
            self._finish(timed_out(self.control))

    def reject(self) -> None:
        """Esc does not dismiss the question: the countdown applies the policy default instead."""

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.answer is None:
            event.ignore()
            return
        super().closeEvent(event)

    def _update(self, *_args: object) -> None:
        answer = self.current()
        self.send_button.setEnabled(answer is not None)
        missing = shortfall(self.control, self.text.toPlainText())
        if answer is None:
            count = len(self.text.toPlainText().strip())
            self.validation.setText(texts.JUSTIFY_TOO_SHORT.format(min_length=self.control.min_length, count=count))
        else:
            self.validation.setText("")
        self.validation.setVisible(answer is None and missing > 0)

    def _send(self) -> None:
        answer = self.current()
        if answer is not None:
            self._finish(answer)

    def _finish(self, answer: Justification) -> None:
        self.answer = answer
        self.timer.stop()
        self.justified.emit(answer)
        self.accept()


class BlockNoticeDialog(QDialog):
    exception_requested = Signal(int, str)

    def __init__(self, notice: Notice, *, min_reason: int = 10, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        prepare(self, texts.BLOCK_TITLE)
        self.notice = notice
        layout = dialog_layout(self)
        _explanation(notice, layout)
        self.form: ExceptionForm | None = None
        self.offer: QPushButton | None = None
        vendor, product = notice.summary.get("vendor_id"), notice.summary.get("product_id")
        if notice.decision.exception_allowed and isinstance(vendor, str) and isinstance(product, str):
            serial = notice.summary.get("serial")
            self.offer = QPushButton(texts.EXCEPTION_OFFER)
            self.offer.setAutoDefault(False)
            layout.addWidget(self.offer)
            device = device_line(vendor, product, serial if isinstance(serial, str) else None)
            self.form = ExceptionForm(min_reason=min_reason, device=device)
            self.form.setVisible(False)
            self.form.requested.connect(self.exception_requested)
            self.offer.clicked.connect(self.show_exception_form)
            layout.addWidget(self.form)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close = buttons.button(QDialogButtonBox.StandardButton.Close)
        close.setText(texts.CLOSE)
        close.setDefault(True)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        set_width_in_chars(self, 60)

    def show_exception_form(self) -> None:
        if self.form is None or self.offer is None:
            return
        self.offer.setVisible(False)
        self.form.setVisible(True)
        self.form.reason.setFocus()
        self.adjustSize()
