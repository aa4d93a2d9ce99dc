"""“What was reported about me”: a read-only table of this device's events, one plain sentence each.

GUI thread only; the rows come from `AgentPort.history()`, the sentences from agent_app.core.history_text, and
nothing here writes anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import tzinfo
from typing import Any

from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from agent_app.core import texts
from agent_app.core.history_text import history_row
from agent_app.ui.dialogs.common import dialog_layout, prepare, set_width_in_chars, wrapped


class ReportedDialog(QDialog):
    def __init__(
        self,
        rows: Sequence[dict[str, Any]],
        *,
        retention_days: int,
        tz: tzinfo | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._tz = tz
        prepare(self, texts.REPORTED_TITLE)
        layout = dialog_layout(self)
        note = wrapped(texts.REPORTED_NOTE.format(days=retention_days))
        layout.addWidget(note)
        self.table = QTableWidget(0, len(texts.REPORTED_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(texts.REPORTED_COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(True)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        for column in range(len(texts.REPORTED_COLUMNS) - 1):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        # Rows fit the wrapped details once the columns have their real widths (after layout, and on resize).
        header.sectionResized.connect(lambda *_args: self.table.resizeRowsToContents())
        # Wide enough that most sentences fit on one or two lines next to the short columns.
        set_width_in_chars(self.table, 185)
        self.table.setMinimumHeight(self.fontMetrics().lineSpacing() * 18)
        self.table.setAccessibleName(texts.REPORTED_TITLE)
        layout.addWidget(self.table, 1)
        self.empty = wrapped(texts.REPORTED_EMPTY)
        layout.addWidget(self.empty)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close = buttons.button(QDialogButtonBox.StandardButton.Close)
        close.setText(texts.CLOSE)
        close.setDefault(True)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.set_rows(rows)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.table.resizeRowsToContents()

    def set_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        self.table.setRowCount(len(rows))
        for row, event in enumerate(rows):
            for column, text in enumerate(history_row(event, tz=self._tz).cells()):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(row, column, item)
        self.table.resizeRowsToContents()
        self.empty.setVisible(not rows)
