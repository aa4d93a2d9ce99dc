"""Schema migrations: idempotent, recorded in schema_version, and matching the tables the queries use."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, inspect

from central.runtime import Runtime
from central.store import tables
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
