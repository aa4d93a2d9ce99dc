"""Small layout helpers shared by the dialogs (sizes in font units so 200 % scaling stays readable).

GUI thread only.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QDialog, QLabel, QLayout, QVBoxLayout, QWidget

from agent_app.core import texts

MAX_DETAIL_CHARS = 160


def wrapped(text: str, *, bold: bool = False, rich: bool = False) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if bold:
        font = QFont(label.font())
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.15)
        label.setFont(font)
    return label


def set_width_in_chars(widget: QWidget, chars: int) -> None:
    """Minimum width from the font, not pixels, so large fonts and scaling keep lines readable."""
    widget.setMinimumWidth(widget.fontMetrics().averageCharWidth() * chars)


def prepare(dialog: QDialog, title: str) -> None:
    dialog.setWindowTitle(title)
    dialog.setWindowFlag(Qt.WindowType.WindowContextHelpButtonHint, on=False)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, on=False)


def dialog_layout(dialog: QDialog) -> QVBoxLayout:
    """The dialog's main layout; the window can never be smaller than its content needs (wrapped labels
    included), so nothing overlaps at 200 % scaling or when the person shrinks the window."""
    layout = QVBoxLayout(dialog)
    layout.setSizeConstraint(QLayout.SizeConstraint.SetMinimumSize)
    return layout


def details_text(summary: dict[str, Any]) -> str:
    """One `label: value` per line for the notice's safe metadata (long values shortened)."""
    lines = []
    for label, text in texts.notice_details(summary):
        if len(text) > MAX_DETAIL_CHARS:
            text = text[: MAX_DETAIL_CHARS - 1] + "…"
        lines.append(f"{label}: {text}")
    return "\n".join(lines)
