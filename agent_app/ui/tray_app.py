"""The tray application: one instance per user session, prompts scheduled on coarse timers, notices shown as
they arrive, and a clean stop on quit, SIGTERM or logout.

Everything here runs on the GUI (main) thread; runtime callbacks arrive through `PortBridge` queued signals.
`run_tray` is called by agent_app.run.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections import deque
from collections.abc import Callable
from datetime import datetime, tzinfo
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QSessionManager
from PySide6.QtWidgets import QApplication, QDialog, QMessageBox, QSystemTrayIcon

from agent_app.core import texts
from agent_app.core.news_exceptions import (
    DeviceKey,
    ExceptionChange,
    active_lines,
    change_message,
    device_labels,
    exception_changes,
    exceptions_ended,
)
from agent_app.core.pipeline import Notice
from agent_app.core.ports import AgentPort
from agent_app.core.prompts import drafts
from agent_app.core.prompts.acknowledgement import AcknowledgementTracker
from agent_app.core.prompts.cleandesk import CleanDeskAction, CleanDeskScheduler, PromptMissed, ShowPrompt
from agent_app.core.prompts.justification import Justification
from agent_app.core.status import AgentStatus
from agent_app.ui.bridge import PortBridge
from agent_app.ui.dialogs.about import AboutDialog, UnlockDialog
from agent_app.ui.dialogs.acknowledgement import AcknowledgementDialog
from agent_app.ui.dialogs.cleandesk import CleanDeskDialog
from agent_app.ui.dialogs.exception import ExceptionRequestDialog
from agent_app.ui.dialogs.notices import BLOCK_ACTIONS, WARN_ACTIONS, BlockNoticeDialog, WarnNoticeDialog
from agent_app.ui.dialogs.transparency import ReportedDialog
from agent_app.ui.notifications import SupervisorNotifier
from agent_app.ui.single_instance import TrayLock, TrayLockError, acquire_tray_lock, tray_lock_path
from agent_app.ui.tray import TRAY_RETRY_MS, TrayIconHost, TrayMenu, effective_state, status_lines
from policy_client.schema import Action, EventKind, PolicyDocument, RuleRef, utc_now

if TYPE_CHECKING:  # requests stays out of the helper unless --supervisor asks for the alert stream
    from agent_app.core.supervisor_alerts import SupervisorAlertSource

log = logging.getLogger(__name__)

EXIT_ALREADY_RUNNING = 3
PROMPT_CHECK_MS = 30_000
"""Clean-desk and acknowledgement checks are coarse: a 30 s timer, no busy loop (and no catch-up storm on resume)."""
SIGNAL_WAKE_MS = 500
"""Python runs signal handlers only when the interpreter gets control; this no-op timer gives it control."""
ACK_REMIND_MS = 2 * 60 * 60 * 1000
"""After "Later", ask again this much later (or at the next start)."""
MAX_OPEN_NOTICES = 3
"""More notices than this wait in a queue so a burst never buries the desk in windows."""


class TrayApp(QObject):
    """Wires the port, the prompt logic and the widgets together. Construct, then `start()`."""

    quit_requested = Signal(str)
    """The person quit (allowed, or with an unlock token); the runtime is already stopped. run_tray ends the loop."""

    def __init__(
        self,
        port: AgentPort,
        *,
        home: Path,
        supervisor: SupervisorAlertSource | None = None,
        tray_available: Callable[[], bool] = QSystemTrayIcon.isSystemTrayAvailable,
        clock: Callable[[], datetime] = utc_now,
        tz: tzinfo | None = None,
        prompt_check_ms: int = PROMPT_CHECK_MS,
        tray_retry_ms: int = TRAY_RETRY_MS,
        open_url: Callable[[QUrl], bool] = QDesktopServices.openUrl,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.port = port
        self.home = home
        self._clock = clock
        self._tz = tz
        self._supervisor = supervisor
        self.policy = port.policy
        self.bridge = PortBridge(self)
        self.menu = TrayMenu(self)
        self.host = TrayIconHost(self.menu.menu, available=tray_available, retry_ms=tray_retry_ms, parent=self)
        self.notifier = SupervisorNotifier(self.host, open_url=open_url, parent=self)
        self.acks = AcknowledgementTracker(home, clock=clock)
        self.scheduler = CleanDeskScheduler(
            self.policy.controls.clean_desk, clock=clock, last_input=port.last_input, tz=tz
        )
        self.local_attention: dict[str, str] = {}
        self.ack_dialog: AcknowledgementDialog | None = None
        self.cleandesk_dialog: CleanDeskDialog | None = None
        self.notice_dialogs: list[QDialog] = []
        self.pending_notices: deque[Notice] = deque()
        self.windows: dict[str, QDialog] = {}
        self.last_usb_block: Notice | None = None
        self.stopped_reason: str | None = None
        self._status = port.status()
        self._labels: dict[DeviceKey, str] | None = None
        self._exceptions_checked_at = clock()
        self.pending_messages: list[tuple[str, str]] = []
        """Exception news that arrived while no tray icon was visible; shown when the icon appears."""
        self.prompt_timer = QTimer(self)
        self.prompt_timer.setInterval(prompt_check_ms)
        self.prompt_timer.timeout.connect(self.check_prompts)
        self.ack_timer = QTimer(self)
        self.ack_timer.setSingleShot(True)
        self.ack_timer.setInterval(ACK_REMIND_MS)
        self.ack_timer.timeout.connect(self.check_acknowledgement)
        self.bridge.notice.connect(self.show_notice)
        self.bridge.status.connect(self.update_status)
        self.bridge.policy.connect(self.apply_policy)
        self.bridge.alert.connect(self.notifier.show)
        self.host.appeared.connect(self._show_pending_messages)
        self.menu.view_policy.connect(self.open_policy)
        self.menu.reported.connect(self.open_reported)
        self.menu.exception.connect(self.open_exception_request)
        self.menu.about.connect(self.open_about)
        self.menu.quit.connect(self.request_quit)

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self.bridge.attach(self.port)
        self.update_status(self.port.status())
        self.host.start()
        self.prompt_timer.start()
        if self._supervisor is not None:
            self._supervisor.start(self.bridge.on_alert)
        QTimer.singleShot(0, self.check_acknowledgement)

    def shutdown(self, reason: str) -> None:
        """Stop once: timers, supervisor stream, tray icon, then the runtime with the reason."""
        if self.stopped_reason is not None:
            return
        self.stopped_reason = reason
        log.info("tray stopping (%s)", reason)
        self.prompt_timer.stop()
        self.ack_timer.stop()
        self.host.stop()
        if self._supervisor is not None:
            self._supervisor.stop()
        for dialog in [*self.notice_dialogs, *self.windows.values(), self.ack_dialog, self.cleandesk_dialog]:
            if dialog is not None:
                dialog.hide()
        self.port.stop(reason=reason)

    def request_quit(self) -> None:
        if self.port.may_quit():
            self._quit("user_quit")
            return
        dialog = UnlockDialog()
        dialog.token_entered.connect(lambda token: self._unlock(dialog, token))
        self._window("unlock", dialog)

    def _unlock(self, dialog: UnlockDialog, token: str) -> None:
        if self.port.may_quit(token):
            dialog.accept()
            self._quit("admin_unlock")
        else:
            log.warning("quit refused: the unlock token was not accepted")
            dialog.refuse()

    def _quit(self, reason: str) -> None:
        self.shutdown(reason)
        self.quit_requested.emit(reason)

    # --- status and policy --------------------------------------------------------------------------

    def update_status(self, status: AgentStatus) -> None:
        self._status = status
        state = effective_state(status, self.local_attention.values())
        self.host.set_state(state, mode=status.mode)
        attention = list(dict.fromkeys([*status.attention, *self.local_attention.values()]))
        exceptions = active_lines(
            self.policy, device_id=status.device_id, now=self._clock(), tz=self._tz, labels=self._labels
        )
        self.menu.set_status(status_lines(status, state, attention, extra=exceptions), icon=self.host.icon_for(state))
        self.menu.set_quit_allowed(self.port.may_quit())

    def _set_attention(self, key: str, reason: str | None) -> None:
        changed = (self.local_attention.get(key) != reason) if reason else key in self.local_attention
        if reason:
            self.local_attention[key] = reason
        else:
            self.local_attention.pop(key, None)
        if changed:
            self.port.set_attention(tuple(self.local_attention.values()))
            self.update_status(self._status)

    def apply_policy(self, policy: PolicyDocument) -> None:
        self.check_exceptions()  # an exception that ran out just before this update is announced as ended
        previous = self.policy
        self.policy = policy
        changes = exception_changes(previous, policy, device_id=self._status.device_id, now=self._clock())
        self.announce_exceptions(changes)
        self.scheduler.reconfigure(policy.controls.clean_desk)
        if self.ack_dialog is not None and self.ack_dialog.policy.controls.acknowledgement != (
            policy.controls.acknowledgement
        ):
            self.ack_dialog.hide()
            self.ack_dialog = None
        self.update_status(self._status)
        self.check_acknowledgement()

    # --- policy acknowledgement ---------------------------------------------------------------------

    def check_acknowledgement(self) -> None:
        policy = self.policy
        self._set_attention("ack", texts.ATTENTION_ACK_OVERDUE if self.acks.overdue(policy) else None)
        if self.acks.due(policy) is None or self.ack_dialog is not None:
            return
        self.acks.mark_asked(policy)
        dialog = AcknowledgementDialog(policy)
        dialog.acknowledged.connect(lambda: self._acknowledged(dialog))
        dialog.rejected.connect(lambda: self._ack_later(dialog))
        self.ack_dialog = dialog
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()

    def _acknowledged(self, dialog: AcknowledgementDialog) -> None:
        self.acks.acknowledged(dialog.policy)
        self.port.record(drafts.acknowledged(dialog.policy, ts=self._clock()))
        self.ack_dialog = None
        self._set_attention("ack", None)

    def _ack_later(self, dialog: AcknowledgementDialog) -> None:
        if self.ack_dialog is dialog:
            self.ack_dialog = None
        self.ack_timer.start()

    def open_policy(self) -> None:
        state = self.acks.state
        if self.acks.due(self.policy) is None and state.acknowledged_at is not None:
            note = texts.POLICY_ACKED_ON.format(when=state.acknowledged_at.astimezone().strftime("%Y-%m-%d %H:%M"))
        else:
            note = texts.POLICY_NOT_ACKED
        self._window("policy", AcknowledgementDialog(self.policy, view_only=True, note=note))

    # --- clean desk -------------------------------------------------------------------------------

    def check_prompts(self) -> None:
        for action in self.scheduler.tick():
            self.apply_cleandesk(action)
        if self.acks.due(self.policy) is not None:
            self._set_attention("ack", texts.ATTENTION_ACK_OVERDUE if self.acks.overdue(self.policy) else None)
        self.check_exceptions()

    # --- USB exception news -------------------------------------------------------------------------

    def check_exceptions(self) -> None:
        """Tell the person when an exception ran out since the last check (no policy update says so)."""
        now = self._clock()
        since, self._exceptions_checked_at = self._exceptions_checked_at, now
        ended = exceptions_ended(self.policy, device_id=self._status.device_id, since=since, now=now)
        if ended:
            self.announce_exceptions(ended)
            self.update_status(self._status)

    def announce_exceptions(self, changes: list[ExceptionChange]) -> None:
        if not changes:
            return
        # Only news needs names: the history read (an IPC call once the service is split out) happens here,
        # not on every status tick.
        self._labels = device_labels(self.port.history(limit=200))
        now = self._clock()
        for change in changes:
            title, body = change_message(change, now=now, tz=self._tz, labels=self._labels)
            exception = change.exception
            # Ids only: a volume label is free text chosen by whoever formatted the stick.
            log.info("USB exception %s: %s:%s", change.change, exception.vendor_id, exception.product_id)
            if not self.host.show_message(title, body, level="info"):
                self.pending_messages.append((title, body))

    def _show_pending_messages(self) -> None:
        pending, self.pending_messages = self.pending_messages, []
        for title, body in pending:
            if not self.host.show_message(title, body, level="info"):
                self.pending_messages.append((title, body))

    def apply_cleandesk(self, action: CleanDeskAction) -> None:
        control = self.policy.controls.clean_desk
        if isinstance(action, ShowPrompt):
            if action.first:
                self.port.record(
                    drafts.cleandesk(
                        EventKind.cleandesk_prompted, self.policy, trigger=action.trigger, snoozes=0, ts=self._clock()
                    )
                )
            dialog = self.cleandesk_dialog
            if dialog is None:
                dialog = CleanDeskDialog(
                    control.checklist,
                    action,
                    snooze_minutes=control.snooze_minutes,
                    grace_minutes=control.grace_minutes,
                )
                dialog.attested.connect(self._attested)
                dialog.snoozed.connect(self.scheduler.snooze)
                self.cleandesk_dialog = dialog
            dialog.show_prompt(action)
            dialog.show()
            dialog.raise_()
            dialog.activateWindow()
        elif isinstance(action, PromptMissed):
            if self.cleandesk_dialog is not None:
                self.cleandesk_dialog.hide()
                self.cleandesk_dialog = None
            self.port.record(
                drafts.cleandesk(
                    EventKind.cleandesk_missed,
                    self.policy,
                    trigger=action.trigger,
                    snoozes=action.snoozes_used,
                    ts=self._clock(),
                )
            )
            self._set_attention("cleandesk", texts.ATTENTION_CLEANDESK_MISSED)

    def _attested(self) -> None:
        result = self.scheduler.attest()
        self.cleandesk_dialog = None
        if result is None:
            return
        self.port.record(
            drafts.cleandesk(
                EventKind.cleandesk_attested,
                self.policy,
                trigger=result.trigger,
                snoozes=result.snoozes_used,
                ts=self._clock(),
            )
        )
        self._set_attention("cleandesk", None)

    # --- violation notices --------------------------------------------------------------------------

    def show_notice(self, notice: Notice) -> None:
        action = notice.decision.action
        if action not in WARN_ACTIONS and action not in BLOCK_ACTIONS and notice.outcome is not Action.failed:
            return
        if notice.control == "usb" and notice.decision.exception_allowed:
            self.last_usb_block = notice
        if len(self.notice_dialogs) >= MAX_OPEN_NOTICES:
            self.pending_notices.append(notice)
            return
        dialog: QDialog
        if action in WARN_ACTIONS:
            warn = WarnNoticeDialog(notice, self.policy.controls.justification, clock=self._clock)
            warn.justified.connect(lambda answer: self._justified(notice, answer))
            dialog = warn
        else:
            block = BlockNoticeDialog(notice, min_reason=_min_reason(self.policy))
            block.exception_requested.connect(lambda minutes, reason: self._request_exception(notice, minutes, reason))
            dialog = block
        dialog.finished.connect(lambda _code: self._notice_closed(dialog))
        self.notice_dialogs.append(dialog)
        dialog.show()
        dialog.raise_()

    def _justified(self, notice: Notice, answer: Justification) -> None:
        self.port.record(drafts.justified(notice, answer, ts=self._clock()))

    def _notice_closed(self, dialog: QDialog) -> None:
        if dialog in self.notice_dialogs:
            self.notice_dialogs.remove(dialog)
        dialog.deleteLater()
        if self.pending_notices:
            self.show_notice(self.pending_notices.popleft())

    def _request_exception(self, notice: Notice | dict[str, Any], minutes: int, reason: str) -> None:
        summary = notice.summary if isinstance(notice, Notice) else notice
        rule = None
        if isinstance(notice, Notice) and notice.decision.rule_id:
            rule = RuleRef(id=notice.decision.rule_id, policy_version=notice.decision.policy_version)
        serial = summary.get("serial")
        self.port.record(
            drafts.exception_requested(
                vendor_id=str(summary.get("vendor_id")),
                product_id=str(summary.get("product_id")),
                serial=serial if isinstance(serial, str) else None,
                minutes=minutes,
                reason=reason,
                rule=rule,
                ts=self._clock(),
            )
        )

    # --- menu windows -----------------------------------------------------------------------------

    def open_reported(self) -> None:
        rows = self.port.history(limit=200)
        self._window(
            "reported", ReportedDialog(rows, retention_days=self.policy.controls.reporting.retention_days, tz=self._tz)
        )

    def open_about(self) -> None:
        self._window("about", AboutDialog(self.port.status(), user=self.port.user))

    def open_exception_request(self) -> None:
        if not self.policy.controls.usb.exceptions_allowed:
            self._message("exception", texts.EXCEPTION_NOT_ALLOWED)
            return
        device = self._recent_blocked_device()
        if device is None:
            self._message("exception", texts.EXCEPTION_NONE)
            return
        serial = device.get("serial")
        dialog = ExceptionRequestDialog(
            vendor_id=str(device["vendor_id"]),
            product_id=str(device["product_id"]),
            serial=serial if isinstance(serial, str) else None,
            min_reason=_min_reason(self.policy),
        )
        source: Notice | dict[str, Any] = self.last_usb_block if self.last_usb_block is not None else device
        dialog.requested.connect(lambda minutes, reason: self._request_exception(source, minutes, reason))
        self._window("exception", dialog)

    def _recent_blocked_device(self) -> dict[str, Any] | None:
        if self.last_usb_block is not None:
            return self.last_usb_block.summary
        for event in self.port.history(limit=200):
            data = event.get("data")
            blocked = event.get("kind") == EventKind.usb_blocked.value or (
                event.get("kind") == EventKind.usb_mounted.value and event.get("action") == Action.blocked.value
            )
            if blocked and isinstance(data, dict) and _has_device_ids(data):
                return data
        return None

    def _message(self, key: str, text: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, texts.EXCEPTION_TITLE, text, QMessageBox.StandardButton.Close)
        self._window(key, box)

    def _window(self, key: str, dialog: QDialog) -> None:
        """One window per menu entry: a second click raises a fresh copy instead of stacking duplicates."""
        old = self.windows.pop(key, None)
        if old is not None:
            old.hide()
            old.deleteLater()
        self.windows[key] = dialog
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()


def _has_device_ids(data: dict[str, Any]) -> bool:
    return isinstance(data.get("vendor_id"), str) and isinstance(data.get("product_id"), str)


def _min_reason(policy: PolicyDocument) -> int:
    return max(min(policy.controls.justification.min_length, 40), 5)


# --- entry point ----------------------------------------------------------------------------------


def run_tray(
    port: AgentPort,
    *,
    home: Path,
    app: QApplication | None = None,
    supervisor: SupervisorAlertSource | None = None,
    tray_available: Callable[[], bool] = QSystemTrayIcon.isSystemTrayAvailable,
    instance_lock: TrayLock | None = None,
) -> int:
    """Run the tray until quit, SIGTERM/SIGINT or logout; returns the exit code (3: another tray runs).

    `instance_lock`: the single-instance lock the caller already took with `acquire_tray_lock` (before it
    recorded anything); the caller keeps it and releases it. Without one, run_tray takes `home/tray.lock`
    itself and releases it on return.
    """
    existing = QApplication.instance()
    application = app or (existing if isinstance(existing, QApplication) else None) or QApplication(sys.argv[:1])
    own_lock: TrayLock | None = None
    if instance_lock is None:
        try:
            own_lock = acquire_tray_lock(tray_lock_path(home))
        except TrayLockError as exc:
            # Not evidence of a second tray: run without the guard rather than leave the desk without prompts.
            log.error("single-instance check unavailable, starting anyway: %s", exc)
        else:
            if own_lock is None:
                sys.stderr.write("DeskWarden is already running in this session.\n")
                return EXIT_ALREADY_RUNNING
    application.setQuitOnLastWindowClosed(False)
    tray = TrayApp(port, home=home, supervisor=supervisor, tray_available=tray_available)
    pending: list[str] = []

    def stop_and_exit(reason: str) -> None:
        tray.shutdown(reason)
        # exit(), not quit(): Qt 6's quit() first asks every window to close, and a notice that refuses
        # (the warn notice waits for its answer) would cancel the whole quit.
        application.exit(0)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        reason = signal.Signals(signum).name.lower()
        pending.append(reason)
        QTimer.singleShot(0, lambda: stop_and_exit(reason))

    def on_about_to_quit() -> None:
        tray.shutdown(pending[0] if pending else "quit")

    def on_commit_data(_manager: QSessionManager) -> None:
        pending.append("logout")
        stop_and_exit("logout")

    previous = {sig: signal.signal(sig, on_signal) for sig in _stop_signals()}
    wake = QTimer()
    wake.setInterval(SIGNAL_WAKE_MS)
    wake.timeout.connect(lambda: None)
    wake.start()
    tray.quit_requested.connect(lambda _reason: application.exit(0))
    application.aboutToQuit.connect(on_about_to_quit)
    application.commitDataRequest.connect(on_commit_data)
    try:
        tray.start()
        code = application.exec()
        tray.shutdown(pending[0] if pending else "quit")
        return int(code)
    finally:
        wake.stop()
        application.aboutToQuit.disconnect(on_about_to_quit)
        application.commitDataRequest.disconnect(on_commit_data)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        tray.deleteLater()
        if own_lock is not None:
            own_lock.release()


def _stop_signals() -> list[signal.Signals]:
    wanted = ["SIGTERM", "SIGINT", "SIGHUP"]
    return [getattr(signal, name) for name in wanted if hasattr(signal, name)]
