"""USB exception requests: `usb.exception_requested` events become requests; approval adds a time-boxed
exception for that device to the next signed policy (through the change-control path), where it stays until it
expires or is revoked (`revoke`, again a policy change).

`import_requests` runs on the alerting thread; decisions run on console request worker threads.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from central.signing import PolicySigner
from central.store import audit, policies, policy_changes, tables
from central.store.clock import as_utc, as_utc_or_none
from central.store.console_tables import exception_requests, policy_drafts
from central.store.engine import Database
from policy_client.schema import EventKind, PolicyDocument, UsbException

REORDER_WINDOW = 1000
MAX_MINUTES = 7 * 24 * 60
_HEX4 = re.compile(r"^[0-9a-fA-F]{4}$")


class RequestNotFound(LookupError):
    pass


class RequestStateError(ValueError):
    """The request is not in a state that allows this decision."""


def import_requests(db: Database) -> int:
    """Turn new `usb.exception_requested` events into pending requests; idempotent."""
    e, r = tables.events, exception_requests
    with db.read() as conn:
        top = int(conn.execute(select(func.coalesce(func.max(r.c.event_pk), 0))).scalar_one())
        rows = conn.execute(
            select(e.c.pk, e.c.device_id, e.c.seq, e.c.team, e.c.user, e.c.ts, e.c.data)
            .where(e.c.kind == EventKind.usb_exception_requested.value, e.c.pk > max(0, top - REORDER_WINDOW))
            .order_by(e.c.pk)
            .limit(500)
        ).all()
    if not rows:
        return 0
    make = sqlite_insert if db.is_sqlite else pg_insert
    added = 0
    with db.write() as conn:
        for row in rows:
            data: dict[str, Any] = row.data or {}
            minutes = data.get("minutes")
            values = {
                "event_pk": row.pk,
                "device_id": row.device_id,
                "seq": row.seq,
                "team": row.team,
                "user": row.user,
                "vendor_id": _str(data.get("vendor_id"), 8),
                "product_id": _str(data.get("product_id"), 8),
                "serial": _str(data.get("serial"), 128),
                "label": _str(data.get("label"), 256),
                "reason": (_str(data.get("reason"), 600) or "(no reason given)"),
                "minutes": minutes if isinstance(minutes, int) and 0 < minutes <= MAX_MINUTES else 60,
                "requested_at": row.ts,
                "status": "pending",
            }
            stmt = make(r).values(values).on_conflict_do_nothing(index_elements=["device_id", "seq"])
            # RETURNING, not rowcount: psycopg 3 reports -1 for INSERT ... ON CONFLICT DO NOTHING.
            added += len(conn.execute(stmt.returning(r.c.id)).all())
    return added


def _str(value: object, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


def list_requests(
    db: Database, *, teams: frozenset[str] | None, status: str | None = None, device_id: str | None = None
) -> list[dict[str, Any]]:
    """Newest first (200), only in `teams` (None: every team)."""
    r, d = exception_requests, tables.devices
    query = (
        select(r, d.c.hostname)
        .select_from(r.outerjoin(d, d.c.device_id == r.c.device_id))
        .order_by(r.c.id.desc())
        .limit(200)
    )
    if teams is not None:
        query = query.where(r.c.team.in_(sorted(teams)))
    if status:
        query = query.where(r.c.status == status)
    if device_id:
        query = query.where(r.c.device_id == device_id)
    with db.read() as conn:
        rows = conn.execute(query).all()
    return [
        dict(row._mapping)
        | {
            "requested_at": as_utc(row.requested_at),
            "decided_at": as_utc_or_none(row.decided_at),
            "expires_at": as_utc_or_none(row.expires_at),
        }
        for row in rows
    ]


def decide(
    db: Database,
    signer: PolicySigner,
    request_id: int,
    *,
    actor: str,
    teams: frozenset[str] | None,
    approve: bool,
    minutes: int | None,
    two_person: bool,
    now: datetime,
) -> policy_changes.Submitted | None:
    """Approve (time-boxed, through a policy change) or deny a pending request of one of `teams` (None: any).
    Whether `actor` may decide at all is the caller's business (the console's route dependency)."""
    r = exception_requests
    with db.read() as conn:
        row = conn.execute(select(r).where(r.c.id == request_id)).first()
    if row is None or (teams is not None and row.team not in teams):
        raise RequestNotFound(f"no exception request {request_id}")
    if row.status != "pending":
        raise RequestStateError(f"request {request_id} is already {row.status}")
    submitted: policy_changes.Submitted | None = None
    expires_at: datetime | None = None
    if approve:
        if not (row.vendor_id and row.product_id and _HEX4.match(row.vendor_id) and _HEX4.match(row.product_id)):
            raise ValueError("the request carries no USB vendor/product id, so no exception can be written")
        span = minutes if minutes is not None else int(row.minutes)
        if not 1 <= span <= MAX_MINUTES:
            raise ValueError(f"minutes must be between 1 and {MAX_MINUTES}")
        expires_at = now + timedelta(minutes=span)
        stored = policies.current_policy(db)
        current = PolicyDocument(version=0) if stored is None else PolicyDocument.model_validate_json(stored.payload)
        usb = current.controls.usb
        exception = UsbException(
            vendor_id=row.vendor_id,
            product_id=row.product_id,
            serial=row.serial,
            expires_at=expires_at,
            device_id=row.device_id,
            reviewed_at=now,
        )
        new_usb = usb.model_copy(update={"exceptions": [*usb.exceptions, exception]})
        document = current.model_copy(
            update={"controls": current.controls.model_copy(update={"usb": new_usb}), "version": 0}
        )
        submitted = policy_changes.submit(
            db,
            signer,
            PolicyDocument.model_validate(document.model_dump()),
            actor=actor,
            summary=(
                f"USB exception {row.vendor_id}:{row.product_id} for {_desk(db, row.device_id)} "
                f"until {expires_at:%Y-%m-%d %H:%M}Z (request #{request_id})"
            ),
            two_person=two_person,
            now=now,
            base_version=None if stored is None else stored.version,
        )
    with db.write() as conn:
        conn.execute(
            update(r)
            .where(r.c.id == request_id)
            .values(
                status="approved" if approve else "denied",
                decided_by=actor,
                decided_at=now,
                expires_at=expires_at,
                draft_id=None if submitted is None else submitted.draft_id,
            )
        )
        audit.record(
            conn,
            actor=actor,
            action="exception.approve" if approve else "exception.deny",
            target=f"exception-request:{request_id}",
            team=row.team,
            before={"status": "pending"},
            after={
                "status": "approved" if approve else "denied",
                "expires_at": expires_at.isoformat() if expires_at else None,
                "policy_version": None if submitted is None else submitted.published_version,
            },
            now=now,
        )
    return submitted


def revoke(
    db: Database,
    signer: PolicySigner,
    request_id: int,
    *,
    actor: str,
    teams: frozenset[str] | None,
    two_person: bool,
    now: datetime,
) -> policy_changes.Submitted:
    """Withdraw an approved exception before it expires: the request is marked revoked and a policy change removes
    its exception (a draft under the two-person rule; rejecting that draft restores the request)."""
    r = exception_requests
    with db.read() as conn:
        row = conn.execute(select(r).where(r.c.id == request_id)).first()
    if row is None or (teams is not None and row.team not in teams):
        raise RequestNotFound(f"no exception request {request_id}")
    if row.status != "approved" or row.expires_at is None or as_utc(row.expires_at) <= now:
        raise RequestStateError(f"request {request_id} is {row.status}, not an exception in force")
    with db.write() as conn:
        changed = conn.execute(
            update(r).where(r.c.id == request_id, r.c.status == "approved").values(status="revoked")
        ).rowcount
        if changed != 1:
            raise RequestStateError(f"request {request_id} was decided meanwhile")
    if row.draft_id is not None and _pending(db, int(row.draft_id)):
        # Not published yet: withdrawing the approval's own draft is the whole revocation.
        policy_changes.reject(db, int(row.draft_id), actor=actor, now=now, keep_requests=True)
        with db.write() as conn:
            _audit_revoke(conn, row, actor, now=now, after={"status": "revoked", "withdrawn_draft": row.draft_id})
        return policy_changes.Submitted(draft_id=int(row.draft_id), published_version=None, withdrawn=True)
    stored = policies.current_policy(db)
    current = PolicyDocument(version=0) if stored is None else PolicyDocument.model_validate_json(stored.payload)
    usb = current.controls.usb
    kept = [e for e in usb.exceptions if not _is_from(e, row)]
    document = current.model_copy(
        update={"controls": current.controls.model_copy(update={"usb": usb.model_copy(update={"exceptions": kept})})}
    )
    try:
        submitted = policy_changes.submit(
            db,
            signer,
            PolicyDocument.model_validate(document.model_dump()),
            actor=actor,
            summary=f"revoke USB exception {row.vendor_id}:{row.product_id} on {_desk(db, row.device_id)} "
            f"(request #{request_id})",
            two_person=two_person,
            now=now,
            base_version=None if stored is None else stored.version,
        )
    except BaseException:
        with db.write() as conn:
            conn.execute(update(r).where(r.c.id == request_id, r.c.status == "revoked").values(status="approved"))
        raise
    with db.write() as conn:
        conn.execute(update(r).where(r.c.id == request_id).values(draft_id=submitted.draft_id))
        after = {"status": "revoked", "policy_version": submitted.published_version, "draft": submitted.draft_id}
        _audit_revoke(conn, row, actor, now=now, after=after)
    return submitted


def _pending(db: Database, draft_id: int) -> bool:
    with db.read() as conn:
        status = conn.execute(select(policy_drafts.c.status).where(policy_drafts.c.id == draft_id)).scalar()
    return status == "pending"


def _audit_revoke(conn: Connection, row: Any, actor: str, *, now: datetime, after: dict[str, Any]) -> None:
    audit.record(
        conn,
        actor=actor,
        action="exception.revoke",
        target=f"exception-request:{row.id}",
        team=row.team,
        before={"status": "approved", "expires_at": as_utc(row.expires_at).isoformat()},
        after=after,
        now=now,
    )


def _is_from(exception: UsbException, row: Any) -> bool:
    return (exception.device_id, exception.vendor_id.lower(), exception.product_id.lower(), exception.serial) == (
        row.device_id,
        str(row.vendor_id).lower(),
        str(row.product_id).lower(),
        row.serial,
    )


def _desk(db: Database, device_id: str) -> str:
    """The desk as a person knows it: its hostname, with the device id."""
    name = policy_changes.hostnames(db, {device_id}).get(device_id)
    return f"{name} ({device_id})" if name else device_id
