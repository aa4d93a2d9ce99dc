"""Fixtures for the console integration tests, on SQLite and (marker postgres) PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from central.settings import ServerSettings
from tests.integration.central.console.live import Console, serve_console
from tests.pg import db_url, pg_url

__all__ = ["db_url", "pg_url"]


@pytest.fixture
def console(tmp_path: Path, db_url: str | None) -> Iterator[Console]:
    with serve_console(ServerSettings(data_dir=tmp_path / "server", db_url=db_url, port=0)) as live:
        yield live
