"""Alerts: rows raised by ingest (tamper evidence) and read by the API; routing (issue 5) builds on them.

Called from request worker threads, inside the transaction that stored the triggering events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import JsonValue
from sqlalchemy import Connection, insert, select

from central.store import tables
from central.store.clock import as_utc
from central.store.engine import Database

AlertStatus = Literal["open", "acknowledged", "closed"]

CHAIN_BROKEN = "tamper.chain_broken"
SEQ_GAP = "tamper.seq_gap"
AGENT_TAMPER = "tamper.agent_reported"
AGENT_STOPPED = "tamper.agent_stopped"
HELPER_STOPPED = "tamper.helper_stopped"
HELPER_MISSING = "tamper.helper_missing"
UNCLEAN_STOP = "tamper.unclean_stop"
UNLOCK_FORGED = "tamper.unlock_forged"
SEQ_REUSE = "tamper.seq_reuse"
POLICY_UNKNOWN = "tamper.policy_unknown"


@dataclass(frozen=True)
class NewAlert:
    kind: str
    severity: str
    event_seq: int | None
    data: dict[str, JsonValue] = field(default_factory=dict)


def insert_alerts(conn: Connection, alerts: list[NewAlert], *, device_id: str, team: str, now: datetime) -> None:
    if not alerts:
        return
    conn.execute(
        insert(tables.alerts),
        [
            {
                "device_id": device_id,
                "team": team,
                "kind": a.kind,
                "severity": a.severity,
                "status": "open",
                "created_at": now,
                "updated_at": now,
                "event_seq": a.event_seq,
                "data": a.data,
            }
            for a in alerts
        ],
    )


def list_alerts(
    db: Database,
    *,
    device_id: str | None = None,
    kind: str | None = None,
    status: str | None = None,
    team: str | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    a = tables.alerts
    query = select(a).where(a.c.id > after_id).order_by(a.c.id).limit(limit)
    if device_id is not None:
        query = query.where(a.c.device_id == device_id)
    if kind is not None:
        query = query.where(a.c.kind == kind)
    if status is not None:
        query = query.where(a.c.status == status)
    if team is not None:
        query = query.where(a.c.team == team)
    with db.read() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "id": row.id,
            "device_id": row.device_id,
            "team": row.team,
            "kind": row.kind,
            "severity": row.severity,
            "status": row.status,
            "created_at": as_utc(row.created_at).isoformat(),
            "updated_at": as_utc(row.updated_at).isoformat(),
            "event_seq": row.event_seq,
            "data": row.data,
        }
        for row in rows
    ]
