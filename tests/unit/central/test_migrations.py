"""Schema migrations: idempotent, recorded in schema_version, and matching the tables the queries use."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, inspect, select, text

from central.runtime import Runtime
from central.settings import ServerSettings
from central.store import tables
from central.store.engine import open_database
from central.store.migrations import MIGRATIONS, Migration, current_version, migrate
from policy_client.schema import utc_now


def test_migrating_again_changes_nothing(runtime: Runtime) -> None:
    latest = max(m.version for m in MIGRATIONS)
    assert migrate(runtime.db) == latest
    with runtime.db.read() as conn:
        assert current_version(conn) == latest


def test_migrated_schema_matches_the_table_definitions(runtime: Runtime) -> None:
    inspector = inspect(runtime.db.engine)
    for table in tables.metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name


def test_a_later_migration_step_runs_once(runtime: Runtime) -> None:
    calls: list[int] = []
    extra = Migration(99, "test step", lambda _conn: calls.append(1))

    migrate(runtime.db, migrations=[*MIGRATIONS, extra])
    migrate(runtime.db, migrations=[*MIGRATIONS, extra])

    assert calls == [1]


def test_database_newer_than_the_code_is_refused(runtime: Runtime) -> None:
    with runtime.db.write() as conn:
        conn.execute(insert(tables.schema_version).values(version=500, applied_at=utc_now()))

    with pytest.raises(RuntimeError, match="newer than this DeskWarden"):
        migrate(runtime.db)


def test_upgrading_keeps_device_health_and_marks_it_unprotected(settings: ServerSettings) -> None:
    """A version-4 database (before unlock tokens and device mode) gains both; old heartbeats read unprotected."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(settings.database_url)
    try:
        assert migrate(db, migrations=[m for m in MIGRATIONS if m.version <= 4]) == 4
        with db.write() as conn:
            conn.execute(
                text(
                    'INSERT INTO device_health (device_id, ts, received_at, "user", agent_version, policy_version,'
                    " queue_depth, collectors) VALUES ('d1', :now, :now, 'asha', '0.1', 1, 0, '{}')"
                ),
                {"now": utc_now()},
            )

        assert migrate(db) == max(m.version for m in MIGRATIONS)

        with db.read() as conn:
            assert conn.execute(select(tables.device_health.c.mode)).scalars().all() == ["unprotected"]
            assert conn.execute(select(tables.unlock_tokens)).all() == []
    finally:
        db.dispose()
