"""The person's answers end to end: the real runtime and tray (offscreen) against a real endpoint process,
with the events read back through the endpoint's read API."""

# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtGui import QGuiApplication
from pytestqt.qtbot import QtBot

from agent_app.core.enrol import enrol_here
from agent_app.core.runtime import AgentRuntime
from agent_app.ui.dialogs.notices import WarnNoticeDialog
from agent_app.ui.tray_app import TrayApp
from central.commands import publish_policy
from policy_client.secrets import SecretStore, load_or_create_keys
from tests.gui.helpers import FakeClock
from tests.support.collectors import all_collectors
from tests.support.endpoint import EndpointProcess
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.gui, pytest.mark.integration]


def test_acknowledgement_clean_desk_and_justification_reach_the_endpoint(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    home, downloads = tmp_path / "agent", tmp_path / "Downloads"
    home.mkdir()
    downloads.mkdir()
    monkeypatch.setenv("DESKWARDEN_HOME", str(home))
    endpoint = EndpointProcess(tmp_path / "server")
    endpoint.start()
    runtime: AgentRuntime | None = None
    tray: TrayApp | None = None
    try:
        policy = {
            "controls": {
                "downloads": {"mode": "warn", "paths": [str(downloads)], "blocked_extensions": [".exe"]},
                "usb": {"mode": "off"},
                "screen_capture": {"mode": "off"},
                "clipboard": {"mode": "mask"},
                "clean_desk": {"times": ["13:00"]},
                "acknowledgement": {"text_markdown": "# Rules\n\nKeep customer data on this desk.\n"},
            }
        }
        version = publish_policy(endpoint.settings, json.dumps(policy).encode())
        device_id = enrol_here(endpoint.url, endpoint.enroll_token(), home=home)
        api = endpoint.api_token()
        keys = load_or_create_keys(SecretStore(home))
        available = all_collectors(home, keys)
        collectors = {name: available[name] for name in ("downloads", "clipboard")}
        runtime = AgentRuntime(home, collectors=collectors)
        main = runtime
        runtime.set_dispatcher(lambda call: call())  # the test thread is the GUI thread
        runtime.start()
        qtbot.waitUntil(lambda: main.policy.version == version, timeout=20_000)

        clock = FakeClock()  # 12:55 UTC; the clean-desk prompt is due at 13:00
        tray = TrayApp(
            runtime,
            home=home,
            clock=clock,
            tz=clock.now.tzinfo,
            tray_available=lambda: False,
            open_url=lambda url: isinstance(url, QUrl),
        )
        tray.start()
        app = tray

        # Policy acknowledgement: scroll to the end, tick, acknowledge.
        qtbot.waitUntil(lambda: app.ack_dialog is not None, timeout=5000)
        ack = app.ack_dialog
        assert ack is not None
        bar = ack.browser.verticalScrollBar()
        bar.setValue(bar.maximum())
        ack.checkbox.setChecked(True)
        assert ack.ack_button.isEnabled()
        ack.ack_button.click()

        # Clean desk at 13:00: tick every item and confirm.
        clock.advance(minutes=5, seconds=1)
        app.check_prompts()
        desk = app.cleandesk_dialog
        assert desk is not None
        for check in desk.checks:
            check.setChecked(True)
        desk.confirm_button.click()

        # A blocked extension lands in Downloads: warn notice, justify, send.
        (downloads / "setup.exe.part").write_bytes(b"MZ" + b"\0" * 64)
        (downloads / "setup.exe.part").rename(downloads / "setup.exe")
        qtbot.waitUntil(lambda: bool(app.notice_dialogs), timeout=10_000)
        warn = app.notice_dialogs[0]
        assert isinstance(warn, WarnNoticeDialog)
        warn.text.setPlainText("Installer requested by the client's IT desk")
        warn.send_button.click()

        # Customer data copied to the clipboard: masked in place, reported without the number.
        clipboard = QGuiApplication.clipboard()
        clipboard.setText("card 4111 1111 1111 1111 for the refund")
        qtbot.waitUntil(lambda: clipboard.text() == "card XXXX XXXX XXXX 1111 for the refund", timeout=10_000)

        def kinds() -> set[str]:
            return {event["kind"] for event in endpoint.events(api, device_id=device_id)}

        wanted = {
            "policy.acknowledged",
            "cleandesk.prompted",
            "cleandesk.attested",
            "violation.justified",
            "clipboard.sensitive",
        }
        wait_for(lambda: wanted <= kinds(), timeout=30, what=f"{wanted} at the endpoint")
        stored = {event["kind"]: event for event in endpoint.events(api, device_id=device_id)}
        assert stored["policy.acknowledged"]["data"]["version"] == version
        detected = stored["download.detected"]
        assert detected["action"] == "warned"
        justified = stored["violation.justified"]
        assert justified["data"]["ref_seq"] == detected["seq"]
        assert justified["data"]["timed_out"] is False
        assert stored["cleandesk.attested"]["data"]["trigger"] == "scheduled"
        masked = stored["clipboard.sensitive"]
        assert masked["action"] == "masked"
        assert masked["data"]["findings"][0]["sample"] == "XXXX XXXX XXXX 1111"
        everything = json.dumps(endpoint.events(api, device_id=device_id))
        assert "4111 1111 1111 1111" not in everything
        assert "4111111111111111" not in everything
    finally:
        if tray is not None:
            tray.shutdown("test")
        if runtime is not None:
            runtime.stop(reason="test")
        endpoint.stop()
