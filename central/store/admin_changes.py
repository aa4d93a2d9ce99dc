"""Held changes that wait for a second admin under the two-person rule (turning the rule off, granting the admin
role, releasing a quarantined download to its desk), and the fleet-wide `governance.*` alerts such a change raises.

Called from console request worker threads, inside the caller's transaction where one is passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import JsonValue
from sqlalchemy import Column, Connection, String, Table, insert, select, update

from central.store import tables
from central.store.clock import as_utc, as_utc_or_none
from central.store.engine import Database
from central.store.tables import BigId, Json, Timestamp, metadata

ChangeKind = Literal["two_person_rule.off", "user.admin", "quarantine.release"]

RULE_OFF: ChangeKind = "two_person_rule.off"
ADMIN_GRANT: ChangeKind = "user.admin"
QUARANTINE_RELEASE: ChangeKind = "quarantine.release"
"""Target `<device_id>:<quarantine_id>`; payload names the desk, the file (as masked by the agent) and its findings."""

ALERT_RULE_OFF = "governance.two_person_rule_off"
ALERT_ADMIN_GRANTED = "governance.admin_granted"
ALERT_RELEASE_HELD = "governance.release_held"
ALERT_TEAM = "(endpoint)"
"""Governance alerts concern the whole endpoint, not a team: only viewers who see every team see them."""

admin_changes = Table(
    "admin_changes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("target", String(256), nullable=False),
    Column("payload", Json, nullable=False),
    Column("requested_by", String(128), nullable=False),
    Column("requested_at", Timestamp, nullable=False),
    Column("status", String(16), nullable=False),
    Column("decided_by", String(128), nullable=True),
    Column("decided_at", Timestamp, nullable=True),
)


@dataclass(frozen=True)
class AdminChange:
    id: int
    kind: str
    target: str
    payload: dict[str, Any]
    requested_by: str
    requested_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None

    @property
    def team(self) -> str:
        """The team a change concerns: a desk's team for a quarantined file's release, else the whole endpoint."""
        return str(self.payload.get("team") or ALERT_TEAM)

    @property
    def description(self) -> str:
        if self.kind == RULE_OFF:
            return "Turn the two-person rule off"
        if self.kind == ADMIN_GRANT:
            teams = ", ".join(self.payload.get("teams") or []) or "no team"
            return f"Grant the admin role to {self.payload.get('name', self.target)} ({teams})"
        if self.kind == QUARANTINE_RELEASE:
            found = ", ".join(str(f) for f in self.payload.get("findings") or []) or "no personal data found"
            return (
                f"Release the quarantined download {self.payload.get('name', '?')} ({found}) to the user of "
                f"{self.payload.get('hostname', self.target)}"
            )
        return self.kind


def _row(row: Any) -> AdminChange:
    return AdminChange(
        id=int(row.id),
        kind=row.kind,
        target=row.target,
        payload=dict(row.payload or {}),
        requested_by=row.requested_by,
        requested_at=as_utc(row.requested_at),
        status=row.status,
        decided_by=row.decided_by,
        decided_at=as_utc_or_none(row.decided_at),
    )


def file(
    conn: Connection, kind: ChangeKind, *, target: str, payload: dict[str, JsonValue], actor: str, now: datetime
) -> int:
    """Store a change that waits for a second admin; return its id."""
    return int(
        conn.execute(  # type: ignore[index]
            insert(admin_changes).values(
                kind=kind,
                target=target[:256],
                payload=payload,
                requested_by=actor[:128],
                requested_at=now,
                status="pending",
            )
        ).inserted_primary_key[0]
    )


def get(conn: Connection, change_id: int) -> AdminChange | None:
    row = conn.execute(select(admin_changes).where(admin_changes.c.id == change_id)).first()
    return None if row is None else _row(row)


def pending(db: Database, *, kind: ChangeKind | None = None) -> list[AdminChange]:
    with db.read() as conn:
        return pending_in(conn, kind=kind)


def pending_in(conn: Connection, *, kind: ChangeKind | None = None) -> list[AdminChange]:
    a = admin_changes
    query = select(a).where(a.c.status == "pending").order_by(a.c.id)
    if kind is not None:
        query = query.where(a.c.kind == kind)
    return [_row(r) for r in conn.execute(query).all()]


def decide(conn: Connection, change_id: int, *, status: str, actor: str, now: datetime, was: str = "pending") -> bool:
    """Move a change from `was` to `status`; False when it was not in `was` (decided meanwhile)."""
    a = admin_changes
    changed = conn.execute(
        update(a)
        .where(a.c.id == change_id, a.c.status == was)
        .values(status=status, decided_by=actor[:128], decided_at=now)
    ).rowcount
    return bool(changed == 1)


def raise_alert(conn: Connection, kind: str, *, data: dict[str, JsonValue], now: datetime) -> None:
    """A high-severity, endpoint-wide alert (no device); the alerting thread routes it like any other."""
    conn.execute(
        insert(tables.alerts).values(
            device_id=None,
            team=ALERT_TEAM,
            kind=kind,
            severity="high",
            status="open",
            created_at=now,
            updated_at=now,
            event_seq=None,
            data=data,
        )
    )
