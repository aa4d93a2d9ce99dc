"""Signed policy versions: publishing (validate, number, sign, store) and serving the current one.

Called from CLI commands, app start-up and request worker threads.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import func, insert, select

from central.signing import PolicySigner
from central.store import tables
from central.store.engine import Database
from policy_client.schema import PolicyDocument, PolicyEnvelope

log = logging.getLogger(__name__)

GLOBAL_SCOPE = "global"


class InvalidPolicyError(ValueError):
    """The policy document does not validate; the message lists every problem."""


class PolicyMovedError(RuntimeError):
    """Another version was published since the caller read the current one (see `publish(expect_version=...)`)."""


@dataclass(frozen=True)
class StoredPolicy:
    version: int
    payload: bytes
    signature: str
    key_id: str

    @property
    def envelope(self) -> PolicyEnvelope:
        return PolicyEnvelope(
            key_id=self.key_id, payload=base64.b64encode(self.payload).decode("ascii"), signature=self.signature
        )

    @property
    def etag(self) -> str:
        return f'"{self.version}-{self.key_id}"'


@dataclass(frozen=True)
class Published:
    version: int
    requested_version: int
    """The version the document carried; differs from `version` when it was not newer than the current one."""


def parse_policy(document_bytes: bytes) -> PolicyDocument:
    """Validate an admin's policy document; one without `version` is numbered on publishing."""
    try:
        raw = json.loads(document_bytes)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidPolicyError(f"invalid policy document: not valid JSON ({exc})") from None
    if isinstance(raw, dict):
        raw.setdefault("version", 0)
    try:
        return PolicyDocument.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(document)'}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidPolicyError(f"invalid policy document ({exc.error_count()} problem(s)): {problems}") from None


def latest_version(db: Database, *, scope: str = GLOBAL_SCOPE) -> int:
    p = tables.policies
    with db.read(single_statement=True) as conn:
        return int(conn.execute(select(func.coalesce(func.max(p.c.version), 0)).where(p.c.scope == scope)).scalar_one())


def publish(
    db: Database,
    signer: PolicySigner,
    document: PolicyDocument,
    *,
    author: str,
    now: datetime,
    scope: str = GLOBAL_SCOPE,
    expect_version: int | None = None,
) -> Published:
    """Sign and store `document` as the newest version of `scope`.

    The version is the document's own when it is newer than the current one, else current + 1. With
    `expect_version`, raise `PolicyMovedError` (and store nothing) unless that is still the current version, so a
    document merged onto one version is never published over a newer one.
    """
    published = _publish(
        db, signer, document, author=author, now=now, scope=scope, only_if_none=False, expect_version=expect_version
    )
    if published is None:
        raise RuntimeError("policy was not published")
    return published


def publish_first(
    db: Database, signer: PolicySigner, document: PolicyDocument, *, author: str, now: datetime
) -> Published | None:
    """Publish `document` only when the global scope has no policy yet (None otherwise).

    Checked inside the publishing transaction, so several processes starting at once publish one version 1.
    """
    return _publish(db, signer, document, author=author, now=now, scope=GLOBAL_SCOPE, only_if_none=True)


def _publish(
    db: Database,
    signer: PolicySigner,
    document: PolicyDocument,
    *,
    author: str,
    now: datetime,
    scope: str,
    only_if_none: bool,
    expect_version: int | None = None,
) -> Published | None:
    p = tables.policies
    with db.write() as conn:
        current = int(
            conn.execute(select(func.coalesce(func.max(p.c.version), 0)).where(p.c.scope == scope)).scalar_one()
        )
        if only_if_none and current > 0:
            return None
        if expect_version is not None and current != expect_version:
            raise PolicyMovedError(f"version {current} was published after version {expect_version}")
        version = document.version if document.version > current else current + 1
        signed = PolicyDocument.model_validate(document.model_dump() | {"version": version})
        payload = signed.model_dump_json().encode("utf-8")
        conn.execute(
            insert(p).values(
                scope=scope,
                version=version,
                payload=payload,
                signature=signer.sign(payload),
                key_id=signer.key_id,
                author=author,
                created_at=now,
            )
        )
        known = conn.execute(
            select(tables.signing_keys.c.key_id).where(tables.signing_keys.c.key_id == signer.key_id)
        ).first()
        if known is None:
            conn.execute(
                insert(tables.signing_keys).values(
                    key_id=signer.key_id, public_key=signer.public_key_b64, created_at=now
                )
            )
    if version != document.version:
        log.warning("policy document said version %s; published as version %s", document.version, version)
    return Published(version=version, requested_version=document.version)


def current_policy(db: Database, *, scope: str = GLOBAL_SCOPE) -> StoredPolicy | None:
    return policy_at(db, None, scope=scope)


def policy_at(db: Database, version: int | None, *, scope: str = GLOBAL_SCOPE) -> StoredPolicy | None:
    """One stored version (None: the newest), or None when there is no such version."""
    p = tables.policies
    query = select(p.c.version, p.c.payload, p.c.signature, p.c.key_id).where(p.c.scope == scope)
    query = query.order_by(p.c.version.desc()) if version is None else query.where(p.c.version == version)
    with db.read(single_statement=True) as conn:
        row = conn.execute(query.limit(1)).first()
    if row is None:
        return None
    return StoredPolicy(
        version=int(row.version), payload=bytes(row.payload), signature=row.signature, key_id=row.key_id
    )
