"""Clean-desk checklist dialog: every item must be ticked to confirm; snoozes are offered until the policy bound.

GUI thread only; emits `attested` / `snoozed` and leaves scheduling and recording to the tray.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QDialog, QDialogButtonBox, QLabel, QPushButton, QWidget

from agent_app.core import texts
from agent_app.core.prompts.cleandesk import ShowPrompt
from agent_app.ui.dialogs.common import dialog_layout, prepare, set_width_in_chars, wrapped


class CleanDeskDialog(QDialog):
    attested = Signal()
    snoozed = Signal()

    def __init__(
        self,
        items: Sequence[str],
        prompt: ShowPrompt,
        *,
        snooze_minutes: int,
        grace_minutes: int,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        prepare(self, texts.CLEANDESK_TITLE)
        layout = dialog_layout(self)
        self.intro = wrapped(texts.CLEANDESK_INTRO[prompt.trigger.value], bold=True)
        set_width_in_chars(self.intro, 56)
        layout.addWidget(self.intro)
        self.checks: list[QCheckBox] = []
        for item in items:
            check = QCheckBox(item)
            check.toggled.connect(self._update)
            layout.addWidget(check)
            self.checks.append(check)
        layout.addSpacing(self.fontMetrics().lineSpacing() // 2)
        layout.addWidget(wrapped(texts.CLEANDESK_DEADLINE.format(minutes=grace_minutes)))
        self.snooze_note = QLabel()
        layout.addWidget(self.snooze_note)
        self.buttons = QDialogButtonBox()
        self.confirm_button = self.buttons.addButton(texts.CLEANDESK_CONFIRM, QDialogButtonBox.ButtonRole.AcceptRole)
        self.confirm_button.setDefault(True)
        self.snooze_button: QPushButton = self.buttons.addButton(
            texts.CLEANDESK_SNOOZE.format(minutes=snooze_minutes), QDialogButtonBox.ButtonRole.RejectRole
        )
        self.snooze_button.setAutoDefault(False)
        self.buttons.accepted.connect(self._confirm)
        self.snooze_button.clicked.connect(self._snooze)
        layout.addWidget(self.buttons)
        self.show_prompt(prompt)
        if self.checks:
            self.checks[0].setFocus()

    def show_prompt(self, prompt: ShowPrompt) -> None:
        """Apply a (re)prompt: snooze availability and the note under the checklist."""
        self.snooze_button.setEnabled(prompt.snoozes_left > 0)
        self.snooze_note.setText(
            texts.CLEANDESK_SNOOZES_LEFT.format(count=prompt.snoozes_left)
            if prompt.snoozes_left > 0
            else texts.CLEANDESK_NO_SNOOZES
        )
        self._update()

    @property
    def all_ticked(self) -> bool:
        return all(check.isChecked() for check in self.checks)

    def reject(self) -> None:
        """Esc or the window's close button snoozes when allowed; otherwise the checklist stays."""
        if self.snooze_button.isEnabled():
            self._snooze()

    def _update(self, *_args: bool) -> None:
        self.confirm_button.setEnabled(self.all_ticked)

    def _confirm(self) -> None:
        if self.all_ticked:
            self.attested.emit()
            self.accept()

    def _snooze(self) -> None:
        if self.snooze_button.isEnabled():
            self.snoozed.emit()
            self.hide()
