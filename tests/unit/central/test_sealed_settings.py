"""Channel secrets are sealed on both databases: written sealed, read back in clear, and a value an older version
stored in clear is sealed at the next start (then the table is rewritten, so the clear copy is gone)."""

from __future__ import annotations

from sqlalchemy import select

from central.runtime import open_store
from central.settings import ServerSettings
from central.store.console_config import ConsoleConfig, load_config, save_config
from central.store.console_tables import console_settings
from central.store.engine import open_database
from policy_client.schema import utc_now

SECRET = "whsec-0b6e2c"


def _stored(settings: ServerSettings) -> str:
    db = open_database(settings.database_url)
    try:
        with db.read() as conn:
            return str(
                conn.execute(
                    select(console_settings.c.value).where(console_settings.c.key == "webhook_secret")
                ).scalar_one()
            )
    finally:
        db.dispose()


def test_secrets_are_sealed_at_rest_and_legacy_clear_values_at_start(settings: ServerSettings) -> None:
    db = open_store(settings)
    save_config(db, ConsoleConfig(webhook_secret=SECRET), now=utc_now())
    db.dispose()
    assert _stored(settings).startswith("sealed:v1:")

    legacy = open_database(settings.database_url)  # an older version: no secrets key, writes in clear
    save_config(legacy, ConsoleConfig(webhook_secret=SECRET), now=utc_now())
    legacy.dispose()
    assert _stored(settings) == SECRET

    db = open_store(settings)
    try:
        assert load_config(db).webhook_secret == SECRET
    finally:
        db.dispose()
    assert _stored(settings).startswith("sealed:v1:")
