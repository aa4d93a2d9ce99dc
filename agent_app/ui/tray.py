"""The tray icon and its menu: state icon, status lines and the commands the person can use.

GUI thread only. `TrayIconHost` waits for a system tray to appear (some desktops start theirs late) by
retrying on a QTimer; until then the agent runs headless and keeps enforcing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Literal

from PySide6.QtCore import QObject, QTimer, Signal, SignalInstance
from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from agent_app.core import texts
from agent_app.core.status import AgentStatus, TrayState
from agent_app.ui.icons import tray_icon

log = logging.getLogger(__name__)

TRAY_RETRY_MS = 5_000
MessageLevel = Literal["info", "warning", "critical"]
_MESSAGE_ICONS = {
    "info": QSystemTrayIcon.MessageIcon.Information,
    "warning": QSystemTrayIcon.MessageIcon.Warning,
    "critical": QSystemTrayIcon.MessageIcon.Critical,
}


def status_lines(
    status: AgentStatus, state: TrayState, attention: Iterable[str], *, extra: Iterable[str] = ()
) -> list[str]:
    """The grey lines at the top of the menu; `extra` (exceptions in force) follow the attention lines."""
    last = status.last_upload.astimezone().strftime("%Y-%m-%d %H:%M") if status.last_upload else texts.STATUS_NEVER
    lines = [texts.TRAY_STATE_LINE[state.value]]
    if status.mode == "unprotected":
        lines.append(texts.STATUS_UNPROTECTED)
    lines += [
        texts.STATUS_POLICY.format(version=status.policy_version),
        texts.STATUS_LAST_SYNC.format(when=last),
        texts.STATUS_QUEUE.format(count=status.queue_depth),
        _collector_line(status.collectors),
    ]
    lines += [texts.STATUS_ATTENTION.format(reason=reason) for reason in attention]
    lines += extra
    return lines


def _collector_line(collectors: dict[str, str]) -> str:
    if not collectors:
        return texts.STATUS_NO_COLLECTORS
    running = sum(1 for state in collectors.values() if state == "running")
    problems = ", ".join(f"{name} {state}" for name, state in sorted(collectors.items()) if state != "running")
    if not problems:
        return texts.STATUS_COLLECTORS_OK.format(count=len(collectors))
    return texts.STATUS_COLLECTORS.format(running=running, count=len(collectors), problems=problems)


def effective_state(status: AgentStatus, local_attention: Iterable[str]) -> TrayState:
    """The runtime's state, raised to "attention" by prompts the tray itself knows are overdue or missed."""
    state = status.tray_state
    if any(True for _ in local_attention) and state in (TrayState.protected, TrayState.offline):
        return TrayState.attention
    return state


class TrayMenu(QObject):
    view_policy = Signal()
    reported = Signal()
    exception = Signal()
    about = Signal()
    quit = Signal()
    """"Quit" when policy allows it, or "Quit…" (asks for an unlock code) otherwise: the tray decides."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.menu = QMenu()
        self.menu.setToolTipsVisible(True)
        self._status_actions: list[QAction] = []
        self._status_end = self.menu.addSeparator()
        self.view_policy_action = self._command(texts.MENU_VIEW_POLICY, self.view_policy)
        self.reported_action = self._command(texts.MENU_REPORTED, self.reported)
        self.exception_action = self._command(texts.MENU_EXCEPTION, self.exception)
        self.about_action = self._command(texts.MENU_ABOUT, self.about)
        self.menu.addSeparator()
        self.quit_action = self._command(texts.MENU_QUIT_LOCKED, self.quit)

    def _command(self, text: str, signal: SignalInstance) -> QAction:
        action = self.menu.addAction(text)
        action.triggered.connect(signal)
        return action

    def set_status(self, lines: list[str], *, icon: QIcon | None = None) -> None:
        for action in self._status_actions:
            self.menu.removeAction(action)
            action.deleteLater()
        self._status_actions = []
        for line in lines:
            action = QAction(line, self.menu)
            if icon is not None and not self._status_actions:
                action.setIcon(icon)
            action.setEnabled(False)
            self.menu.insertAction(self._status_end, action)
            self._status_actions.append(action)

    def set_quit_allowed(self, allowed: bool) -> None:
        self.quit_action.setText(texts.MENU_QUIT if allowed else texts.MENU_QUIT_LOCKED)

    def texts(self) -> list[str]:
        return [action.text() for action in self.menu.actions() if not action.isSeparator()]


class TrayIconHost(QObject):
    """Owns the QSystemTrayIcon once a system tray exists; retries until then."""

    appeared = Signal()
    message_clicked = Signal()
    message_shown = Signal(str, str)
    """(title, body) of each notification the tray icon showed."""

    def __init__(
        self,
        menu: QMenu,
        *,
        available: Callable[[], bool] = QSystemTrayIcon.isSystemTrayAvailable,
        icons: Callable[[TrayState], QIcon] = tray_icon,
        retry_ms: int = TRAY_RETRY_MS,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._menu = menu
        self._available = available
        self._icons = icons
        self._cache: dict[TrayState, QIcon] = {}
        self._state = TrayState.offline
        self._mode = "protected"
        self._tooltip = texts.tray_tooltip(self._state.value, mode=self._mode)
        self.icon: QSystemTrayIcon | None = None
        self.retry = QTimer(self)
        self.retry.setInterval(retry_ms)
        self.retry.timeout.connect(self._try_create)

    @property
    def state(self) -> TrayState:
        return self._state

    def start(self) -> None:
        if not self._try_create():
            log.info("no system tray yet; running headless and retrying every %d ms", self.retry.interval())
            self.retry.start()

    def stop(self) -> None:
        self.retry.stop()
        if self.icon is not None:
            self.icon.hide()

    @property
    def tooltip(self) -> str:
        return self._tooltip

    def set_state(self, state: TrayState, *, mode: str | None = None) -> None:
        """Icon and tooltip for `state`; `mode` is AgentStatus.mode (the tooltip names developer mode)."""
        self._state = state
        if mode is not None:
            self._mode = mode
        self._tooltip = texts.tray_tooltip(state.value, mode=self._mode)
        if self.icon is not None:
            self.icon.setIcon(self._icon(state))
            self.icon.setToolTip(self._tooltip)

    def show_message(self, title: str, body: str, *, level: MessageLevel = "warning") -> bool:
        """A tray notification; False when there is no visible tray icon to show it from."""
        if self.icon is None or not self.icon.isVisible():
            log.info("tray not available; notification not shown: %s", title)
            return False
        self.icon.showMessage(title, body, _MESSAGE_ICONS[level], 15_000)
        self.message_shown.emit(title, body)
        return True

    def icon_for(self, state: TrayState) -> QIcon:
        return self._icon(state)

    def _icon(self, state: TrayState) -> QIcon:
        if state not in self._cache:
            self._cache[state] = self._icons(state)
        return self._cache[state]

    def _try_create(self) -> bool:
        if self.icon is not None:
            self.retry.stop()
            return True
        if not self._available():
            return False
        self.retry.stop()
        self.icon = QSystemTrayIcon(self._icon(self._state), self)
        self.icon.setToolTip(self._tooltip)
        self.icon.setContextMenu(self._menu)
        self.icon.messageClicked.connect(self.message_clicked)
        self.icon.activated.connect(self._activated)
        self.icon.show()
        log.info("tray icon shown")
        self.appeared.emit()
        return True

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        # A left click on Windows/Linux trays shows nothing by default; show the same menu there.
        if reason is QSystemTrayIcon.ActivationReason.Trigger and self.icon is not None:
            geometry = self.icon.geometry()
            self._menu.popup(geometry.center())


def format_when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else texts.STATUS_NEVER
