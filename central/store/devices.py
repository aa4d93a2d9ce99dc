"""Devices: enrolment against a team token, credential lookup, revocation, heartbeats and the device list.

Called from request worker threads. A heartbeat advertising a policy version this endpoint never published
raises `tamper.policy_unknown` (once per change of the advertised version).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from central.store import tables
from central.store.alerts import POLICY_UNKNOWN, NewAlert, insert_alerts
from central.store.clock import as_utc, as_utc_or_none
from central.store.engine import Database
from central.store.ingest import DeviceGone
from central.store.tokens import CREDENTIAL_PREFIX, new_token, token_hash
from policy_client.schema import GENESIS_MAC, EnrollRequest, Heartbeat, Severity

POLICY_SCOPE = "global"
"""The scope agents fetch (`GET /v1/policy`); the versions a heartbeat may advertise."""


class EnrollRefused(Exception):
    """The enrolment token cannot be used; the message says why and is safe to show the agent."""


@dataclass(frozen=True)
class Enrolled:
    device_id: str
    credential: str
    team: str


@dataclass(frozen=True)
class DeviceAuth:
    device_id: str
    team: str


@dataclass(frozen=True)
class HeartbeatOutcome:
    last_seq: int
    """The highest seq stored for the device, and its mac: where a resynchronising agent continues."""
    last_mac: str
    policy_version: int
    """The newest published policy version (0 before the first), read in the heartbeat's transaction."""
    alerts: tuple[NewAlert, ...] = ()


def enroll_device(db: Database, request: EnrollRequest, *, now: datetime) -> Enrolled:
    t = tables.enroll_tokens
    with db.write() as conn:
        row = conn.execute(
            select(t.c.id, t.c.team, t.c.expires_at, t.c.max_uses, t.c.uses, t.c.revoked_at)
            .where(t.c.token_hash == token_hash(request.token))
            .with_for_update()
        ).first()
        if row is None:
            raise EnrollRefused("unknown enrolment token")
        if row.revoked_at is not None:
            raise EnrollRefused("enrolment token has been revoked")
        if as_utc(row.expires_at) <= now:
            raise EnrollRefused("enrolment token has expired; ask your administrator for a new one")
        if row.max_uses is not None and row.uses >= row.max_uses:
            raise EnrollRefused("enrolment token has been used the maximum number of times")
        conn.execute(update(t).where(t.c.id == row.id).values(uses=t.c.uses + 1))
        device_id = uuid.uuid4().hex
        credential = new_token(CREDENTIAL_PREFIX)
        conn.execute(
            insert(tables.devices).values(
                device_id=device_id,
                team=row.team,
                hostname=request.hostname,
                os=request.os,
                user=request.user,
                agent_version=request.agent_version,
                credential_hash=token_hash(credential),
                chain_key=request.chain_key,
                last_seq=0,
                last_mac=GENESIS_MAC,
                missing=0,
                enroll_token_id=row.id,
                enrolled_at=now,
                last_seen=now,
            )
        )
    return Enrolled(device_id=device_id, credential=credential, team=str(row.team))


def find_device(db: Database, credential: str) -> DeviceAuth | None:
    return find_device_by_hash(db, token_hash(credential))


def find_device_by_hash(db: Database, credential_hash: str) -> DeviceAuth | None:
    """The device holding this credential, unless revoked. A credential's hash is written once, when its device
    is enrolled (a new row), and only revocation takes it back: what `revocation_marker` lets a cache notice."""
    d = tables.devices
    with db.read(single_statement=True) as conn:
        row = conn.execute(
            select(d.c.device_id, d.c.team).where(d.c.credential_hash == credential_hash, d.c.revoked_at.is_(None))
        ).first()
    return None if row is None else DeviceAuth(device_id=str(row.device_id), team=str(row.team))


_revocations_here = 0
_revocations_lock = threading.Lock()


def revocations_in_this_process() -> int:
    """How many devices `revoke_device` has revoked in this process: changes at once after each revocation."""
    return _revocations_here


def revocation_marker(db: Database) -> int:
    """How many devices are revoked, whoever revoked them (any process or host): grows with every revocation, as
    devices are never un-revoked or deleted. One cheap statement; a credential cache compares it now and then."""
    d = tables.devices
    with db.read(single_statement=True) as conn:
        return int(conn.execute(select(func.count(d.c.revoked_at))).scalar_one())


def revoke_device(db: Database, device_id: str, *, now: datetime) -> bool:
    global _revocations_here  # the process-wide count the credential caches watch
    d = tables.devices
    with db.write() as conn:
        result = conn.execute(
            update(d).where(d.c.device_id == device_id, d.c.revoked_at.is_(None)).values(revoked_at=now)
        )
        revoked = result.rowcount > 0
    if revoked:
        with _revocations_lock:
            _revocations_here += 1
    return revoked


def _beat_device_statement() -> Any:
    """Heartbeat, first statement: the device's `last_seen` (and user and agent version when the beat names them),
    returning its chain head and, read in the same statement, what the policy check and the answer need."""
    d, h, p = tables.devices, tables.device_health, tables.policies
    device_id = bindparam("beat_device_id", type_=d.c.device_id.type)
    advertised = bindparam("beat_policy_version", type_=p.c.version.type)
    return (
        update(d)
        .where(d.c.device_id == device_id, d.c.revoked_at.is_(None))
        .values(
            last_seen=bindparam("beat_now", type_=d.c.last_seen.type),
            user=func.coalesce(func.nullif(bindparam("beat_user", type_=d.c.user.type), ""), d.c.user),
            agent_version=func.coalesce(
                func.nullif(bindparam("beat_agent_version", type_=d.c.agent_version.type), ""), d.c.agent_version
            ),
        )
        .returning(
            d.c.last_seq,
            d.c.last_mac,
            select(h.c.policy_version).where(h.c.device_id == device_id).scalar_subquery().label("before"),
            exists().where(p.c.scope == POLICY_SCOPE, p.c.version == advertised).label("published"),
            select(func.max(p.c.version)).where(p.c.scope == POLICY_SCOPE).scalar_subquery().label("newest"),
        )
    )


_BEAT_DEVICE = _beat_device_statement()
_HEALTH_COLUMNS = [c.name for c in tables.device_health.c if c.name != "device_id"]
_BEAT_HEALTH: dict[str, Any] = {}
"""The device_health upsert, built once per dialect (ON CONFLICT is dialect syntax in SQLAlchemy)."""


def _beat_health_statement(dialect: str) -> Any:
    statement = _BEAT_HEALTH.get(dialect)
    if statement is None:
        upsert = sqlite_insert if dialect == "sqlite" else postgresql_insert
        base = upsert(tables.device_health)
        statement = base.on_conflict_do_update(
            index_elements=[tables.device_health.c.device_id],
            set_={name: base.excluded[name] for name in _HEALTH_COLUMNS},
        )
        _BEAT_HEALTH[dialect] = statement
    return statement


def record_heartbeat(db: Database, device: DeviceAuth, beat: Heartbeat, *, now: datetime) -> HeartbeatOutcome:
    """Two statements in one write transaction: the device's row (returning its chain head, the advertised version's
    previous value and whether it was published, and the newest published version) and the health upsert.

    Raises `DeviceGone` when the device was revoked (or removed) after its credential was checked: like ingest,
    the write itself refuses a revoked device, whatever a credential cache in front of it still believed."""
    health: dict[str, Any] = {
        "device_id": device.device_id,
        "ts": beat.ts.astimezone(UTC),
        "received_at": now,
        "user": beat.user,
        "agent_version": beat.agent_version,
        "policy_version": beat.policy_version,
        "queue_depth": beat.queue_depth,
        "oldest_unsent_age_s": beat.oldest_unsent_age_s,
        "collectors": dict(beat.collectors),
        "rss_bytes": beat.rss_bytes,
        "cpu_percent": beat.cpu_percent,
        "attention": list(beat.attention),
        "mode": beat.mode,
    }
    alerts: list[NewAlert] = []
    with db.write() as conn:
        row = conn.execute(
            _BEAT_DEVICE,
            {
                "beat_device_id": device.device_id,
                "beat_now": now,
                "beat_user": beat.user,
                "beat_agent_version": beat.agent_version,
                "beat_policy_version": beat.policy_version,
            },
        ).first()
        if row is None:
            raise DeviceGone(device.device_id)
        conn.execute(_beat_health_statement(db.dialect), health)
        newest = None if row.newest is None else int(row.newest)
        # Version 0 is the bundled default (no policy yet). Alert when the advertised version changes to one
        # never published, not on every beat while it stays.
        if beat.policy_version > 0 and beat.policy_version != row.before and not row.published:
            alerts.append(
                NewAlert(
                    kind=POLICY_UNKNOWN,
                    severity=Severity.high.value,
                    event_seq=None,
                    data={
                        "policy_version": beat.policy_version,
                        "newest_version": newest,
                        "reason": "the device runs a policy version this endpoint never published",
                    },
                )
            )
            insert_alerts(conn, alerts, device_id=device.device_id, team=device.team, now=now)
    return HeartbeatOutcome(
        last_seq=int(row.last_seq), last_mac=str(row.last_mac), policy_version=newest or 0, alerts=tuple(alerts)
    )


def list_devices(
    db: Database, *, now: datetime, offline_after: timedelta, team: str | None = None
) -> list[dict[str, Any]]:
    d, h = tables.devices, tables.device_health
    query = (
        select(
            d.c.device_id,
            d.c.team,
            d.c.hostname,
            d.c.os,
            d.c.user,
            d.c.agent_version,
            d.c.enrolled_at,
            d.c.last_seen,
            d.c.revoked_at,
            d.c.last_seq,
            d.c.missing,
            h.c.policy_version,
            h.c.queue_depth,
            h.c.oldest_unsent_age_s,
            h.c.collectors,
            h.c.rss_bytes,
            h.c.cpu_percent,
            h.c.attention,
            h.c.mode,
            h.c.received_at.label("last_heartbeat"),
        )
        .select_from(d.outerjoin(h, h.c.device_id == d.c.device_id))
        .order_by(d.c.team, d.c.hostname, d.c.device_id)
    )
    if team is not None:
        query = query.where(d.c.team == team)
    with db.read() as conn:
        rows = conn.execute(query).all()
    out: list[dict[str, Any]] = []
    for row in rows:
        last_seen = as_utc_or_none(row.last_seen)
        last_beat = as_utc_or_none(row.last_heartbeat)
        revoked = as_utc_or_none(row.revoked_at)
        out.append(
            {
                "device_id": row.device_id,
                "team": row.team,
                "hostname": row.hostname,
                "os": row.os,
                "user": row.user,
                "agent_version": row.agent_version,
                "enrolled_at": as_utc(row.enrolled_at).isoformat(),
                "last_seen": last_seen.isoformat() if last_seen else None,
                "online": last_seen is not None and revoked is None and now - last_seen <= offline_after,
                "revoked": revoked is not None,
                "policy_version": row.policy_version,
                "queue_depth": row.queue_depth,
                "oldest_unsent_age_s": row.oldest_unsent_age_s,
                "collectors": row.collectors or {},
                "rss_bytes": row.rss_bytes,
                "cpu_percent": row.cpu_percent,
                "attention": list(row.attention or []),
                # No heartbeat yet says nothing about a privileged service, so the device counts as unprotected.
                "mode": row.mode or "unprotected",
                "last_heartbeat": last_beat.isoformat() if last_beat else None,
                "last_seq": row.last_seq,
                "missing_events": row.missing,
            }
        )
    return out
