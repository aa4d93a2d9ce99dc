"""Policy change control: drafts, the two-person rule, signing and publishing, and who drafted and approved
each version.

Called from console request worker threads. Publishing goes through `policies.publish` (sign + store).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from central.auth import audit
from central.signing import PolicySigner
from central.store import policies, tables
from central.store.clock import as_utc, as_utc_or_none
from central.store.console_tables import policy_drafts
from central.store.engine import Database
from policy_client.schema import PolicyDocument


class TwoPersonRuleError(PermissionError):
    """The two-person rule is on and the approver drafted the change."""


class DraftStateError(ValueError):
    """The draft was already decided."""


@dataclass(frozen=True)
class Submitted:
    draft_id: int
    published_version: int | None
    """None while the draft waits for a second admin."""


def pretty(document: PolicyDocument | None) -> str:
    if document is None:
        return ""
    return json.dumps(document.model_dump(mode="json"), indent=2, sort_keys=True)


def current_document(db: Database) -> PolicyDocument | None:
    stored = policies.current_policy(db)
    return None if stored is None else PolicyDocument.model_validate_json(stored.payload)


def diff(db: Database, proposed: PolicyDocument) -> str:
    current = current_document(db)

    # issued_at and version always change; leave them out so the diff shows what matters.
    def body(doc: PolicyDocument | None) -> list[str]:
        if doc is None:
            return []
        data = doc.model_dump(mode="json")
        data.pop("issued_at", None)
        data.pop("version", None)
        return json.dumps(data, indent=2, sort_keys=True).splitlines()

    lines = difflib.unified_diff(body(current), body(proposed), "current", "proposed", lineterm="", n=2)
    return "\n".join(lines)


def submit(
    db: Database,
    signer: PolicySigner,
    document: PolicyDocument,
    *,
    actor: str,
    summary: str,
    two_person: bool,
    now: datetime,
    retention_days: int | None = None,
) -> Submitted:
    """Store a draft; without the two-person rule, publish it at once (the drafter approves)."""
    base = policies.latest_version(db)
    with db.write() as conn:
        draft_id = int(
            conn.execute(  # type: ignore[index]
                policy_drafts.insert().values(
                    payload=document.model_dump_json(),
                    summary=summary[:500] or "policy change",
                    drafted_by=actor,
                    drafted_at=now,
                    status="pending",
                    base_version=base,
                )
            ).inserted_primary_key[0]
        )
        audit.record(
            conn,
            actor=actor,
            action="policy.draft",
            target=f"draft:{draft_id}",
            now=now,
            after={"summary": summary[:500], "base_version": base},
        )
    if two_person:
        return Submitted(draft_id=draft_id, published_version=None)
    version = approve(db, signer, draft_id, actor=actor, two_person=False, now=now, retention_days=retention_days)
    return Submitted(draft_id=draft_id, published_version=version)


def approve(
    db: Database,
    signer: PolicySigner,
    draft_id: int,
    *,
    actor: str,
    two_person: bool,
    now: datetime,
    retention_days: int | None = None,
) -> int:
    """Sign and publish a pending draft; return the published version."""
    with db.read() as conn:
        row = conn.execute(select(policy_drafts).where(policy_drafts.c.id == draft_id)).first()
    if row is None:
        raise LookupError(f"no draft {draft_id}")
    if row.status != "pending":
        raise DraftStateError(f"draft {draft_id} is already {row.status}")
    if two_person and row.drafted_by == actor:
        raise TwoPersonRuleError("the two-person rule is on: a second admin must approve this change")
    document = PolicyDocument.model_validate_json(row.payload)
    controls = document.controls
    if retention_days is not None:
        reporting = controls.reporting.model_copy(update={"retention_days": retention_days})
        controls = controls.model_copy(update={"reporting": reporting})
    usb = controls.usb.model_copy(update={"exceptions": [e for e in controls.usb.exceptions if e.expires_at > now]})
    controls = controls.model_copy(update={"usb": usb})
    document = document.model_copy(update={"controls": controls, "issued_at": now})
    document = PolicyDocument.model_validate(document.model_dump())
    author = row.drafted_by if row.drafted_by == actor else f"{row.drafted_by}, approved by {actor}"
    published = policies.publish(db, signer, document, author=author[:128], now=now)
    with db.write() as conn:
        changed = conn.execute(
            update(policy_drafts)
            .where(policy_drafts.c.id == draft_id, policy_drafts.c.status == "pending")
            .values(status="published", approved_by=actor, decided_at=now, published_version=published.version)
        ).rowcount
        if not changed:
            raise DraftStateError(f"draft {draft_id} was decided meanwhile")
        audit.record(
            conn,
            actor=actor,
            action="policy.publish",
            target=f"policy:v{published.version}",
            now=now,
            before={"version": int(row.base_version)},
            after={"version": published.version, "drafted_by": row.drafted_by, "approved_by": actor},
        )
    return published.version


def reject(db: Database, draft_id: int, *, actor: str, now: datetime) -> None:
    with db.write() as conn:
        changed = conn.execute(
            update(policy_drafts)
            .where(policy_drafts.c.id == draft_id, policy_drafts.c.status == "pending")
            .values(status="rejected", approved_by=actor, decided_at=now)
        ).rowcount
        if not changed:
            raise DraftStateError(f"draft {draft_id} is not pending")
        audit.record(conn, actor=actor, action="policy.reject", target=f"draft:{draft_id}", now=now)


def drafts(db: Database, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    d = policy_drafts
    query = select(d).order_by(d.c.id.desc()).limit(limit)
    if status:
        query = query.where(d.c.status == status)
    with db.read() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "id": r.id,
            "summary": r.summary,
            "drafted_by": r.drafted_by,
            "drafted_at": as_utc(r.drafted_at),
            "status": r.status,
            "approved_by": r.approved_by,
            "decided_at": as_utc_or_none(r.decided_at),
            "published_version": r.published_version,
            "base_version": r.base_version,
            "payload": r.payload,
        }
        for r in rows
    ]


def history(db: Database, *, limit: int = 50) -> list[dict[str, Any]]:
    p, d = tables.policies, policy_drafts
    with db.read() as conn:
        rows = conn.execute(
            select(p.c.version, p.c.author, p.c.created_at, p.c.key_id, d.c.drafted_by, d.c.approved_by, d.c.summary)
            .select_from(p.outerjoin(d, d.c.published_version == p.c.version))
            .where(p.c.scope == policies.GLOBAL_SCOPE)
            .order_by(p.c.version.desc())
            .limit(limit)
        ).all()
    return [
        {
            "version": r.version,
            "published_at": as_utc(r.created_at),
            "drafted_by": r.drafted_by or r.author,
            "approved_by": r.approved_by or r.author,
            "summary": r.summary or "",
            "key_id": r.key_id,
        }
        for r in rows
    ]
