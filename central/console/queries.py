"""Read queries only the console needs: devices per viewer, acknowledgements and clean-desk attestations per agent.

Called from console request worker threads.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from central.auth.principal import Principal
from central.store import devices, tables
from central.store.clock import as_utc, as_utc_or_none
from central.store.engine import Database

ATTESTATION_WINDOW = timedelta(days=30)


def visible_devices(db: Database, who: Principal, *, now: datetime, offline_after: timedelta) -> list[dict[str, Any]]:
    rows = devices.list_devices(db, now=now, offline_after=offline_after)
    return [r for r in rows if who.sees(r["team"])]


def attestations(db: Database, who: Principal, *, now: datetime) -> list[dict[str, Any]]:
    """Per device: last policy acknowledgement, and clean-desk attested / missed counts over 30 days."""
    e, d = tables.events, tables.devices
    since = now - ATTESTATION_WINDOW
    kinds = ("policy.acknowledged", "cleandesk.attested", "cleandesk.missed", "cleandesk.prompted")
    with db.read() as conn:
        devs = conn.execute(
            select(d.c.device_id, d.c.team, d.c.hostname, d.c.user)
            .where(d.c.revoked_at.is_(None))
            .order_by(d.c.team, d.c.hostname)
        ).all()
        last_ack = {
            r.device_id: r.ts
            for r in conn.execute(
                select(e.c.device_id, func.max(e.c.ts).label("ts"))
                .where(e.c.kind == "policy.acknowledged")
                .group_by(e.c.device_id)
            ).all()
        }
        counts: dict[tuple[str, str], int] = {}
        for r in conn.execute(
            select(e.c.device_id, e.c.kind, func.count().label("n"))
            .where(e.c.kind.in_(kinds[1:]), e.c.ts >= since)
            .group_by(e.c.device_id, e.c.kind)
        ).all():
            counts[(r.device_id, r.kind)] = int(r.n)
        last_attested = {
            r.device_id: r.ts
            for r in conn.execute(
                select(e.c.device_id, func.max(e.c.ts).label("ts"))
                .where(e.c.kind == "cleandesk.attested")
                .group_by(e.c.device_id)
            ).all()
        }
    out = []
    for dev in devs:
        if not who.sees(dev.team):
            continue
        attested = counts.get((dev.device_id, "cleandesk.attested"), 0)
        missed = counts.get((dev.device_id, "cleandesk.missed"), 0)
        out.append(
            {
                "device_id": dev.device_id,
                "team": dev.team,
                "hostname": dev.hostname,
                "user": dev.user,
                "last_ack": as_utc_or_none(last_ack.get(dev.device_id)),
                "attested": attested,
                "missed": missed,
                "last_attested": as_utc_or_none(last_attested.get(dev.device_id)),
                "rate": None if attested + missed == 0 else round(100 * attested / (attested + missed)),
            }
        )
    return out


def teams(db: Database) -> list[dict[str, Any]]:
    t, d = tables.teams, tables.devices
    with db.read() as conn:
        counts: dict[str, int] = dict(
            conn.execute(select(d.c.team, func.count()).where(d.c.revoked_at.is_(None)).group_by(d.c.team)).all()
        )
        names = [str(n) for n in conn.execute(select(t.c.name).order_by(t.c.name)).scalars()]
    return [{"name": n, "devices": int(counts.get(n, 0))} for n in names]


def device_detail(db: Database, who: Principal, device_id: str, *, now: datetime, offline_after: timedelta) -> Any:
    """One device as the devices page shows it, or None when there is none the viewer may see (answered alike)."""
    d = tables.devices
    with db.read() as conn:
        team = conn.execute(select(d.c.team).where(d.c.device_id == device_id)).scalar_one_or_none()
    if team is None or not who.sees(str(team)):
        return None
    rows = devices.list_devices(db, now=now, offline_after=offline_after, team=str(team))
    return next((r for r in rows if r["device_id"] == device_id), None)


def device_events(
    db: Database, device_id: str, *, before_seq: int | None = None, kind: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The device's stored events, newest first (keyset on seq), every kind including masked clipboard events:
    their data holds detector types, counts and masked samples only."""
    e = tables.events
    query = select(e).where(e.c.device_id == device_id).order_by(e.c.seq.desc()).limit(limit)
    if before_seq is not None:
        query = query.where(e.c.seq < before_seq)
    if kind:
        query = query.where(e.c.kind == kind)
    with db.read() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "seq": int(r.seq),
            "ts": as_utc(r.ts),
            "kind": r.kind,
            "severity": r.severity,
            "action": r.action,
            "user": r.user,
            "rule_id": r.rule_id,
            "policy_version": r.policy_version,
            "data": r.data,
        }
        for r in rows
    ]
