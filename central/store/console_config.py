"""Endpoint-wide console settings kept in the database (so every API process agrees): two-person rule, SMTP, webhooks.
The SMTP password and webhook secret are stored sealed with the data directory's secrets key.

Read by request worker threads and the alerting thread; written by admins through the console.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, insert, select, update

from central.store.console_tables import alert_outbox, console_settings, routing_rules
from central.store.engine import Database, scrub_free_space
from central.store.sealing import SealedSecretError, is_sealed

log = logging.getLogger(__name__)


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


SECRET_FIELDS = ("smtp_password", "webhook_secret")
"""Stored sealed (`central.store.sealing`): the database alone does not give them away."""


def load_config(db: Database) -> ConsoleConfig:
    with db.read() as conn:
        rows = conn.execute(select(console_settings.c.key, console_settings.c.value)).all()
    known = {f.name: f.type for f in fields(ConsoleConfig)}
    values: dict[str, Any] = {r.key: r.value for r in rows if r.key in known}
    for name in SECRET_FIELDS:
        if is_sealed(values.get(name)):
            if db.box is None:
                raise SealedSecretError(f"{name} is sealed and this process has no secrets key")
            values[name] = db.box.open(values[name], context=name)
    return ConsoleConfig(**values)


def save_config(db: Database, config: ConsoleConfig, *, now: datetime) -> None:
    values = asdict(config)
    if db.box is not None:
        for name in SECRET_FIELDS:
            values[name] = db.box.seal(values[name], context=name)
    with db.write() as conn:
        conn.execute(delete(console_settings))
        conn.execute(insert(console_settings), [{"key": k, "value": v, "updated_at": now} for k, v in values.items()])


SEALED_COLUMNS = (
    (routing_rules, ("channels", "escalate_to")),
    (alert_outbox, ("target",)),
)
"""Rows of these columns written in clear by an older version are sealed at start."""


def seal_stored_secrets(db: Database) -> None:
    """Seal secrets an older version stored in clear (run at every start; nothing to do once sealed)."""
    if db.box is None:
        return
    sealed_rows = [_seal_clear_rows(db, table, columns) for table, columns in SEALED_COLUMNS]
    if any(sealed_rows):
        scrub_free_space(db, table=routing_rules.name)
        if not db.is_sqlite:
            scrub_free_space(db, table=alert_outbox.name)
    with db.read() as conn:
        rows = conn.execute(
            select(console_settings.c.key, console_settings.c.value).where(console_settings.c.key.in_(SECRET_FIELDS))
        ).all()
    clear = [r.key for r in rows if isinstance(r.value, str) and r.value and not is_sealed(r.value)]
    if not clear:
        return
    with db.write() as conn:
        for name in clear:
            current = conn.execute(select(console_settings.c.value).where(console_settings.c.key == name)).scalar()
            if isinstance(current, str) and current and not is_sealed(current):
                conn.execute(
                    update(console_settings)
                    .where(console_settings.c.key == name)
                    .values(value=db.box.seal(current, context=name))
                )
    scrub_free_space(db, table=console_settings.name)


def _seal_clear_rows(db: Database, table: Table, columns: tuple[str, ...]) -> int:
    """Rewrite the rows whose `columns` are stored in clear (the column type seals on write); how many."""
    listed = ", ".join(columns)
    with db.read() as conn:
        raw = conn.exec_driver_sql(f"SELECT id, {listed} FROM {table.name}").all()  # noqa: S608 - fixed names
    clear: list[dict[str, Any]] = []
    for row in raw:
        values = {name: _stored_json(value) for name, value in zip(columns, row[1:], strict=True)}
        if not all(is_sealed(v) for v in values.values()):
            clear.append({"id": row[0], **values})
    if clear:
        with db.write() as conn:
            for values in clear:
                conn.execute(update(table).where(table.c.id == values["id"]).values({c: values[c] for c in columns}))
        log.info("sealed %s row(s) of %s stored in clear", len(clear), table.name)
    return len(clear)


def _stored_json(value: Any) -> Any:
    """What the driver returned for a JSON column read as it is stored (SQLite: its JSON text)."""
    return json.loads(value) if isinstance(value, str) and not is_sealed(value) else value
