"""What the session helper imports, read from `python -X importtime` in a fresh interpreter: never the service's
HTTP, crypto, storage or PDF stacks, and no Qt at all without a display (docs/bench/footprint.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

HEADLESS = ["agent_app.run", "agent_app.core.helper", "agent_app.core.collector_set", "collectors.idle"]
"""What `deskwarden agent --headless` imports up to the helper's collectors (built by collector_set)."""
TRAY = [
    *HEADLESS,
    "agent_app.ui.tray_app",
    "agent_app.ui.single_instance",
    "collectors.clipboard.collector",
    "collectors.clipboard.gui_bridge",
    "collectors.capture",
]
NEVER = {"requests", "urllib3", "charset_normalizer", "cryptography", "pypdf", "sqlite3", "_sqlite3", "keyring"}


def imported(modules: list[str], *, build_collectors: bool = False) -> set[str]:
    """Top-level names of every module `python -X importtime` reports for importing `modules`."""
    code = "import " + ", ".join(modules)
    if build_collectors:
        code += (
            "\nimport secrets\nfrom collectors.base import CollectorContext\n"
            "agent_app.core.collector_set.default_collectors("
            "CollectorContext(role='helper', hash_key=secrets.token_bytes(32)))"
        )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "agent_app" in names, "importtime printed nothing the test understands"
    return names


def test_the_tray_helper_never_imports_http_crypto_storage_or_pdf() -> None:
    names = imported(TRAY)
    assert "PySide6" in names  # the list above really is the tray's
    assert not names & NEVER, sorted(names & NEVER)


def test_the_headless_helper_with_its_collectors_never_imports_qt() -> None:
    names = imported(HEADLESS, build_collectors=True)
    assert not names & {"PySide6", "shiboken6"}, "Qt is loaded without a display"
    assert not names & NEVER, sorted(names & NEVER)


@pytest.mark.xfail(
    strict=True,
    reason="the helper still validates the policy and its events with the pydantic wire schema "
    "(policy_client/schema.py), about 20 MB RSS; docs/bench/footprint.md says what removing it takes",
)
def test_the_helper_does_not_import_pydantic() -> None:
    assert "pydantic" not in imported(TRAY)
