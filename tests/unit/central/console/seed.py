"""Hand-made rows for report and retention tests: events and alerts written straight into the store."""

from __future__ import annotations

import uuid
from datetime import datetime
from itertools import count

from sqlalchemy import insert

from central.runtime import Runtime
from central.store import tables

_seq = count(1)


def event(runtime: Runtime, device_id: str, team: str, kind: str, action: str, ts: datetime) -> None:
    with runtime.db.write() as conn:
        conn.execute(
            insert(tables.events).values(
                device_id=device_id,
                seq=next(_seq),
                id=str(uuid.uuid4()),
                ts=ts,
                kind=kind,
                severity="medium",
                user="asha",
                action=action,
                rule_id=None,
                policy_version=None,
                data={},
                mac="0" * 64,
                received_at=ts,
                team=team,
            )
        )
