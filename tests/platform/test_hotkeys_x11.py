"""Capture hotkeys and idle time through pynput on a real X server (Xvfb) driven by xdotool."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from collectors.capture import ScreenCaptureCollector
from collectors.capture.process_scan import ProcessInfo
from collectors.idle import IdleClock
from collectors.idle.linux import PynputActivitySource
from policy_client.schema import Controls, EventKind, PolicyDocument, ScreenCaptureControl
from tests.support.sink import Sink

pytestmark = [
    pytest.mark.platform,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 only"),
    pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb not installed"),
    pytest.mark.skipif(shutil.which("xdotool") is None, reason="xdotool not installed"),
]


@pytest.fixture(scope="module")
def x_display() -> Iterator[str]:
    """A private Xvfb for this module (tests/xvfb.py, when present, offers a shared one)."""
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            number = pipe.readline().decode().strip()
        if not number:
            pytest.skip("Xvfb did not start")
        display = f":{number}"
        previous = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = display  # pynput's X backend reads DISPLAY when first imported
        try:
            yield display
        finally:
            if previous is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = previous
    finally:
        server.terminate()
        server.wait(10)


def xdotool(display: str, *args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, env={**os.environ, "DISPLAY": display}, timeout=20)


class NoProcesses:
    def pids(self) -> list[int]:
        return []

    def inspect(self, pid: int) -> ProcessInfo | None:
        return None

    def terminate(self, pid: int, create_time: float, *, timeout: float) -> str:
        return "exited"


def test_print_key_is_reported_and_ordinary_keys_are_not(x_display: str) -> None:
    collector = ScreenCaptureCollector(processes=NoProcesses())
    sink = Sink()
    policy = PolicyDocument(version=1, controls=Controls(screen_capture=ScreenCaptureControl(mode="audit")))
    collector.start(sink, policy)
    try:
        assert collector.hotkeys_running, collector.hotkeys_error
        xdotool(x_display, "key", "Print")
        [first] = sink.wait_count(1, timeout=10.0)
        assert first.draft.kind is EventKind.capture_hotkey
        assert first.draft.data == {"shortcut": "PrintScreen"}

        xdotool(x_display, "type", "hello")
        xdotool(x_display, "key", "a", "shift+b", "super+shift+s", "ctrl+c", "Return")
        # The second Print is delivered after the ordinary keys, so once it arrives they were all seen.
        xdotool(x_display, "key", "Print")
        items = sink.wait_count(2, timeout=10.0)
        assert [o.draft.data for o in items] == [{"shortcut": "PrintScreen"}, {"shortcut": "PrintScreen"}]
    finally:
        collector.stop()
    assert not collector.hotkeys_running


def test_hotkeys_off_in_policy_starts_no_listener(x_display: str) -> None:
    collector = ScreenCaptureCollector(processes=NoProcesses())
    policy = PolicyDocument(version=1, controls=Controls(screen_capture=ScreenCaptureControl(hotkeys=False)))
    collector.start(Sink(), policy)
    try:
        assert not collector.hotkeys_running
    finally:
        collector.stop()


def test_idle_clock_advances_on_real_key_input(x_display: str) -> None:
    clock = IdleClock(source=PynputActivitySource())
    clock.start()
    try:
        assert clock.available, clock.error
        before = clock.last_input()
        xdotool(x_display, "key", "shift")
        deadline = time.monotonic() + 10
        while clock.last_input() <= before:
            assert time.monotonic() < deadline, "last_input never moved"
            threading.Event().wait(0.02)
        assert clock.idle_seconds() < 5
    finally:
        clock.stop()
