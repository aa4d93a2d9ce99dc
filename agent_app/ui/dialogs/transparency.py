"""“What was reported about me”: a read-only table of this device's events as they left the machine.

GUI thread only; the rows come from `AgentPort.history()` and nothing here writes anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
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
from agent_app.ui.dialogs.common import dialog_layout, prepare, set_width_in_chars, wrapped


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _rule(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value.get('id', '')} (v{value.get('policy_version', '?')})"
    return "" if value is None else str(value)


def row_cells(event: dict[str, Any]) -> list[str]:
    kind = str(event.get("kind", ""))
    return [
        _when(event.get("ts", "")),
        texts.kind_label(kind),
        str(event.get("action", "")),
        str(event.get("severity", "")),
        _rule(event.get("rule")),
        json.dumps(event.get("data", {}), separators=(", ", ": "), ensure_ascii=False, sort_keys=True, default=str),
    ]


class ReportedDialog(QDialog):
    def __init__(self, rows: Sequence[dict[str, Any]], *, retention_days: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
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
        set_width_in_chars(self.table, 150)
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
            for column, text in enumerate(row_cells(event)):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(row, column, item)
        self.table.resizeRowsToContents()
        self.empty.setVisible(not rows)
