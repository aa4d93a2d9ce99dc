"""Schema version 8 on a database from before it: token expiry columns appear and personal tokens get their
public id from their hash."""

from __future__ import annotations

from sqlalchemy import inspect, select, text

from central.settings import ServerSettings
from central.store import tables
from central.store.console_tables import user_tokens
from central.store.engine import open_database
from central.store.migrations import MIGRATIONS, migrate
from policy_client.schema import utc_now


def test_a_version_7_database_gains_token_expiry_and_ids(settings: ServerSettings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(settings.database_url)
    try:
        migrate(db, migrations=[m for m in MIGRATIONS if m.version <= 7])
        with db.write() as conn:  # the columns as version 7 had them
            conn.execute(text("DROP INDEX IF EXISTS ix_user_tokens_token_id"))
            for table, column in (
                ("user_tokens", "token_id"),
                ("user_tokens", "expires_at"),
                ("api_tokens", "expires_at"),
                ("api_tokens", "created_by"),
            ):
                conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
            conn.execute(
                text("INSERT INTO user_tokens (token_hash, user_id, created_at) VALUES (:h, 1, :now)"),
                {"h": "ab" * 32, "now": utc_now()},
            )

        assert migrate(db) == max(m.version for m in MIGRATIONS)

        inspector = inspect(db.engine)
        for table in (tables.api_tokens, user_tokens):
            assert {c["name"] for c in inspector.get_columns(table.name)} == {c.name for c in table.columns}
        with db.read() as conn:
            assert conn.execute(select(user_tokens.c.token_id)).scalar_one() == "ab" * 8
    finally:
        db.dispose()
