"""What every console browser test does in a tab: log in through the form, and save a screenshot for the docs.

Called from the test's thread with Playwright's sync page.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.integration.central.console.live import PASSWORD, Console

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def log_in(page: Any, console: Console, name: str, password: str = PASSWORD) -> None:
    """Sign in through the login form and wait for the alerts page it lands on."""
    page.goto(f"{console.url}/console/login")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/alerts*")


def screenshot(page: Any, name: str) -> None:
    """docs/screenshots/console-<name>.png, only when DESKWARDEN_SCREENSHOTS is set."""
    if os.environ.get("DESKWARDEN_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"console-{name}.png"), full_page=True)
