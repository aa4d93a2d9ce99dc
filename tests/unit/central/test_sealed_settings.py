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


HOOK = "https://hooks.slack.com/services/T0SECRET/B0SECRET/abcSECRETdef"


def test_webhook_urls_in_rules_and_the_outbox_are_sealed_at_rest(settings: ServerSettings) -> None:
    from central.alerting import outbox
    from central.alerting.rules import Channel, RuleSpec, list_rules, save_rule

    spec = RuleSpec(
        name="r", channels=[Channel(type="webhook", url=HOOK)], escalate_to=[Channel(type="webhook", url=HOOK)]
    )  # type: ignore[arg-type]
    db = open_store(settings)
    try:
        with db.write() as conn:
            save_rule(conn, spec, now=utc_now())
            outbox.enqueue(conn, alert_id=1, channel="webhook", target={"url": HOOK}, payload={}, now=utc_now())
        assert list_rules(db)[0].spec == spec
        assert outbox.pending(db)[0]["target"] == {"url": HOOK}
    finally:
        db.dispose()

    plain = open_database(settings.database_url)  # a reader of the database alone
    try:
        with plain.read() as conn:
            stored = [
                *conn.exec_driver_sql("SELECT channels, escalate_to FROM routing_rules").one(),
                *conn.exec_driver_sql("SELECT target FROM alert_outbox").one(),
            ]
    finally:
        plain.dispose()
    assert all("SECRET" not in str(value) for value in stored), stored


def test_webhook_urls_stored_in_clear_by_an_older_version_are_sealed_at_start(settings: ServerSettings) -> None:
    from central.alerting.rules import Channel, RuleSpec, list_rules, save_rule

    open_store(settings).dispose()
    legacy = open_database(settings.database_url)  # no secrets key: writes in clear
    spec = RuleSpec(name="r", channels=[Channel(type="webhook", url=HOOK)])  # type: ignore[arg-type]
    with legacy.write() as conn:
        save_rule(conn, spec, now=utc_now())
    with legacy.read() as conn:
        assert "SECRET" in str(conn.exec_driver_sql("SELECT channels FROM routing_rules").scalar())
    legacy.dispose()

    db = open_store(settings)
    try:
        assert list_rules(db)[0].spec == spec
        with db.read() as conn:
            assert "SECRET" not in str(conn.exec_driver_sql("SELECT channels FROM routing_rules").scalar())
    finally:
        db.dispose()
