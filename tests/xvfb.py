"""A private Xvfb X server for tests and benchmarks that need a real X display (clipboard, keys).

Import the fixture where needed: `from tests.xvfb import xvfb  # noqa: F401`. For in-process Qt on
that display, a tests/platform/conftest.py must set the environment before pytest-qt creates the
QApplication (see `use_xcb_for_qt`); subprocesses get `qt_xcb_env(display)` instead.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

START_TIMEOUT = 10.0


@contextmanager
def xvfb_display(*, screen: str = "1280x800x24") -> Iterator[str]:
    """Start Xvfb on a free display number (chosen by Xvfb itself via -displayfd); yield ":N"."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", screen, "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        number = b""
        deadline = time.monotonic() + START_TIMEOUT
        while not number.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([read_fd], [], [], max(0.0, left))
            if not ready:
                raise RuntimeError("Xvfb did not report its display in time")
            chunk = os.read(read_fd, 16)
            if not chunk:
                raise RuntimeError(f"Xvfb exited early with code {proc.poll()}")
            number += chunk
        yield f":{int(number.strip())}"
    finally:
        os.close(read_fd)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def qt_xcb_env(display: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a subprocess that runs Qt (xcb) and X tools on `display`."""
    env = dict(os.environ if base is None else base)
    env["DISPLAY"] = display
    env["QT_QPA_PLATFORM"] = "xcb"
    env.pop("WAYLAND_DISPLAY", None)
    return env


def use_xcb_for_qt(display: str) -> None:
    """For a conftest that wants the in-process QApplication on Xvfb; call before pytest-qt's qapp exists:

    # tests/platform/conftest.py
    from tests.xvfb import use_xcb_for_qt, xvfb  # noqa: F401
    @pytest.fixture(scope="session", autouse=True)
    def _qt_on_xvfb(xvfb: str) -> None:
        use_xcb_for_qt(xvfb)
    """
    os.environ["DISPLAY"] = display
    os.environ["QT_QPA_PLATFORM"] = "xcb"


@pytest.fixture(scope="session")
def xvfb() -> Iterator[str]:
    """A session-wide Xvfb; DISPLAY points at it for the session and is restored afterwards."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    saved = {name: os.environ.get(name) for name in ("DISPLAY", "QT_QPA_PLATFORM")}
    with xvfb_display() as display:
        os.environ["DISPLAY"] = display
        try:
            yield display
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
