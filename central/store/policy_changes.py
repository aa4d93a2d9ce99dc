"""Policy change control: drafts, the two-person rule, merging a draft onto the current version, signing and
publishing, the field-by-field changes an approver sees, and who drafted and approved each version.

Called from console request worker threads and CLI commands. Publishing goes through `policies.publish`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, select, update

from central.signing import PolicySigner
from central.store import audit, policies, tables
from central.store.clock import as_utc, as_utc_or_none
from central.store.console_tables import exception_requests, policy_drafts
from central.store.engine import Database
from policy_client.schema import PolicyDocument, UsbException

EXCEPTIONS_PATH = ("controls", "usb", "exceptions")
_UNTRACKED = ("version", "issued_at")
"""Set by the endpoint on every publish; never part of what an author changed."""
_PUBLISH_TRIES = 5


class TwoPersonRuleError(PermissionError):
    """The two-person rule is on and the approver drafted the change."""


class DraftStateError(ValueError):
    """The draft was already decided."""


@dataclass(frozen=True)
class Submitted:
    draft_id: int
    published_version: int | None
    """None while the draft waits for a second admin."""
    withdrawn: bool = False
    """The draft was withdrawn instead of published (an exception revoked before its approval was published)."""


@dataclass(frozen=True)
class FieldChange:
    """One field of the policy that a publish changes, as an approver reads it."""

    path: str
    before: str | None
    """None when the field (or list item) is added."""
    after: str | None
    """None when the field (or list item) is removed."""

    @property
    def kind(self) -> Literal["added", "removed", "changed"]:
        return "added" if self.before is None else "removed" if self.after is None else "changed"


@dataclass(frozen=True)
class Outcome:
    """What publishing a document would do now: the merged document and how it differs from the current one."""

    document: PolicyDocument
    base_version: int
    changes: list[FieldChange]
    carried: list[UsbException]
    """Approved, unexpired exceptions the author's document left out that the publish keeps."""


def pretty(document: PolicyDocument | None) -> str:
    if document is None:
        return ""
    return json.dumps(document.model_dump(mode="json"), indent=2, sort_keys=True)


def current_document(db: Database) -> PolicyDocument | None:
    stored = policies.current_policy(db)
    return None if stored is None else PolicyDocument.model_validate_json(stored.payload)


def document_at(db: Database, version: int) -> PolicyDocument | None:
    stored = policies.policy_at(db, version)
    return None if stored is None else PolicyDocument.model_validate_json(stored.payload)


def _body(doc: PolicyDocument | None) -> dict[str, Any]:
    if doc is None:
        return {}
    data = doc.model_dump(mode="json")
    for key in _UNTRACKED:
        data.pop(key, None)
    return data


def diff(db: Database, proposed: PolicyDocument) -> str:
    """A unified diff of the JSON (without version and issued_at) from the current version to `proposed`."""

    def lines(doc: PolicyDocument | None) -> list[str]:
        return json.dumps(_body(doc), indent=2, sort_keys=True).splitlines() if doc is not None else []

    out = difflib.unified_diff(lines(current_document(db)), lines(proposed), "current", "proposed", lineterm="", n=2)
    return "\n".join(out)


# -- merging --------------------------------------------------------------------------------------------------

_MISSING: Any = object()


def _merge(base: Any, mine: Any, theirs: Any) -> Any:
    """Three-way merge of JSON values: what `mine` changed from `base` applied onto `theirs`; lists are values."""
    if isinstance(base, dict) and isinstance(mine, dict) and isinstance(theirs, dict):
        out: dict[str, Any] = {}
        for key in [*theirs, *(k for k in mine if k not in theirs)]:
            b, m, t = base.get(key, _MISSING), mine.get(key, _MISSING), theirs.get(key, _MISSING)
            value = _merge(b, m, t) if all(isinstance(v, dict) for v in (b, m, t)) else (t if m == b else m)
            if value is not _MISSING:
                out[key] = value
        return out
    return theirs if mine == base else mine


def _exception_key(item: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in item.items() if k != "reviewed_at"}, sort_keys=True)


def _merge_exceptions(
    base: list[dict[str, Any]],
    mine: list[dict[str, Any]],
    theirs: list[dict[str, Any]],
    *,
    carried: Callable[[dict[str, Any]], bool],
) -> list[dict[str, Any]]:
    """The current exceptions, plus those the author added, less those the author removed unless `carried`.

    An approved exception request is revoked on its own (see `exception_requests.revoke`), so a document that
    leaves one out (a policy file written before it was approved) does not drop it.
    """
    base_keys = {_exception_key(e) for e in base}
    removed = base_keys - {_exception_key(e) for e in mine}
    out: dict[str, dict[str, Any]] = {}
    for item in theirs:
        key = _exception_key(item)
        if key not in out and (key not in removed or carried(item)):
            out[key] = item
    for item in mine:
        key = _exception_key(item)
        if key not in base_keys and key not in out:
            out[key] = item
    return list(out.values())


def _approved_requests(conn: Connection, now: datetime) -> set[tuple[str, str, str, str | None]]:
    """(device, vendor, product, serial) of exception requests approved and neither expired nor revoked."""
    r = exception_requests
    rows = conn.execute(
        select(r.c.device_id, r.c.vendor_id, r.c.product_id, r.c.serial, r.c.expires_at).where(
            r.c.status == "approved", r.c.expires_at.isnot(None)
        )
    ).all()
    return {
        (str(row.device_id), str(row.vendor_id).lower(), str(row.product_id).lower(), row.serial)
        for row in rows
        if as_utc(row.expires_at) > now
    }


def merge(
    base: PolicyDocument | None,
    mine: PolicyDocument,
    theirs: PolicyDocument | None,
    *,
    now: datetime,
    approved: AbstractSet[tuple[str, str, str, str | None]] = frozenset(),
) -> tuple[PolicyDocument, list[UsbException]]:
    """Apply what the author changed from `base` (the version they started from) to `mine` onto `theirs` (the
    current version): fields the author did not touch keep their current value. Approved exception requests
    stay until they expire or are revoked; expired exceptions leave. Returns the document and the exceptions
    kept although the author's document lacks them."""
    if theirs is None:
        theirs = PolicyDocument(version=0)
    if base is None:
        base = theirs
    b, m, t = (d.model_dump(mode="json") for d in (base, mine, theirs))
    merged: dict[str, Any] = _merge(b, m, t)

    def carried(item: dict[str, Any]) -> bool:
        key = (item.get("device_id"), str(item["vendor_id"]).lower(), str(item["product_id"]).lower(), item["serial"])
        return key in approved

    exceptions = _merge_exceptions(_get(b), _get(m), _get(t), carried=carried)
    live = [e for e in exceptions if as_utc(datetime.fromisoformat(e["expires_at"])) > now]
    merged["controls"]["usb"]["exceptions"] = live
    merged["version"] = mine.version
    merged["issued_at"] = now.isoformat()
    mine_keys = {_exception_key(e) for e in _get(m)}
    kept = [UsbException.model_validate(e) for e in live if _exception_key(e) not in mine_keys]
    return PolicyDocument.model_validate(merged), kept


def _get(data: dict[str, Any]) -> list[dict[str, Any]]:
    value: Any = data
    for key in EXCEPTIONS_PATH:
        value = value.get(key, {}) if isinstance(value, dict) else {}
    return list(value) if isinstance(value, list) else []


# -- what an approver reads ---------------------------------------------------------------------------------------


def _show(value: Any, names: Mapping[str, str]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "vendor_id" in value and "product_id" in value:
        parts = [f"{value['vendor_id']}:{value['product_id']}"]
        if value.get("serial"):
            parts.append(f"serial {value['serial']}")
        if "device_id" in value:
            device = value["device_id"]
            shown = f"{names[device]} ({device})" if device in names else device
            parts.append(f"on {shown or 'every device'}")
        if value.get("expires_at"):
            parts.append(f"until {value['expires_at']}")
        return " ".join(parts)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def field_changes(
    before: PolicyDocument | None, after: PolicyDocument, *, names: Mapping[str, str] | None = None
) -> list[FieldChange]:
    """Every field that differs, by dotted path; list items added or removed one by one (order changes whole).
    `names` shows device ids (USB exceptions) with their hostnames."""
    changes: list[FieldChange] = []
    known: Mapping[str, str] = names or {}

    def show(value: Any) -> str:
        return _show(value, known)

    def walk(path: str, old: Any, new: Any) -> None:
        if old == new:
            return
        if isinstance(old, dict) and isinstance(new, dict):
            for key in [*old, *(k for k in new if k not in old)]:
                walk(f"{path}.{key}" if path else key, old.get(key, _MISSING), new.get(key, _MISSING))
            return
        if old is _MISSING or new is _MISSING:
            changes.append(
                FieldChange(path, None if old is _MISSING else show(old), None if new is _MISSING else show(new))
            )
            return
        if isinstance(old, list) and isinstance(new, list):
            gone = [x for x in old if x not in new]
            added = [x for x in new if x not in old]
            if gone or added:
                changes.extend(FieldChange(path, show(x), None) for x in gone)
                changes.extend(FieldChange(path, None, show(x)) for x in added)
                return
        changes.append(FieldChange(path, show(old), show(new)))

    walk("", _body(before), _body(after))
    return changes


def outcome(db: Database, document: PolicyDocument, *, now: datetime, base_version: int | None = None) -> Outcome:
    """What publishing `document` (drafted on `base_version`, default: the current one) would publish now."""
    with db.read() as conn:
        approved = _approved_requests(conn, now)
    current_version = policies.latest_version(db)
    theirs = document_at(db, current_version) if current_version else None
    base = theirs if base_version is None or base_version == current_version else document_at(db, base_version)
    merged, kept = merge(base, document, theirs, now=now, approved=approved)
    devices = {e.device_id for d in (theirs, merged) if d is not None for e in d.controls.usb.exceptions if e.device_id}
    changes = field_changes(theirs, merged, names=hostnames(db, devices))
    return Outcome(document=merged, base_version=current_version, changes=changes, carried=kept)


def hostnames(db: Database, device_ids: AbstractSet[str]) -> dict[str, str]:
    if not device_ids:
        return {}
    d = tables.devices
    with db.read() as conn:
        rows = conn.execute(select(d.c.device_id, d.c.hostname).where(d.c.device_id.in_(sorted(device_ids)))).all()
    return {str(r.device_id): str(r.hostname) for r in rows if r.hostname}


# -- drafts ------------------------------------------------------------------------------------------------------


def submit(
    db: Database,
    signer: PolicySigner,
    document: PolicyDocument,
    *,
    actor: str,
    summary: str,
    two_person: bool,
    now: datetime,
    via: str = "console",
    base_version: int | None = None,
) -> Submitted:
    """Store a draft of `document`, written from `base_version` (default: the current version); without the
    two-person rule, publish it at once (the drafter approves). Only what the draft changes from its base is
    published over whatever is current then. Audited as `policy.draft` (and `policy.publish`) with `via`."""
    latest = policies.latest_version(db)
    base = latest if base_version is None or not 0 < base_version <= latest else base_version
    with db.write() as conn:
        draft_id = int(
            conn.execute(  # type: ignore[index]
                policy_drafts.insert().values(
                    payload=document.model_dump_json(),
                    summary=summary[:500] or "policy change",
                    drafted_by=actor[:128],
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
            after={"summary": summary[:500], "base_version": base, "via": via, "two_person_rule": two_person},
        )
    if two_person:
        return Submitted(draft_id=draft_id, published_version=None)
    version = approve(db, signer, draft_id, actor=actor, two_person=False, now=now)
    return Submitted(draft_id=draft_id, published_version=version)


def draft_document(row: Any) -> PolicyDocument:
    return PolicyDocument.model_validate_json(row.payload)


def draft_outcome(db: Database, draft: dict[str, Any], *, now: datetime) -> Outcome:
    """What approving a pending draft (a row of `drafts`) would publish now."""
    document = PolicyDocument.model_validate_json(draft["payload"])
    return outcome(db, document, now=now, base_version=int(draft["base_version"]))


def approve(
    db: Database,
    signer: PolicySigner,
    draft_id: int,
    *,
    actor: str,
    two_person: bool,
    now: datetime,
) -> int:
    """Merge a pending draft onto the current version, sign and publish it; return the published version."""
    d = policy_drafts
    with db.read() as conn:
        row = conn.execute(select(d).where(d.c.id == draft_id)).first()
    if row is None:
        raise LookupError(f"no draft {draft_id}")
    if row.status != "pending":
        raise DraftStateError(f"draft {draft_id} is already {row.status}")
    if two_person and row.drafted_by == actor:
        raise TwoPersonRuleError("the two-person rule is on: a second admin must approve this change")
    # Claim the draft first, so two admins approving at once publish it once.
    with db.write() as conn:
        claimed = conn.execute(
            update(d).where(d.c.id == draft_id, d.c.status == "pending").values(status="publishing")
        ).rowcount
    if claimed != 1:
        raise DraftStateError(f"draft {draft_id} was decided meanwhile")
    author = row.drafted_by if row.drafted_by == actor else f"{row.drafted_by}, approved by {actor}"
    try:
        published, result = _publish_merged(db, signer, draft_document(row), int(row.base_version), author, now)
    except BaseException:
        with db.write() as conn:
            conn.execute(update(d).where(d.c.id == draft_id, d.c.status == "publishing").values(status="pending"))
        raise
    with db.write() as conn:
        conn.execute(
            update(d)
            .where(d.c.id == draft_id)
            .values(status="published", approved_by=actor, decided_at=now, published_version=published.version)
        )
        audit.record(
            conn,
            actor=actor,
            action="policy.publish",
            target=f"policy:v{published.version}",
            now=now,
            before={"version": result.base_version},
            after={
                "version": published.version,
                "drafted_by": row.drafted_by,
                "approved_by": actor,
                "draft": draft_id,
                "changes": [[c.path, c.before, c.after] for c in result.changes][:200],
            },
        )
    return published.version


def _publish_merged(
    db: Database, signer: PolicySigner, document: PolicyDocument, base_version: int, author: str, now: datetime
) -> tuple[policies.Published, Outcome]:
    for _ in range(_PUBLISH_TRIES):
        result = outcome(db, document, now=now, base_version=base_version)
        try:
            published = policies.publish(
                db, signer, result.document, author=author[:128], now=now, expect_version=result.base_version
            )
        except policies.PolicyMovedError:
            continue  # another version landed between merging and signing: merge onto it instead
        return published, result
    raise policies.PolicyMovedError("the policy kept changing while this draft was being published; try again")


def reject(db: Database, draft_id: int, *, actor: str, now: datetime, keep_requests: bool = False) -> None:
    """Reject a pending draft. An exception request it would have granted is marked rejected; one it would have
    revoked is in force again. `keep_requests` leaves the requests alone (the caller decides them)."""
    with db.write() as conn:
        changed = conn.execute(
            update(policy_drafts)
            .where(policy_drafts.c.id == draft_id, policy_drafts.c.status == "pending")
            .values(status="rejected", approved_by=actor, decided_at=now)
        ).rowcount
        if not changed:
            raise DraftStateError(f"draft {draft_id} is not pending")
        r = exception_requests
        if not keep_requests:
            conn.execute(
                update(r)
                .where(r.c.draft_id == draft_id, r.c.status == "approved")
                .values(status="rejected", decided_by=actor, decided_at=now)
            )
            conn.execute(update(r).where(r.c.draft_id == draft_id, r.c.status == "revoked").values(status="approved"))
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
