"""Playwright fixtures: Debian's Chromium, headless; skipped with a reason when it is missing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central.settings import ServerSettings
from tests.integration.central.console.live import Console, serve_console

CHROMIUM = os.environ.get("DESKWARDEN_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}; set DESKWARDEN_CHROMIUM or install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    with serve_console(ServerSettings(data_dir=tmp_path / "server", port=0), poll_s=0.1) as live:
        yield live


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 860})
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    yield tab
    context.close()
