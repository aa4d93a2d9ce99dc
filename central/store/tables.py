"""The current shape of the endpoint's tables, as SQLAlchemy Core objects used by every query.

Changing a table here needs a new step in `migrations.py`; a test compares the two.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# BIGINT primary keys are not rowid aliases on SQLite, so they would never autoincrement there.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")
Timestamp = DateTime(timezone=True)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", Timestamp, nullable=False),
)

teams = Table(
    "teams",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("created_at", Timestamp, nullable=False),
)

enroll_tokens = Table(
    "enroll_tokens",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("team", String(128), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("max_uses", Integer, nullable=True),
    Column("uses", Integer, nullable=False, default=0),
    Column("revoked_at", Timestamp, nullable=True),
    Column("created_by", String(128), nullable=False, default=""),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp, nullable=True),
    Column("expires_at", Timestamp, nullable=True),
    Column("created_by", String(128), nullable=False, default="cli", server_default="cli"),
)

devices = Table(
    "devices",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("team", String(128), nullable=False, index=True),
    Column("hostname", String(255), nullable=False),
    Column("os", String(64), nullable=False),
    Column("user", String(256), nullable=False),
    Column("agent_version", String(64), nullable=False),
    Column("credential_hash", String(64), nullable=False, unique=True),
    Column("chain_key", String(128), nullable=False),
    # Chain state: the highest seq received, its mac, and how many seqs below it are still missing.
    Column("last_seq", BigInteger, nullable=False, default=0),
    Column("last_mac", String(64), nullable=False),
    Column("missing", BigInteger, nullable=False, default=0),
    Column("enroll_token_id", BigInteger, nullable=True),
    Column("enrolled_at", Timestamp, nullable=False),
    Column("last_seen", Timestamp, nullable=True),
    Column("revoked_at", Timestamp, nullable=True),
)

device_health = Table(
    "device_health",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("ts", Timestamp, nullable=False),
    Column("received_at", Timestamp, nullable=False),
    Column("user", String(256), nullable=False),
    Column("agent_version", String(64), nullable=False),
    Column("policy_version", BigInteger, nullable=False),
    Column("queue_depth", BigInteger, nullable=False),
    Column("oldest_unsent_age_s", Float, nullable=True),
    Column("collectors", Json, nullable=False),
    Column("rss_bytes", BigInteger, nullable=True),
    Column("cpu_percent", Float, nullable=True),
    Column("attention", Json, nullable=True),
    # 'protected' (a privileged service the desk user cannot stop) or 'unprotected'; from the last heartbeat.
    Column("mode", String(16), nullable=False, default="unprotected", server_default="unprotected"),
)

events = Table(
    "events",
    metadata,
    Column("pk", BigId, primary_key=True, autoincrement=True),
    Column("device_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("id", String(36), nullable=False),
    Column("ts", Timestamp, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("user", String(256), nullable=False),
    Column("action", String(32), nullable=False),
    Column("rule_id", String(128), nullable=True),
    Column("policy_version", BigInteger, nullable=True),
    Column("data", Json, nullable=False),
    Column("mac", String(64), nullable=False),
    Column("received_at", Timestamp, nullable=False),
    Column("team", String(128), nullable=False),
    UniqueConstraint("device_id", "seq", name="uq_events_device_seq"),
    Index("ix_events_team_ts", "team", "ts"),
    Index("ix_events_kind_ts", "kind", "ts", "action"),
)

chain_pending = Table(
    "chain_pending",
    metadata,
    # Events whose predecessor had not arrived yet: their link is checked when it does.
    Column("device_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("mac", String(64), nullable=False),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("device_id", String(64), nullable=True),
    Column("team", String(128), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("status", String(16), nullable=False, default="open"),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("event_seq", BigInteger, nullable=True),
    Column("data", Json, nullable=False),
    Index("ix_alerts_team_status", "team", "status"),
    Index("ix_alerts_device", "device_id"),
)

policies = Table(
    "policies",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # 'global' for the fleet-wide policy; a team name for a team's own policy (later).
    Column("scope", String(128), nullable=False, default="global"),
    Column("version", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("signature", String(128), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("author", String(128), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("scope", "version", name="uq_policies_scope_version"),
)

unlock_tokens = Table(
    "unlock_tokens",
    metadata,
    # Every unlock token the endpoint signed (policy_client/unlock_token.py): a reported use naming a token
    # that is not here, or is here for another device, is a forgery.
    Column("token_id", String(16), primary_key=True),
    Column("device_id", String(64), nullable=False, index=True),
    Column("team", String(128), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("issued_by", String(128), nullable=False),
    Column("issued_at", Timestamp, nullable=False),
    # The first reported use: the device's time of use and the seq of its `agent.unlock_used` event.
    Column("used_at", Timestamp, nullable=True),
    Column("used_seq", BigInteger, nullable=True),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("public_key", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
)
