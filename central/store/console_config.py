"""Endpoint-wide console settings kept in the database (so every API process agrees): two-person rule, SMTP, webhooks.

Read by request worker threads and the alerting thread; written by admins through the console.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select

from central.store.console_tables import console_settings
from central.store.engine import Database


@dataclass(frozen=True)
class ConsoleConfig:
    two_person_rule: bool = False
    """A policy change drafted by one admin must be approved by another before it is signed."""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "deskwarden@localhost"
    smtp_starttls: bool = False
    smtp_user: str = ""
    smtp_password: str = ""
    webhook_secret: str = ""
    """Shared secret for the X-DeskWarden-Signature header of webhook deliveries."""
    public_url: str = ""
    """Console base URL used for links in webhook and e-mail messages."""
    default_sla_minutes: int = 240
    offline_alert_minutes: int = 10
    """An enrolled device silent this long gets an `agent.offline` alert (missed heartbeats)."""
    retention_every_minutes: int = 60


def load_config(db: Database) -> ConsoleConfig:
    with db.read() as conn:
        rows = conn.execute(select(console_settings.c.key, console_settings.c.value)).all()
    known = {f.name: f.type for f in fields(ConsoleConfig)}
    values: dict[str, Any] = {r.key: r.value for r in rows if r.key in known}
    return ConsoleConfig(**values)


def save_config(db: Database, config: ConsoleConfig, *, now: datetime) -> None:
    with db.write() as conn:
        conn.execute(delete(console_settings))
        conn.execute(
            insert(console_settings), [{"key": k, "value": v, "updated_at": now} for k, v in asdict(config).items()]
        )
