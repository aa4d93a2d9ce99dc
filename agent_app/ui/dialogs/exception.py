"""The exception request form (duration + reason) used inside the block notice and from the tray menu.

GUI thread only; emits `requested(minutes, reason)`.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from agent_app.core import texts
from agent_app.ui.dialogs.common import dialog_layout, prepare, set_width_in_chars, wrapped


def device_line(vendor_id: str, product_id: str, serial: str | None) -> str:
    return texts.EXCEPTION_DEVICE.format(vendor=vendor_id, product=product_id, serial=f" ({serial})" if serial else "")


class ExceptionForm(QWidget):
    requested = Signal(int, str)

    def __init__(self, *, min_reason: int, device: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._min_reason = min_reason
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        if device:
            layout.addWidget(wrapped(device, bold=True))
        layout.addWidget(wrapped(texts.EXCEPTION_INTRO))
        form = QFormLayout()
        self.duration = QComboBox()
        for minutes, label in texts.EXCEPTION_DURATIONS:
            self.duration.addItem(label, minutes)
        self.duration.setCurrentIndex(1)
        self.reason = QLineEdit()
        self.reason.setPlaceholderText(texts.EXCEPTION_REASON_PLACEHOLDER)
        set_width_in_chars(self.reason, 60)
        form.addRow(texts.EXCEPTION_DURATION, self.duration)
        form.addRow(texts.EXCEPTION_REASON, self.reason)
        layout.addLayout(form)
        self.status = QLabel()
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.send = QPushButton(texts.EXCEPTION_SEND)
        self.send.setEnabled(False)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.send)
        layout.addLayout(row)
        self.reason.textChanged.connect(self._update)
        self.reason.returnPressed.connect(self._send)
        self.send.clicked.connect(self._send)
        self.setTabOrder(self.duration, self.reason)
        self.setTabOrder(self.reason, self.send)

    @property
    def valid(self) -> bool:
        return len(self.reason.text().strip()) >= self._min_reason

    def _update(self, *_args: str) -> None:
        self.send.setEnabled(self.valid)

    def _send(self) -> None:
        if not self.valid:
            return
        minutes = int(self.duration.currentData())
        self.requested.emit(minutes, self.reason.text().strip())
        self.status.setText(texts.EXCEPTION_SENT)
        for widget in (self.duration, self.reason, self.send):
            widget.setEnabled(False)


class ExceptionRequestDialog(QDialog):
    """Standalone request from the tray menu, for the most recently blocked device."""

    requested = Signal(int, str)

    def __init__(
        self, *, vendor_id: str, product_id: str, serial: str | None, min_reason: int, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        prepare(self, texts.EXCEPTION_TITLE)
        layout = dialog_layout(self)
        self.form = ExceptionForm(min_reason=min_reason, device=device_line(vendor_id, product_id, serial))
        self.form.requested.connect(self.requested)
        layout.addWidget(self.form)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.form.reason.setFocus()
