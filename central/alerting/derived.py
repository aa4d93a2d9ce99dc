"""Derived alerts the endpoint raises itself: agent offline (missed heartbeats) and shared login.

Called on the alerting thread every few seconds; the router then routes them like any other alert.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import JsonValue
from sqlalchemy import Connection, Row, func, select, update

from central.store import tables
from central.store.alerts import NewAlert, insert_alerts
from central.store.clock import as_utc
from central.store.console_tables import alert_workflow
from central.store.engine import Database

log = logging.getLogger(__name__)

AGENT_OFFLINE = "agent.offline"
SHARED_LOGIN = "agent.shared_login"


def _offline_changes(conn: Connection, cutoff: datetime) -> tuple[Sequence[Row[Any, Any, Any]], list[int]]:
    """Silent devices without an open offline alert, and open offline alerts of devices heard since: both found by
    the database (the devices table is scanned in SQL, not row by row in Python)."""
    d, a = tables.devices, tables.alerts
    open_offline = (
        select(a.c.id).where(a.c.kind == AGENT_OFFLINE, a.c.status != "closed", a.c.device_id == d.c.device_id).exists()
    )
    silent = conn.execute(
        select(d.c.device_id, d.c.team, d.c.last_seen).where(
            d.c.revoked_at.is_(None), d.c.last_seen.isnot(None), d.c.last_seen < cutoff, ~open_offline
        )
    ).all()
    heard = [
        int(alert_id)
        for alert_id in conn.execute(
            select(a.c.id)
            .select_from(a.join(d, d.c.device_id == a.c.device_id))
            .where(
                a.c.kind == AGENT_OFFLINE,
                a.c.status != "closed",
                d.c.revoked_at.is_(None),
                d.c.last_seen.isnot(None),
                d.c.last_seen >= cutoff,
            )
        ).scalars()
    ]
    return silent, heard


def raise_offline(db: Database, *, now: datetime, after: timedelta) -> int:
    """One open `agent.offline` alert per silent device; closed by itself when the device is heard again.

    Looked for in a read first: usually nothing changed, and then the pass never waits for (or holds) the writer
    the request threads share. When something did, the write transaction looks again and acts on what it finds."""
    a, w = tables.alerts, alert_workflow
    cutoff = now - after
    with db.read() as conn:
        silent, heard = _offline_changes(conn, cutoff)
    if not silent and not heard:
        return 0
    with db.write() as conn:
        silent, heard = _offline_changes(conn, cutoff)
        for row in silent:
            last_seen = as_utc(row.last_seen)
            minutes = int((now - last_seen).total_seconds() // 60)
            insert_alerts(
                conn,
                [
                    NewAlert(
                        kind=AGENT_OFFLINE,
                        severity="medium",
                        event_seq=None,
                        data={"last_seen": last_seen.isoformat(), "silent_minutes": minutes},
                    )
                ],
                device_id=str(row.device_id),
                team=str(row.team),
                now=now,
            )
        if heard:
            conn.execute(update(a).where(a.c.id.in_(heard)).values(status="closed", updated_at=now))
            conn.execute(
                update(w)
                .where(w.c.alert_id.in_(heard))
                .values(closed_at=now, closed_by="system", note="device heard from again")
            )
    return len(silent)


def raise_shared_logins(db: Database, *, now: datetime, window: timedelta) -> int:
    """One OS user reporting heartbeats from two or more devices within `window`: one alert per team involved."""
    h, d, a = tables.device_health, tables.devices, tables.alerts
    since = now - window
    raised = 0
    shared_users = (
        select(h.c.user)
        .where(h.c.received_at >= since, h.c.user != "")
        .group_by(h.c.user)
        .having(func.count(h.c.device_id) > 1)
    )
    with db.read(single_statement=True) as conn:
        if conn.execute(shared_users.limit(1)).first() is None:
            return 0  # the usual case, found without waiting for the writer the request threads share
    with db.write() as conn:
        shared = [str(u) for u in conn.execute(shared_users).scalars()]
        if not shared:
            return 0
        already = {
            (str(r.team), str((r.data or {}).get("user", "")))
            for r in conn.execute(select(a.c.team, a.c.data).where(a.c.kind == SHARED_LOGIN, a.c.status != "closed"))
        }
        for user in shared:
            rows = conn.execute(
                select(h.c.device_id, d.c.team, d.c.hostname)
                .select_from(h.join(d, d.c.device_id == h.c.device_id))
                .where(h.c.user == user, h.c.received_at >= since, d.c.revoked_at.is_(None))
                .order_by(h.c.device_id)
            ).all()
            if len(rows) < 2:
                continue
            devices: list[JsonValue] = [
                {"device_id": r.device_id, "hostname": r.hostname, "team": r.team} for r in rows
            ]
            for team in sorted({str(r.team) for r in rows}):
                if (team, user) in already:
                    continue
                first = next(r for r in rows if r.team == team)
                insert_alerts(
                    conn,
                    [
                        NewAlert(
                            kind=SHARED_LOGIN, severity="high", event_seq=None, data={"user": user, "devices": devices}
                        )
                    ],
                    device_id=str(first.device_id),
                    team=team,
                    now=now,
                )
                raised += 1
    if raised:
        log.warning("raised %s shared-login alert(s)", raised)
    return raised
