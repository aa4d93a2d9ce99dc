"""The tray application against a fake port: menu, quit gating, prompts end to end, notices, late tray, lock."""

# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QLockFile, QTimer, QUrl
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from agent_app.core import texts
from agent_app.core.prompts.acknowledgement import text_sha256
from agent_app.core.status import TrayState
from agent_app.core.supervisor_alerts import AlertCallback, SupervisorAlert
from agent_app.ui.dialogs.about import UnlockDialog
from agent_app.ui.dialogs.exception import ExceptionRequestDialog
from agent_app.ui.dialogs.notices import BlockNoticeDialog, WarnNoticeDialog
from agent_app.ui.dialogs.transparency import ReportedDialog
from agent_app.ui.single_instance import TrayLockError, acquire_tray_lock, tray_lock_path
from agent_app.ui.tray_app import EXIT_ALREADY_RUNNING, TrayApp, run_tray
from policy_client.schema import (
    Action,
    CleanDeskControl,
    EventKind,
    JustificationControl,
    PolicyDocument,
    UsbException,
)
from tests.gui.fake_port import UNLOCK_TOKEN, FakePort, default_status
from tests.gui.helpers import FakeClock, notice, policy

pytestmark = pytest.mark.gui


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DESKWARDEN_HOME", str(tmp_path))
    return tmp_path


_LIVE: list[TrayApp] = []


@pytest.fixture(autouse=True)
def _shutdown_trays() -> Iterator[None]:
    """Every TrayApp a test starts is stopped afterwards so no window or timer leaks into the next test."""
    yield
    while _LIVE:
        _LIVE.pop().shutdown("test teardown")


def _app(
    qtbot: QtBot,
    home: Path,
    port: FakePort,
    *,
    clock: FakeClock | None = None,
    available: Callable[[], bool] = lambda: False,
    opened: list[QUrl] | None = None,
    **kwargs: object,
) -> TrayApp:
    sink = opened if opened is not None else []

    def open_url(url: QUrl) -> bool:
        sink.append(url)
        return True

    app = TrayApp(
        port,
        home=home,
        clock=clock or FakeClock(),
        tray_available=available,
        open_url=open_url,
        **kwargs,  # type: ignore[arg-type]
    )
    app.start()
    _LIVE.append(app)
    qtbot.addWidget(app.menu.menu)
    return app


def _state(app: TrayApp) -> TrayState:
    return app.host.state


def _has_icon(app: TrayApp) -> bool:
    return app.host.icon is not None


def _ack_done(home: Path, port: FakePort, qtbot: QtBot, clock: FakeClock) -> None:
    """Acknowledge the current policy once so later tray instances start quietly."""
    app = _app(qtbot, home, port, clock=clock)
    qtbot.waitUntil(lambda: app.ack_dialog is not None, timeout=2000)
    assert app.ack_dialog is not None
    app.ack_dialog.acknowledged.emit()
    app.shutdown("test")


# --- menu and quit -------------------------------------------------------------------------------


def test_menu_shows_status_lines_and_commands(qtbot: QtBot, home: Path) -> None:
    port = FakePort(status=default_status(queue_depth=12, collectors={"usb": "running", "clipboard": "failed"}))
    app = _app(qtbot, home, port)
    lines = app.menu.texts()
    assert lines[0] == texts.TRAY_STATE_LINE["attention"]
    assert texts.STATUS_POLICY.format(version=7) in lines
    assert texts.STATUS_QUEUE.format(count=12) in lines
    assert "Monitoring: 1 of 2 running (clipboard failed)" in lines
    assert any(line.startswith("Last sync: 2025-03-0") for line in lines)
    commands = lines[-5:]
    assert commands == [
        texts.MENU_VIEW_POLICY,
        texts.MENU_REPORTED,
        texts.MENU_EXCEPTION,
        texts.MENU_ABOUT,
        texts.MENU_QUIT_LOCKED,
    ]
    status_actions = [a for a in app.menu.menu.actions() if a.text() in lines[:5]]
    assert all(not action.isEnabled() for action in status_actions)
    assert app.host.state is TrayState.attention


def test_protected_mode_adds_nothing_to_menu_or_tooltip(qtbot: QtBot, home: Path) -> None:
    app = _app(qtbot, home, FakePort(status=default_status(mode="protected")), available=lambda: True)
    assert texts.STATUS_UNPROTECTED not in app.menu.texts()
    assert app.host.tooltip == texts.TRAY_TOOLTIP["protected"]
    assert app.host.icon is not None
    assert app.host.icon.toolTip() == texts.TRAY_TOOLTIP["protected"]


def test_unprotected_mode_says_developer_mode_in_menu_and_tooltip(qtbot: QtBot, home: Path) -> None:
    app = _app(qtbot, home, FakePort(status=default_status(mode="unprotected")), available=lambda: True)
    lines = app.menu.texts()
    assert lines[:2] == [texts.TRAY_STATE_LINE["protected"], "Developer mode: not tamper-resistant"]
    assert app.host.state is TrayState.protected, "informational: neither attention nor a different icon"
    assert app.host.icon is not None
    assert app.host.icon.toolTip() == "DeskWarden: protected\nDeveloper mode: not tamper-resistant"


def test_mode_change_reaches_menu_and_tooltip(qtbot: QtBot, home: Path) -> None:
    port = FakePort(status=default_status(mode="unprotected"))
    app = _app(qtbot, home, port)
    port.push_status(default_status(mode="protected"))
    qtbot.waitUntil(lambda: texts.STATUS_UNPROTECTED not in app.menu.texts(), timeout=2000)
    assert "Developer mode" not in app.host.tooltip


def test_status_updates_from_another_thread_reach_the_menu(qtbot: QtBot, home: Path) -> None:
    port = FakePort()
    app = _app(qtbot, home, port)
    thread = threading.Thread(target=port.push_status, args=(default_status(connection="offline", queue_depth=3),))
    thread.start()
    thread.join(5)
    qtbot.waitUntil(lambda: texts.STATUS_QUEUE.format(count=3) in app.menu.texts(), timeout=2000)
    assert app.host.state is TrayState.offline


def test_quit_when_policy_allows(qtbot: QtBot, home: Path) -> None:
    port = FakePort(allow_quit=True)
    app = _app(qtbot, home, port)
    assert texts.MENU_QUIT in app.menu.texts()
    with qtbot.waitSignal(app.quit_requested, timeout=1000) as blocker:
        app.menu.quit_action.trigger()
    assert blocker.args == ["user_quit"]
    assert port.stops == ["user_quit"]


def test_quit_needs_a_valid_unlock_token(qtbot: QtBot, home: Path) -> None:
    port = FakePort(allow_quit=False)
    app = _app(qtbot, home, port)
    app.menu.quit_action.trigger()
    dialog = app.windows["unlock"]
    assert isinstance(dialog, UnlockDialog)
    qtbot.keyClicks(dialog.token, "wrong")
    with qtbot.assertNotEmitted(app.quit_requested):
        dialog.quit_button.click()
    assert port.stops == []
    assert dialog.error.isVisible()
    qtbot.keyClicks(dialog.token, UNLOCK_TOKEN)  # replaces the selected wrong entry
    with qtbot.waitSignal(app.quit_requested, timeout=1000) as blocker:
        dialog.quit_button.click()
    assert blocker.args == ["admin_unlock"]
    assert port.stops == ["admin_unlock"]


def test_pasted_unlock_token_with_line_breaks_is_checked_whole(qtbot: QtBot, home: Path) -> None:
    """Regression: a token pasted from an e-mail (wrapped, with a trailing newline) reached may_quit as pasted."""
    port = FakePort(allow_quit=False)
    app = _app(qtbot, home, port)
    app.menu.quit_action.trigger()
    dialog = app.windows["unlock"]
    assert isinstance(dialog, UnlockDialog)
    QGuiApplication.clipboard().setText(
        UNLOCK_TOKEN[:40] + "\n" + UNLOCK_TOKEN[40:90] + "\n" + UNLOCK_TOKEN[90:] + "\n"
    )
    dialog.token.paste()
    dialog.quit_button.click()
    assert port.unlock_attempts[-1] == UNLOCK_TOKEN
    assert port.stops == ["admin_unlock"]


# --- acknowledgement ------------------------------------------------------------------------------


def test_ack_dialog_on_first_start_records_version_and_hash(qtbot: QtBot, home: Path) -> None:
    port = FakePort(policy=policy(text="# Rules\n\nShort."))
    clock = FakeClock()
    _ack_done(home, port, qtbot, clock)
    assert port.kinds() == ["policy.acknowledged"]
    assert port.drafts[0].data == {"version": 7, "text_sha256": text_sha256("# Rules\n\nShort.")}
    again = _app(qtbot, home, port, clock=clock)
    qtbot.wait(50)  # let the start-up check run; nothing may open
    assert again.ack_dialog is None


def test_changed_policy_text_asks_again(qtbot: QtBot, home: Path) -> None:
    port = FakePort(policy=policy(text="v1"))
    clock = FakeClock()
    _ack_done(home, port, qtbot, clock)
    app = _app(qtbot, home, port, clock=clock)
    port.push_policy(policy(text="v2"))
    qtbot.waitUntil(lambda: app.ack_dialog is not None, timeout=2000)


def test_overdue_acknowledgement_raises_attention(qtbot: QtBot, home: Path) -> None:
    port = FakePort(policy=policy(text="v1"))
    clock = FakeClock()
    app = _app(qtbot, home, port, clock=clock)
    qtbot.waitUntil(lambda: app.ack_dialog is not None, timeout=2000)
    assert _state(app) is TrayState.protected
    clock.advance(hours=25)
    app.check_prompts()
    assert _state(app) is TrayState.attention
    assert texts.STATUS_ATTENTION.format(reason=texts.ATTENTION_ACK_OVERDUE) in app.menu.texts()
    assert port.attention_reported[-1] == (texts.ATTENTION_ACK_OVERDUE,), "the endpoint must hear of it"
    assert app.ack_dialog is not None
    app.ack_dialog.acknowledged.emit()
    assert app.host.state is TrayState.protected
    assert not port.attention_reported[-1]


# --- clean desk -----------------------------------------------------------------------------------


def _cleandesk_app(qtbot: QtBot, home: Path, **control: object) -> tuple[TrayApp, FakePort, FakeClock]:
    port = FakePort(policy=policy(text="t", clean_desk=CleanDeskControl(times=["13:00"], **control)))  # type: ignore[arg-type]
    clock = FakeClock()
    _ack_done(home, port, qtbot, clock)
    port.drafts.clear()
    app = _app(qtbot, home, port, clock=clock, tz=clock.now.tzinfo)
    return app, port, clock


def test_cleandesk_prompt_and_attestation_end_to_end(qtbot: QtBot, home: Path) -> None:
    app, port, clock = _cleandesk_app(qtbot, home)
    clock.advance(minutes=5, seconds=1)
    app.check_prompts()
    dialog = app.cleandesk_dialog
    assert dialog is not None
    assert dialog.isVisible()
    for check in dialog.checks:
        check.setChecked(True)
    dialog.confirm_button.click()
    assert port.kinds() == ["cleandesk.prompted", "cleandesk.attested"]
    assert port.drafts[1].data == {"trigger": "scheduled", "items": 3, "snoozes": 0}
    assert app.cleandesk_dialog is None


def test_cleandesk_snooze_then_missed_after_grace(qtbot: QtBot, home: Path) -> None:
    app, port, clock = _cleandesk_app(qtbot, home, max_snoozes=1, snooze_minutes=5, grace_minutes=15)
    clock.advance(minutes=5, seconds=1)
    app.check_prompts()
    dialog = app.cleandesk_dialog
    assert dialog is not None
    dialog.snooze_button.click()
    assert not dialog.isVisible()
    clock.advance(minutes=5)
    app.check_prompts()
    assert dialog.isVisible()
    assert not dialog.snooze_button.isEnabled()
    clock.advance(minutes=15)
    app.check_prompts()
    assert not dialog.isVisible()
    assert port.kinds() == ["cleandesk.prompted", "cleandesk.missed"]
    assert port.drafts[1].data == {"trigger": "scheduled", "items": 3, "snoozes": 1}
    assert app.host.state is TrayState.attention


def test_cleandesk_after_idle_uses_last_input(qtbot: QtBot, home: Path) -> None:
    port = FakePort(policy=policy(text="t", clean_desk=CleanDeskControl(after_idle_minutes=10)))
    clock = FakeClock()
    _ack_done(home, port, qtbot, clock)
    port.input_at = clock.now
    app = _app(qtbot, home, port, clock=clock)
    clock.advance(minutes=30)
    port.input_at = clock.now
    app.check_prompts()
    assert app.cleandesk_dialog is not None
    assert port.drafts[-1].data["trigger"] == "idle_return"


# --- notices --------------------------------------------------------------------------------------


def test_warn_notice_from_pipeline_thread_records_justification(qtbot: QtBot, home: Path) -> None:
    port = FakePort(policy=policy(text="t", justification=JustificationControl(timeout_seconds=30)))
    clock = FakeClock()
    _ack_done(home, port, qtbot, clock)
    app = _app(qtbot, home, port, clock=clock)
    thread = threading.Thread(target=port.push_notice, args=(notice("warn", seq=99),))
    thread.start()
    thread.join(5)
    qtbot.waitUntil(lambda: len(app.notice_dialogs) == 1, timeout=2000)
    dialog = app.notice_dialogs[0]
    assert isinstance(dialog, WarnNoticeDialog)
    clock.advance(seconds=30)
    dialog.tick()
    justified = port.drafts[-1]
    assert justified.kind is EventKind.violation_justified
    assert justified.data["ref_seq"] == 99
    assert justified.data["timed_out"] is True
    qtbot.waitUntil(lambda: not app.notice_dialogs, timeout=2000)


def test_block_notice_exception_request_is_recorded(qtbot: QtBot, home: Path) -> None:
    port = FakePort(policy=policy(text="t"))
    _ack_done(home, port, qtbot, FakeClock())
    app = _app(qtbot, home, port)
    app.show_notice(notice("block", exception_allowed=True, outcome=Action.blocked))
    dialog = app.notice_dialogs[0]
    assert isinstance(dialog, BlockNoticeDialog)
    assert dialog.form is not None
    dialog.show_exception_form()
    dialog.form.reason.setText("client auditor hands over forms")
    dialog.form.send.click()
    draft = port.drafts[-1]
    assert draft.kind is EventKind.usb_exception_requested
    assert draft.data == {
        "vendor_id": "0781",
        "product_id": "5581",
        "serial": "4C530001",
        "minutes": 60,
        "reason": "client auditor hands over forms",
    }
    assert draft.rule is not None
    assert draft.rule.id == "usb.block"


def test_notice_burst_is_queued(qtbot: QtBot, home: Path) -> None:
    port = FakePort(policy=policy(text="t"))
    _ack_done(home, port, qtbot, FakeClock())
    app = _app(qtbot, home, port)
    for seq in range(5):
        app.show_notice(notice("block", seq=seq, outcome=Action.blocked))
    assert len(app.notice_dialogs) == 3
    assert len(app.pending_notices) == 2
    app.notice_dialogs[0].reject()
    assert len(app.notice_dialogs) == 3
    assert len(app.pending_notices) == 1


def test_audit_decisions_show_nothing(qtbot: QtBot, home: Path) -> None:
    port = FakePort(policy=policy(text="t"))
    _ack_done(home, port, qtbot, FakeClock())
    app = _app(qtbot, home, port)
    app.show_notice(notice("audit", outcome=Action.observed))
    assert app.notice_dialogs == []


def test_menu_exception_request_uses_last_blocked_device_from_history(qtbot: QtBot, home: Path) -> None:
    history = [
        {
            "kind": "usb.mounted",
            "action": "blocked",
            "data": {"vendor_id": "abcd", "product_id": "0001", "serial": None},
        }
    ]
    port = FakePort(policy=policy(text="t"), history=history)
    app = _app(qtbot, home, port)
    app.menu.exception_action.trigger()
    dialog = app.windows["exception"]
    assert isinstance(dialog, ExceptionRequestDialog)
    dialog.form.reason.setText("need it for the audit")
    dialog.form.send.click()
    assert port.drafts[-1].data["vendor_id"] == "abcd"


def test_menu_exception_request_without_a_blocked_device_explains(qtbot: QtBot, home: Path) -> None:
    app = _app(qtbot, home, FakePort(policy=policy(text="t")))
    app.menu.exception_action.trigger()
    box = app.windows["exception"]
    assert isinstance(box, QMessageBox)
    assert box.text() == texts.EXCEPTION_NONE


def test_menu_reported_shows_history(qtbot: QtBot, home: Path) -> None:
    port = FakePort(history=[{"ts": "2025-03-03T09:00:00+00:00", "kind": "agent.started", "data": {}}])
    app = _app(qtbot, home, port)
    app.menu.reported_action.trigger()
    dialog = app.windows["reported"]
    assert isinstance(dialog, ReportedDialog)
    assert dialog.table.rowCount() == 1
    item = dialog.table.item(0, 5)
    assert item is not None
    assert item.text() == "DeskWarden started"


# --- USB exception news ---------------------------------------------------------------------------

ME = default_status().device_id


def _with_exception(hours: float, clock: FakeClock, *, device: str | None = ME, version: int = 8) -> PolicyDocument:
    base = policy(text="t")
    usb = base.controls.usb.model_copy(
        update={
            "exceptions": [
                UsbException(
                    vendor_id="0781",
                    product_id="5581",
                    serial="4C530001",
                    expires_at=clock.now + timedelta(hours=hours),
                    device_id=device,
                    reviewed_at=clock.now,
                )
            ]
        }
    )
    return base.model_copy(update={"version": version, "controls": base.controls.model_copy(update={"usb": usb})})


SANDISK_HISTORY = [
    {
        "kind": "usb.blocked",
        "action": "blocked",
        "data": {"vendor_id": "0781", "product_id": "5581", "serial": "4C530001", "label": "SANDISK"},
    }
]


def test_approved_exception_in_a_new_policy_is_announced_in_the_tray(qtbot: QtBot, home: Path) -> None:
    """Regression: the exception form promised a tray message on approval, and none ever came."""
    clock = FakeClock()
    port = FakePort(policy=policy(text="t"), history=SANDISK_HISTORY)
    app = _app(qtbot, home, port, clock=clock, available=lambda: True, tz=UTC)
    thread = threading.Thread(target=port.push_policy, args=(_with_exception(4, clock),))
    with qtbot.waitSignal(app.host.message_shown, timeout=2000) as blocker:
        thread.start()
    thread.join(5)
    assert blocker.args == [
        "USB exception approved",
        "Your exception for the USB stick “SANDISK” (0781:5581) was approved until 16:55.",
    ]
    assert "Allowed until 16:55: the USB stick “SANDISK” (0781:5581)" in app.menu.texts()


def test_exception_for_another_pc_or_unchanged_policy_is_quiet(qtbot: QtBot, home: Path) -> None:
    clock = FakeClock()
    port = FakePort(policy=policy(text="t"))
    app = _app(qtbot, home, port, clock=clock, available=lambda: True)
    with qtbot.assertNotEmitted(app.host.message_shown):
        app.apply_policy(_with_exception(4, clock, device="dev-other"))
        app.apply_policy(policy(text="t"))
    assert app.pending_messages == []


def test_withdrawn_and_ended_exceptions_are_announced(qtbot: QtBot, home: Path) -> None:
    clock = FakeClock()
    port = FakePort(policy=_with_exception(1, clock))
    app = _app(qtbot, home, port, clock=clock, available=lambda: True, tz=UTC)
    with qtbot.waitSignal(app.host.message_shown, timeout=1000) as withdrawn:
        app.apply_policy(policy(text="t"))
    assert withdrawn.args[0] == "USB exception withdrawn"
    app.apply_policy(_with_exception(1, clock, version=9))
    clock.advance(minutes=59)
    with qtbot.assertNotEmitted(app.host.message_shown):
        app.check_prompts()
    clock.advance(minutes=1)
    with qtbot.waitSignal(app.host.message_shown, timeout=1000) as ended:
        app.check_prompts()
    assert ended.args == [
        "USB exception ended",
        "Your exception for the USB stick 0781:5581 has ended; the usual USB rules apply again.",
    ]
    assert not any(line.startswith("Allowed until") for line in app.menu.texts())


def test_exception_news_waits_for_a_late_tray(qtbot: QtBot, home: Path) -> None:
    clock = FakeClock()
    available = [False]
    port = FakePort(policy=policy(text="t"))
    app = _app(qtbot, home, port, clock=clock, available=lambda: available[0], tray_retry_ms=20)
    app.apply_policy(_with_exception(2, clock))
    assert [title for title, _ in app.pending_messages] == ["USB exception approved"]
    available[0] = True
    with qtbot.waitSignal(app.host.message_shown, timeout=2000) as blocker:
        pass
    assert blocker.args[0] == "USB exception approved"
    assert app.pending_messages == []


# --- tray availability, supervisor notifications ---------------------------------------------------


def test_late_tray_is_picked_up_by_the_retry_timer(qtbot: QtBot, home: Path) -> None:
    available = [False]
    app = _app(qtbot, home, FakePort(), available=lambda: available[0], tray_retry_ms=20)
    assert not _has_icon(app)
    assert app.host.retry.isActive()
    available[0] = True
    with qtbot.waitSignal(app.host.appeared, timeout=2000):
        pass
    assert _has_icon(app)
    assert not app.host.retry.isActive()
    app.shutdown("test")


class FakeAlerts:
    def __init__(self) -> None:
        self.callback: AlertCallback | None = None
        self.stopped = False

    def start(self, callback: AlertCallback) -> None:
        self.callback = callback

    def stop(self, timeout: float = 5.0) -> None:
        self.stopped = True


def test_supervisor_alert_reaches_notifier_and_click_opens_console(qtbot: QtBot, home: Path) -> None:
    alerts = FakeAlerts()
    opened: list[QUrl] = []
    app = _app(qtbot, home, FakePort(), supervisor=alerts, opened=opened)
    alert = SupervisorAlert("a1", "dev-1", "team-blue", "usb.mounted", "high", "2025-03-03T09:00:00Z", "https://c/a/a1")
    assert alerts.callback is not None
    thread = threading.Thread(target=alerts.callback, args=(alert,))
    thread.start()
    thread.join(5)
    qtbot.waitUntil(lambda: app.notifier.last == alert, timeout=2000)
    app.host.message_clicked.emit()
    assert [url.toString() for url in opened] == ["https://c/a/a1"]
    app.shutdown("test")
    assert alerts.stopped


def test_non_web_alert_url_is_not_opened(qtbot: QtBot, home: Path) -> None:
    opened: list[QUrl] = []
    app = _app(qtbot, home, FakePort(), opened=opened)
    app.notifier.show(SupervisorAlert("a", "d", "t", "agent.tamper", "critical", "x", "file:///etc/passwd"))
    app.host.message_clicked.emit()
    assert opened == []


# --- run_tray: single instance and clean stop --------------------------------------------------------


def test_second_instance_returns_3(qapp: QApplication, home: Path) -> None:
    lock = QLockFile(str(home / "tray.lock"))
    assert lock.tryLock(0)
    try:
        port = FakePort()
        assert run_tray(port, home=home, app=qapp, tray_available=lambda: False) == EXIT_ALREADY_RUNNING
        assert port.stops == []
    finally:
        lock.unlock()


def test_sigterm_stops_the_runtime_cleanly_even_with_a_warn_notice_open(qapp: QApplication, home: Path) -> None:
    port = FakePort(policy=policy(text="t"))
    # A warn notice refuses to close until answered; Qt 6's quit() would be cancelled by it.
    QTimer.singleShot(50, lambda: port.push_notice(notice("warn")))
    QTimer.singleShot(200, lambda: os.kill(os.getpid(), signal.SIGTERM))
    code = run_tray(port, home=home, app=qapp, tray_available=lambda: False)
    assert code == 0
    assert port.stops == ["sigterm"]
    assert signal.getsignal(signal.SIGTERM) is not None
    lock = QLockFile(str(home / "tray.lock"))
    assert lock.tryLock(0), "the lock must be released on exit"
    lock.unlock()


# --- single instance: the lock helper agent_app.run can call before anything is recorded ------------------

_HOLDER = """
import sys
from pathlib import Path
from agent_app.ui.single_instance import acquire_tray_lock
lock = acquire_tray_lock(Path(sys.argv[1]))
print("LOCKED" if lock is not None else "REFUSED", flush=True)
sys.stdin.read()
"""


def _read_line(proc: subprocess.Popen[str], timeout: float = 20.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the lock holder did not report"
    return proc.stdout.readline().strip()


def test_tray_lock_is_exclusive_across_processes_and_survives_a_crashed_owner(tmp_path: Path) -> None:
    path = tray_lock_path(tmp_path / "session")
    root = Path(__file__).resolve().parents[2]
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)], cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert _read_line(holder) == "LOCKED"
            assert acquire_tray_lock(path) is None, "a second tray must see the first one"
            holder.kill()  # kill -9: no unlock, the lock file stays behind
            holder.wait(10)
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait(10)
    assert path.exists()
    lock = acquire_tray_lock(path)
    assert lock is not None, "a lock left by a dead process is taken over"
    with lock:
        assert lock.held
    lock.release()  # twice is harmless
    again = acquire_tray_lock(path)
    assert again is not None, "leaving the with block released it"
    again.release()


def test_tray_lock_that_cannot_be_created_is_an_error_not_already_running(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(TrayLockError):
        acquire_tray_lock(tray_lock_path(blocker))


def test_run_tray_uses_the_callers_lock_and_leaves_it_held(qapp: QApplication, home: Path) -> None:
    lock = acquire_tray_lock(tray_lock_path(home))
    assert lock is not None
    with lock:
        port = FakePort(policy=policy(text="t"))
        QTimer.singleShot(50, lambda: os.kill(os.getpid(), signal.SIGTERM))
        assert run_tray(port, home=home, app=qapp, tray_available=lambda: False, instance_lock=lock) == 0
        assert port.stops == ["sigterm"]
        assert lock.held, "the caller owns the lock and releases it"


def test_run_tray_starts_when_the_lock_file_cannot_be_created(qapp: QApplication, tmp_path: Path) -> None:
    home = tmp_path / "file-not-dir"
    home.write_text("x", encoding="utf-8")
    port = FakePort(policy=policy(text="t"))
    QTimer.singleShot(50, lambda: os.kill(os.getpid(), signal.SIGTERM))
    assert run_tray(port, home=home, app=qapp, tray_available=lambda: False) == 0
    assert port.stops == ["sigterm"]
