#!/usr/bin/env python3
"""Render the tray menu and every dialog with a fake runtime and save PNGs to docs/screenshots/.

Usage: .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--icons]
Runs on its own Xvfb when Xvfb is installed (else offscreen, or wherever QT_QPA_PLATFORM says);
re-runs itself with QT_SCALE_FACTOR=2 for the 200 % variants.
`--icons` also re-renders assets/icons/*.png from the SVGs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rerun_under_xvfb() -> int | None:
    """Prefer a private Xvfb (xcb): the offscreen platform lays out wrapped labels wrongly at QT_SCALE_FACTOR=2."""
    if "QT_QPA_PLATFORM" in os.environ or shutil.which("Xvfb") is None:
        return None
    from tests.xvfb import qt_xcb_env, xvfb_display

    with xvfb_display(screen="1920x1200x24") as display:
        env = qt_xcb_env(display)
        # No StatusNotifier host on Xvfb: Qt must use the XEMBED tray (trayer) and draw its own balloon.
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        return subprocess.run([sys.executable, __file__, *sys.argv[1:]], env=env, check=False).returncode


if __name__ == "__main__":
    _code = _rerun_under_xvfb()
    if _code is not None:
        sys.exit(_code)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")

from PySide6.QtCore import QEventLoop, QPoint, QRect, QTimer  # noqa: E402
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPainter  # noqa: E402
from PySide6.QtWidgets import QApplication, QSystemTrayIcon, QWidget  # noqa: E402, TID251 - a GUI script

HIGH_DPI = ("acknowledgement", "warn-notice")


def _history() -> list[dict[str, Any]]:
    """Events shaped as the collectors, prompts and runtime raise them (docs/events.md)."""
    now = datetime(2025, 3, 3, 14, 5, tzinfo=UTC)

    def row(
        minutes: int, kind: str, action: str, severity: str, rule: str | None, data: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "ts": (now - timedelta(minutes=minutes)).isoformat(),
            "kind": kind,
            "action": action,
            "severity": severity,
            "rule": {"id": rule, "policy_version": 7} if rule else None,
            "data": data,
        }

    card = {"type": "card", "count": 2, "sample": "XXXX XXXX XXXX 1111", "hash": "9f2c41e1"}
    usb = {"vendor_id": "0781", "product_id": "5581", "serial": "4C530001", "label": "SANDISK", "bus": "usb"}
    return [
        row(1, "policy.updated", "observed", "info", None, {"version": 8, "previous_version": 7, "key_id": "k1"}),
        row(
            2,
            "violation.justified",
            "observed",
            "info",
            "clipboard.warn",
            {
                "ref_seq": 311,
                "rule": "clipboard.warn",
                "reason": "Customer requested it",
                "text": "",
                "timed_out": False,
            },
        ),
        row(
            3,
            "clipboard.sensitive",
            "masked",
            "high",
            "clipboard.mask",
            {"findings": [card], "length": 41, "format": "text/plain", "scan_truncated": False},
        ),
        row(
            38,
            "usb.exception_requested",
            "observed",
            "low",
            "usb.block",
            {**usb, "minutes": 240, "reason": "The client's auditor hands over signed forms on this stick"},
        ),
        row(41, "usb.blocked", "blocked", "high", "usb.block", usb),
        row(
            55,
            "download.quarantined",
            "quarantined",
            "high",
            "downloads.quarantine",
            {"name": "rates.zip", "extension": ".zip", "size_bytes": 2_100_000, "blocked_extension": True},
        ),
        row(
            64,
            "cleandesk.attested",
            "observed",
            "info",
            "clean_desk",
            {"trigger": "scheduled", "items": 3, "snoozes": 1},
        ),
        row(90, "capture.hotkey", "cleared", "medium", "screen_capture.block", {"shortcut": "PrintScreen"}),
        row(300, "policy.acknowledged", "observed", "info", "acknowledgement", {"version": 7, "text_sha256": "5d41"}),
        row(302, "agent.started", "observed", "info", None, {"version": "0.1.0", "unclean_previous_stop": False}),
    ]


POLICY_TEXT = """# Acceptable use of customer data

You handle customer data for **Acme Bank** and **Northwind Health**. This policy explains what DeskWarden
watches on this PC and what it does.

## What DeskWarden records

- USB storage devices you connect (vendor, product and serial number, never the files).
- Downloads that break the download rules (name, type and size, never the content).
- Customer data copied to the clipboard (the kind of data and a masked sample such as `XXXX XXXX XXXX 1111`).
- Screen-capture tools and the Print Screen key.

## What you must do

1. Keep customer documents off your desk and lock your screen when you step away.
2. Do not copy customer data into chat, e-mail or personal notes.
3. Ask your supervisor before using removable storage; request an exception from the tray if you need one.

## Your rights

You can see everything reported about you under **What was reported about me** in the tray menu.
Entries are kept for 30 days on this PC.
"""


def _wait_for(condition: Any, timeout_ms: int = 10_000) -> bool:
    """Run the event loop until `condition()` holds (polled every 50 ms) or the timeout passes."""
    loop = QEventLoop()
    poll = QTimer()
    poll.setInterval(50)
    poll.timeout.connect(lambda: loop.quit() if condition() else None)
    QTimer.singleShot(timeout_ms, loop.quit)
    poll.start()
    if not condition():
        loop.exec()
    poll.stop()
    return bool(condition())


def _save_notification(title: str, body: str, path: Path) -> None:
    """A real tray balloon: trayer as the XEMBED system tray on this Xvfb, the icon embedded in it, and Qt's
    own balloon (no notification daemon here); the screen area around icon and balloon is saved."""
    if os.environ.get("QT_QPA_PLATFORM") != "xcb" or shutil.which("trayer") is None:
        print(f"skipped {path.name}: needs Xvfb (xcb) and trayer")
        return
    from agent_app.core.status import TrayState
    from agent_app.ui.icons import tray_icon

    panel = (
        "trayer --edge top --align right --widthtype request --height 32 --transparent true --alpha 0 --tint 0x303030"
    )
    trayer = subprocess.Popen(
        panel.split(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not _wait_for(QSystemTrayIcon.isSystemTrayAvailable):
            print(f"skipped {path.name}: no system tray appeared")
            return
        icon = QSystemTrayIcon(tray_icon(TrayState.protected))
        icon.show()
        _wait_for(lambda: not icon.geometry().isEmpty() and icon.geometry().topLeft() != QPoint(0, 0))
        icon.showMessage(title, body, QSystemTrayIcon.MessageIcon.Information, 60_000)

        def balloon() -> QWidget | None:
            shown = [
                w
                for w in QApplication.topLevelWidgets()
                if w.isVisible() and w.metaObject().className() == "QBalloonTip"
            ]
            return shown[0] if shown else None

        _wait_for(lambda: balloon() is not None)
        QApplication.processEvents()
        tip = balloon()
        area = icon.geometry()
        if tip is not None:
            area = area.united(tip.frameGeometry())
        screen = QGuiApplication.primaryScreen()
        area = area.adjusted(-16, -8, 16, 16).intersected(QRect(QPoint(0, 0), screen.size()))
        pixmap = screen.grabWindow(0, area.x(), area.y(), area.width(), area.height())
        pixmap.save(str(path))
        print(f"wrote {path} ({pixmap.width()}x{pixmap.height()})")
        icon.hide()
    finally:
        trayer.terminate()
        trayer.wait(5)


def _save(widget: QWidget, path: Path, *, sized: bool = False) -> None:
    if not sized:
        widget.adjustSize()
    widget.show()
    QApplication.processEvents()
    pixmap = widget.grab()
    pixmap.save(str(path))
    widget.hide()
    print(f"wrote {path} ({pixmap.width()}x{pixmap.height()})")


def render(out: Path, *, suffix: str, only: set[str] | None) -> None:
    from agent_app.core.news_exceptions import ExceptionChange, active_lines, change_message, device_labels
    from agent_app.core.pipeline import Notice
    from agent_app.core.prompts.cleandesk import ShowPrompt, Trigger
    from agent_app.core.status import TrayState
    from agent_app.ui.dialogs.about import AboutDialog, UnlockDialog
    from agent_app.ui.dialogs.acknowledgement import AcknowledgementDialog
    from agent_app.ui.dialogs.cleandesk import CleanDeskDialog
    from agent_app.ui.dialogs.notices import BlockNoticeDialog, WarnNoticeDialog
    from agent_app.ui.dialogs.transparency import ReportedDialog
    from agent_app.ui.icons import tray_icon
    from agent_app.ui.tray import TrayMenu, effective_state, status_lines
    from collectors.base import Decision
    from policy_client.schema import (
        AcknowledgementControl,
        Action,
        Controls,
        PolicyDocument,
        Severity,
        UsbControl,
        UsbException,
    )
    from tests.gui.fake_port import UNLOCK_TOKEN, default_status
    from tests.gui.helpers import FakeClock

    def wanted(name: str) -> bool:
        return only is None or name in only

    status = default_status(queue_depth=3, attention=())
    now = datetime(2025, 3, 3, 13, 0, tzinfo=UTC)  # fixed, so the PNGs only change when the UI does
    approved = UsbException(
        vendor_id="0781",
        product_id="5581",
        serial="4C530001",
        expires_at=now + timedelta(hours=4),
        device_id=status.device_id,
        reviewed_at=now,
    )
    policy = PolicyDocument(
        version=8,
        org="Acme CX",
        controls=Controls(
            acknowledgement=AcknowledgementControl(text_markdown=POLICY_TEXT),
            usb=UsbControl(mode="block", exceptions=[approved]),
        ),
    )
    labels = device_labels(_history())

    for name, mode in (("tray-menu", "protected"), ("tray-menu-developer", "unprotected")):
        if wanted(name):
            shown = dataclasses.replace(status, mode=mode)
            menu = TrayMenu()
            state = effective_state(shown, [])
            extra = active_lines(policy, device_id=shown.device_id, now=now, tz=UTC, labels=labels)
            menu.set_status(status_lines(shown, state, [], extra=extra), icon=tray_icon(state))
            menu.set_quit_allowed(False)
            _save(menu.menu, out / f"tray-menu{'-developer' if mode == 'unprotected' else ''}{suffix}.png")

    if wanted("notification-exception"):
        title, body = change_message(ExceptionChange("granted", approved), now=now, tz=UTC, labels=labels)
        _save_notification(title, body, out / f"notification-exception{suffix}.png")

    if wanted("acknowledgement"):
        ack = AcknowledgementDialog(policy)
        ack.adjustSize()
        ack.show()
        QApplication.processEvents()
        bar = ack.browser.verticalScrollBar()
        bar.setValue(bar.maximum())
        ack.checkbox.setChecked(True)
        _save(ack, out / f"acknowledgement{suffix}.png", sized=True)

    if wanted("cleandesk"):
        prompt = ShowPrompt(Trigger.scheduled, True, 0, 2, datetime.now(UTC))
        control = policy.controls.clean_desk
        clean = CleanDeskDialog(control.checklist, prompt, snooze_minutes=5, grace_minutes=control.grace_minutes)
        clean.checks[0].setChecked(True)
        _save(clean, out / f"cleandesk{suffix}.png")

    summary = {
        "vendor_id": "0781",
        "product_id": "5581",
        "serial": "4C530001",
        "label": "SANDISK",
        "size_bytes": 31914983424,
    }
    if wanted("warn-notice"):
        decision = Decision(
            "warn",
            "usb.warn",
            7,
            Severity.medium,
            "This USB storage device is not approved for customer data. Explain why you need it.",
        )
        clock = FakeClock()
        warn = WarnNoticeDialog(
            Notice(212, "usb.mounted", "usb", decision, Action.warned, summary),
            policy.controls.justification,
            clock=clock,
        )
        warn.text.setPlainText("Customer asked for")
        clock.advance(seconds=17)
        warn.tick()
        _save(warn, out / f"warn-notice{suffix}.png")

    if wanted("block-notice"):
        decision = Decision(
            "block",
            "usb.block",
            7,
            Severity.high,
            "This USB storage device is not approved, so DeskWarden removed it.",
            exception_allowed=True,
        )
        block = BlockNoticeDialog(Notice(213, "usb.mounted", "usb", decision, Action.blocked, summary), min_reason=10)
        block.show_exception_form()
        if block.form is not None:
            block.form.reason.setText("The client's auditor hands over signed forms on this stick")
            block.form.reason.deselect()
        _save(block, out / f"block-notice{suffix}.png")

    if wanted("reported"):
        _save(ReportedDialog(_history(), retention_days=30), out / f"reported{suffix}.png")

    if wanted("about"):
        _save(AboutDialog(status, user="priya.n"), out / f"about{suffix}.png")

    if wanted("unlock"):
        unlock = UnlockDialog()
        unlock.token.setPlainText(UNLOCK_TOKEN)  # as pasted: the whole token stays visible
        _save(unlock, out / f"unlock{suffix}.png")

    if wanted("icons"):
        sizes = (16, 22, 32, 48, 64)
        image = QImage(20 + sum(s + 16 for s in sizes), 4 * 80, QImage.Format.Format_ARGB32)
        image.fill(QColor("#f0f0f0"))
        painter = QPainter(image)
        for row, state in enumerate(TrayState):
            x = 10
            for size in sizes:
                painter.drawPixmap(QPoint(x, row * 80 + (80 - size) // 2), tray_icon(state).pixmap(size, size))
                x += size + 16
        painter.end()
        image.save(str(out / "icons.png"))
        print(f"wrote {out / 'icons.png'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--icons", action="store_true", help="also re-render assets/icons/*.png from the SVGs")
    parser.add_argument("--only", default="", help=argparse.SUPPRESS)
    parser.add_argument("--suffix", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    app = QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    if args.icons:
        from agent_app.ui.icons import render_fallback_pngs

        for path in render_fallback_pngs():
            print(f"wrote {path.relative_to(ROOT)}")
    only = set(args.only.split(",")) if args.only else None
    with tempfile.TemporaryDirectory() as home:
        os.environ["DESKWARDEN_HOME"] = home
        render(args.out, suffix=args.suffix, only=only)
    if not args.suffix:
        env = {**os.environ, "QT_SCALE_FACTOR": "2"}
        cmd = [sys.executable, __file__, "--out", str(args.out), "--only", ",".join(HIGH_DPI), "--suffix", "-200"]
        return subprocess.run(cmd, env=env, check=False).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
