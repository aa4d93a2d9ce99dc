"""Schema migrations: an ordered list of steps and a schema_version table, the same for SQLite and PostgreSQL.

Run once at server start and by every CLI command, before any other query; concurrent starts are
serialised by the database (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Connection, Float, MetaData, String, Table, func, insert, select, text

from central.store import console_tables, tables
from central.store.engine import Database

log = logging.getLogger(__name__)

_PG_MIGRATION_LOCK = 0x4457_6D69  # "DWmi"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    # Version 1 is tables.py as first released. When a later migration changes a table, freeze
    # that table's version-1 definition here before editing tables.py.
    v1 = [
        tables.teams,
        tables.enroll_tokens,
        tables.api_tokens,
        tables.devices,
        tables.events,
        tables.chain_pending,
        tables.alerts,
        tables.policies,
        tables.signing_keys,
    ]
    tables.metadata.create_all(conn, tables=v1)
    frozen = MetaData()
    Table(  # device_health as released in version 1 (version 3 adds `attention`, version 6 `mode`)
        "device_health",
        frozen,
        Column("device_id", String(64), primary_key=True),
        Column("ts", tables.Timestamp, nullable=False),
        Column("received_at", tables.Timestamp, nullable=False),
        Column("user", String(256), nullable=False),
        Column("agent_version", String(64), nullable=False),
        Column("policy_version", BigInteger, nullable=False),
        Column("queue_depth", BigInteger, nullable=False),
        Column("oldest_unsent_age_s", Float, nullable=True),
        Column("collectors", tables.Json, nullable=False),
        Column("rss_bytes", BigInteger, nullable=True),
        Column("cpu_percent", Float, nullable=True),
    )
    frozen.create_all(conn)


def _v2_console(conn: Connection) -> None:
    tables.metadata.create_all(conn, tables=list(console_tables.V2_TABLES))


def _v3_attention(conn: Connection) -> None:
    json_type = tables.Json.compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE device_health ADD COLUMN attention {json_type}"))


def _v4_report_index(conn: Connection) -> None:
    # Reports and attestation pages count events by kind (and action) over a period; covering, so the
    # counts come from the index alone.
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_events_kind_ts ON events (kind, ts, action)"))


def _v5_unlock_tokens(conn: Connection) -> None:
    tables.metadata.create_all(conn, tables=[tables.unlock_tokens])


def _v6_device_mode(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE device_health ADD COLUMN mode VARCHAR(16) DEFAULT 'unprotected' NOT NULL"))


MIGRATIONS: Sequence[Migration] = (
    Migration(1, "initial schema", _v1_initial),
    Migration(2, "console, alert routing, change control, exception requests, retention", _v2_console),
    Migration(3, "device health: what the person at the desk must act on (overdue acknowledgement...)", _v3_attention),
    Migration(4, "events index by kind and time for reports", _v4_report_index),
    Migration(5, "unlock tokens the endpoint signed, and their first reported use", _v5_unlock_tokens),
    Migration(6, "device health: protected (privileged service) or unprotected mode", _v6_device_mode),
    Migration(7, "changes to change control held for a second admin", lambda conn: _v7_admin_changes(conn)),
    Migration(8, "token expiry; personal tokens get a public id", lambda conn: _v8_token_lifecycle(conn)),
    Migration(9, "admins' signed decisions about quarantined downloads", lambda conn: _v9_quarantine_commands(conn)),
)


def current_version(conn: Connection) -> int:
    tables.schema_version.create(conn, checkfirst=True)
    return int(conn.execute(select(func.coalesce(func.max(tables.schema_version.c.version), 0))).scalar_one())


def migrate(db: Database, *, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply every step newer than the database's version, all in one transaction; return the version."""
    with db.write() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        version = current_version(conn)
        latest = max((m.version for m in migrations), default=0)
        if version > latest:
            raise RuntimeError(
                f"database schema version {version} is newer than this DeskWarden ({latest}); upgrade DeskWarden"
            )
        for step in sorted(migrations, key=lambda m: m.version):
            if step.version <= version:
                continue
            log.info("applying schema migration %s: %s", step.version, step.description)
            step.apply(conn)
            conn.execute(insert(tables.schema_version).values(version=step.version, applied_at=datetime.now(UTC)))
            version = step.version
    return version


def _v7_admin_changes(conn: Connection) -> None:
    # As central/store/admin_changes.py first defined it.
    frozen = MetaData()
    Table(
        "admin_changes",
        frozen,
        Column("id", tables.BigId, primary_key=True, autoincrement=True),
        Column("kind", String(32), nullable=False),
        Column("target", String(256), nullable=False),
        Column("payload", tables.Json, nullable=False),
        Column("requested_by", String(128), nullable=False),
        Column("requested_at", tables.Timestamp, nullable=False),
        Column("status", String(16), nullable=False),
        Column("decided_by", String(128), nullable=True),
        Column("decided_at", tables.Timestamp, nullable=True),
    )
    frozen.create_all(conn)


def _v8_token_lifecycle(conn: Connection) -> None:
    # Versions 1 and 2 create api_tokens and user_tokens from the current definitions, so a new database
    # already has these columns: add each one only where it is missing.
    from sqlalchemy import inspect

    timestamp = tables.Timestamp.compile(dialect=conn.dialect)
    present = {t: {c["name"] for c in inspect(conn).get_columns(t)} for t in ("api_tokens", "user_tokens")}
    wanted = [
        ("api_tokens", "expires_at", f"{timestamp} NULL"),
        ("api_tokens", "created_by", "VARCHAR(128) DEFAULT 'cli' NOT NULL"),
        ("user_tokens", "expires_at", f"{timestamp} NULL"),
        ("user_tokens", "token_id", "VARCHAR(16) NULL"),
    ]
    for table, column, ddl in wanted:
        if column not in present[table]:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
    conn.execute(text("UPDATE user_tokens SET token_id = substr(token_hash, 1, 16) WHERE token_id IS NULL"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_user_tokens_token_id ON user_tokens (token_id)"))


def _v9_quarantine_commands(conn: Connection) -> None:
    # When this table changes later, freeze this version's definition here first.
    tables.metadata.create_all(conn, tables=[console_tables.quarantine_commands])
