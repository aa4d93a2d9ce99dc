"""Tables of the console, alert routing, policy change control, exception requests and retention (schema v2).
Webhook targets (rule channels, outbox targets) are stored sealed: their URLs are the receivers' secrets.

SQLAlchemy Core objects on the shared `tables.metadata`; created by migration step 2. Any thread.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from central.store.sealing import SealedJson
from central.store.tables import BigId, Json, Timestamp, metadata

users = Table(
    "users",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("disabled_at", Timestamp, nullable=True),
    Column("last_login_at", Timestamp, nullable=True),
)

user_teams = Table(
    "user_teams",
    metadata,
    Column("user_id", BigId, primary_key=True),
    Column("team", String(128), primary_key=True),
)

user_tokens = Table(
    "user_tokens",
    metadata,
    # Personal bearer tokens (for the tray's alert stream); scoped like the user.
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", BigId, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp, nullable=True),
    # Version 8: an expiry, and a public id (the hash's first 16 hex digits) to list and revoke it by.
    Column("expires_at", Timestamp, nullable=True),
    Column("token_id", String(16), nullable=True, index=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", BigId, nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("last_seen_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
)

login_failures = Table(
    "login_failures",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("first_at", Timestamp, nullable=False),
    Column("locked_until", Timestamp, nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("ts", Timestamp, nullable=False, index=True),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(256), nullable=False),
    Column("team", String(128), nullable=True),
    Column("before", Json, nullable=True),
    Column("after", Json, nullable=True),
)

console_settings = Table(
    "console_settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Json, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

routing_rules = Table(
    "routing_rules",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("position", Integer, nullable=False, default=100),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("team", String(128), nullable=True),
    Column("kinds", Json, nullable=False),
    Column("min_severity", String(16), nullable=False, default="info"),
    Column("channels", SealedJson("routing_rules.channels"), nullable=False),
    Column("dedupe_seconds", Integer, nullable=False, default=300),
    Column("sla_minutes", Integer, nullable=False, default=240),
    Column("escalate_to", SealedJson("routing_rules.escalate_to"), nullable=False),
    Column("playbook", Json, nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

alert_workflow = Table(
    "alert_workflow",
    metadata,
    # One row per alert, inserted by the router that claimed it (the claim is the primary key).
    Column("alert_id", BigId, primary_key=True),
    Column("team", String(128), nullable=False),
    Column("device_id", String(64), nullable=True),
    Column("rule_id", BigId, nullable=True),
    Column("routed_at", Timestamp, nullable=False),
    Column("deduped_of", BigId, nullable=True),
    Column("sla_due_at", Timestamp, nullable=False),
    Column("escalation_level", Integer, nullable=False, default=0),
    Column("escalated_at", Timestamp, nullable=True),
    Column("acknowledged_at", Timestamp, nullable=True),
    Column("acknowledged_by", String(128), nullable=True),
    Column("closed_at", Timestamp, nullable=True),
    Column("closed_by", String(128), nullable=True),
    Column("note", Text, nullable=True),
    Column("incident", Boolean, nullable=False, default=False),
    Index("ix_alert_workflow_rule_device", "rule_id", "device_id", "routed_at"),
    Index("ix_alert_workflow_open_sla", "closed_at", "acknowledged_at", "sla_due_at"),
)

alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("alert_id", BigId, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("target", SealedJson("alert_outbox.target"), nullable=False),
    Column("payload", Json, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Timestamp, nullable=False),
    Column("delivered_at", Timestamp, nullable=True),
    Column("failed_at", Timestamp, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_alert_outbox_due", "delivered_at", "failed_at", "next_attempt_at"),
)

policy_drafts = Table(
    "policy_drafts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("payload", Text, nullable=False),
    Column("summary", String(500), nullable=False),
    Column("drafted_by", String(128), nullable=False),
    Column("drafted_at", Timestamp, nullable=False),
    Column("status", String(16), nullable=False),
    Column("approved_by", String(128), nullable=True),
    Column("decided_at", Timestamp, nullable=True),
    Column("published_version", Integer, nullable=True),
    Column("base_version", Integer, nullable=False),
)

exception_requests = Table(
    "exception_requests",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_pk", BigId, nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("seq", BigId, nullable=False),
    Column("team", String(128), nullable=False, index=True),
    Column("user", String(256), nullable=False),
    Column("vendor_id", String(8), nullable=True),
    Column("product_id", String(8), nullable=True),
    Column("serial", String(128), nullable=True),
    Column("label", String(256), nullable=True),
    Column("reason", String(600), nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("requested_at", Timestamp, nullable=False),
    Column("status", String(16), nullable=False),
    Column("decided_by", String(128), nullable=True),
    Column("decided_at", Timestamp, nullable=True),
    Column("expires_at", Timestamp, nullable=True),
    Column("draft_id", BigId, nullable=True),
    UniqueConstraint("device_id", "seq", name="uq_exception_requests_device_seq"),
)

retention_rules = Table(
    "retention_rules",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # 'events', 'alerts' or 'audit'.
    Column("scope", String(16), nullable=False),
    Column("kind", String(64), nullable=True),
    Column("team", String(128), nullable=True),
    Column("days", Integer, nullable=False),
)

V2_TABLES = (
    users,
    user_teams,
    user_tokens,
    sessions,
    login_failures,
    audit_log,
    console_settings,
    routing_rules,
    alert_workflow,
    alert_outbox,
    policy_drafts,
    exception_requests,
    retention_rules,
)

quarantine_commands = Table(
    "quarantine_commands",
    metadata,
    # An admin's decision about one quarantined download, signed for its device (policy_client/device_commands.py)
    # and served to that device's service until it reports the outcome or the command expires (schema v9).
    Column("command_id", String(16), primary_key=True),
    Column("device_id", String(64), nullable=False),
    Column("team", String(128), nullable=False),
    Column("quarantine_id", String(64), nullable=False),
    Column("action", String(8), nullable=False),
    Column("payload", Text, nullable=False),
    Column("signature", String(128), nullable=False),
    Column("issued_by", String(128), nullable=False),
    Column("issued_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    # 'pending' until the device reports `download.released` / `download.deleted`: then 'done' or 'failed';
    # 'expired' when it never did in time.
    Column("status", String(16), nullable=False),
    Column("outcome_at", Timestamp, nullable=True),
    Column("outcome_seq", Integer, nullable=True),
    Column("outcome_error", String(200), nullable=True),
    Index("ix_quarantine_commands_device", "device_id", "status"),
    Index("ix_quarantine_commands_status", "status", "issued_at"),
)
