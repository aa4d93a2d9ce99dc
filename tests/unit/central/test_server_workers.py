"""`ServerSettings.workers`: settings survive the trip to worker processes; SQLite refuses several workers."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from central.commands import run_server
from central.settings import ServerSettings


def test_settings_round_trip_through_json(tmp_path: Path) -> None:
    settings = ServerSettings(
        data_dir=tmp_path / "data",
        db_url="postgresql+psycopg://u:p@127.0.0.1:5432/dw",
        host="0.0.0.0",  # noqa: S104 - a value, nothing listens
        port=9443,
        max_concurrent_ingest=3,
        offline_after=timedelta(seconds=90.5),
        workers=4,
    )
    assert ServerSettings.from_json(settings.to_json()) == settings


def test_several_workers_need_postgresql(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        run_server(ServerSettings(data_dir=tmp_path, workers=2))
    assert not (tmp_path / "central.db").exists()  # refused before touching the store
