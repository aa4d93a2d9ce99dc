"""Quarantined downloads per device (from its `download.quarantined` events) and admins' decisions about them:
a decision is a command signed for the device (policy_client/device_commands.py), audited when issued, served by
`GET /v1/commands` until the device reports the outcome (`download.released` / `download.deleted`), then marked
done or failed, and audited again.

`issue` runs on console request worker threads; `commands_for` on agent API worker threads; `import_outcomes` on
the alerting thread (and before the console shows a device).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, insert, select, update

from central.signing import PolicySigner
from central.store import audit, tables
from central.store.admin_changes import QUARANTINE_RELEASE, admin_changes
from central.store.clock import as_utc, as_utc_or_none
from central.store.console_tables import quarantine_commands
from central.store.engine import Database
from policy_client.device_commands import (
    MAX_COMMANDS,
    QUARANTINE_ID_RE,
    QuarantineAction,
    QuarantineCommand,
    SignedCommand,
    sign_command,
)
from policy_client.schema import EventKind

COMMAND_TTL: Final = timedelta(days=7)
"""How long a decision waits for its device (switched off, offline) before it expires unapplied."""
OUTCOME_KINDS: Final = (EventKind.download_released.value, EventKind.download_deleted.value)
CLOCK_SLACK: Final = timedelta(days=1)
LIST_LIMIT: Final = 200


class QuarantineNotFound(LookupError):
    """No such quarantined file on that device (or the device is not one the caller may see)."""


class DecisionRefused(ValueError):
    """The file already has a decision waiting or carried out."""


def _quarantined_events(device_id: str) -> Any:
    """The device's `download.quarantined` events that did quarantine a file: seq, time, user, data."""
    e = tables.events
    return select(e.c.seq, e.c.ts, e.c.user, e.c.data).where(
        e.c.device_id == device_id,
        e.c.kind == EventKind.download_quarantined.value,
        e.c.action == "quarantined",
    )


def _findings(data: dict[str, Any]) -> list[dict[str, Any]]:
    """An event's findings as type (capped) and count, skipping malformed entries."""
    listed = data.get("findings")
    return [
        {"type": str(f.get("type", "?"))[:32], "count": f.get("count", 1)}
        for f in (listed if isinstance(listed, list) else [])
        if isinstance(f, dict)
    ]


def quarantined_files(db: Database, device_id: str) -> list[dict[str, Any]]:
    """The device's quarantined downloads, newest first: masked name, size, findings, when, user, and the latest
    decision about each (None, or its action, status and outcome), and a release held for a second admin (`held`:
    the change id and who asked, or None)."""
    e, c, a = tables.events, quarantine_commands, admin_changes
    with db.read() as conn:
        rows = conn.execute(_quarantined_events(device_id).order_by(e.c.seq.desc()).limit(LIST_LIMIT)).all()
        decisions: dict[str, Any] = {}
        for d in conn.execute(select(c).where(c.c.device_id == device_id).order_by(c.c.issued_at)).all():
            decisions[str(d.quarantine_id)] = d
        held = {
            str(r.target).partition(":")[2]: {"change_id": int(r.id), "requested_by": r.requested_by}
            for r in conn.execute(
                select(a.c.id, a.c.target, a.c.requested_by).where(
                    a.c.kind == QUARANTINE_RELEASE,
                    a.c.status == "pending",
                    a.c.target.startswith(f"{device_id}:", autoescape=True),
                )
            )
        }
    out = []
    for row in rows:
        data: dict[str, Any] = row.data or {}
        qid = data.get("quarantine_id")
        if not isinstance(qid, str) or not QUARANTINE_ID_RE.match(qid):
            continue
        decision = decisions.get(qid)
        out.append(
            {
                "quarantine_id": qid,
                "seq": int(row.seq),
                "ts": as_utc(row.ts),
                "user": row.user,
                "name": str(data.get("name", ""))[:256],
                "size_bytes": data.get("size_bytes") if isinstance(data.get("size_bytes"), int) else None,
                "findings": _findings(data),
                "decision": None if decision is None else _decision(decision),
                "held": held.get(qid),
            }
        )
    return out


def _decision(row: Any) -> dict[str, Any]:
    return {
        "command_id": row.command_id,
        "action": row.action,
        "status": row.status,
        "issued_by": row.issued_by,
        "issued_at": as_utc(row.issued_at),
        "expires_at": as_utc(row.expires_at),
        "outcome_at": as_utc_or_none(row.outcome_at),
        "outcome_error": row.outcome_error,
    }


@dataclass(frozen=True)
class DecidableFile:
    """A quarantined file an admin may decide about, as its `download.quarantined` event described it."""

    team: str
    hostname: str
    name: str
    findings: tuple[str, ...]
    """"count x type" per finding."""


def decidable(conn: Connection, device_id: str, quarantine_id: str, *, teams: frozenset[str] | None) -> DecidableFile:
    """The file when `quarantine_id` is one of the device's quarantined files, visible to `teams`, with no decision
    waiting or carried out. Locks the device's row (PostgreSQL) so two decisions about its files, from any worker
    or host, are taken one after the other. Raises QuarantineNotFound or DecisionRefused."""
    if not QUARANTINE_ID_RE.match(quarantine_id):
        raise QuarantineNotFound(quarantine_id)
    d, c = tables.devices, quarantine_commands
    device = conn.execute(select(d.c.team, d.c.hostname).where(d.c.device_id == device_id).with_for_update()).first()
    if device is None or (teams is not None and device.team not in teams):
        raise QuarantineNotFound(device_id)
    data = next(
        (
            r.data
            for r in conn.execute(_quarantined_events(device_id))
            if isinstance(r.data, dict) and r.data.get("quarantine_id") == quarantine_id
        ),
        None,
    )
    if data is None:
        raise QuarantineNotFound(quarantine_id)
    earlier = conn.execute(
        select(c.c.action, c.c.status).where(
            c.c.device_id == device_id, c.c.quarantine_id == quarantine_id, c.c.status.in_(("pending", "done"))
        )
    ).first()
    if earlier is not None:
        verb = "released" if earlier.action == "release" else "deleted"
        raise DecisionRefused(
            f"this file is already being {verb}" if earlier.status == "pending" else f"this file was {verb}"
        )
    return DecidableFile(
        team=str(device.team),
        hostname=str(device.hostname or device_id),
        name=str(data.get("name", ""))[:256],
        findings=tuple(f"{f['count']} x {f['type']}" for f in _findings(data)),
    )


def issue(
    db: Database,
    signer: PolicySigner,
    device_id: str,
    quarantine_id: str,
    *,
    action: QuarantineAction,
    actor: str,
    teams: frozenset[str] | None,
    now: datetime,
) -> dict[str, Any]:
    """Sign and register an admin's decision about one quarantined file of `device_id`, with its audit entry, in
    one transaction. Raises QuarantineNotFound (no such file there, or not one of `teams`) or DecisionRefused."""
    with db.write() as conn:
        return issue_in(conn, signer, device_id, quarantine_id, action=action, actor=actor, teams=teams, now=now)


def issue_in(
    conn: Connection,
    signer: PolicySigner,
    device_id: str,
    quarantine_id: str,
    *,
    action: QuarantineAction,
    actor: str,
    teams: frozenset[str] | None,
    now: datetime,
) -> dict[str, Any]:
    """`issue` inside the caller's write transaction."""
    c = quarantine_commands
    team = decidable(conn, device_id, quarantine_id, teams=teams).team
    superseded = (
        conn.execute(
            update(admin_changes)
            .where(
                admin_changes.c.kind == QUARANTINE_RELEASE,
                admin_changes.c.target == f"{device_id}:{quarantine_id}",
                admin_changes.c.status == "pending",
            )
            .values(status="superseded", decided_by=actor[:128], decided_at=now)
            .returning(admin_changes.c.id)
        )
        .scalars()
        .all()
    )
    command = QuarantineCommand(
        command_id=secrets.token_hex(8),
        device_id=device_id,
        action=action,
        quarantine_id=quarantine_id,
        issued_by=actor[:128],
        issued_at=now,
        expires_at=now + COMMAND_TTL,
    )
    signed = sign_command(signer.private_key, command)
    conn.execute(
        insert(c).values(
            command_id=command.command_id,
            device_id=device_id,
            team=team,
            quarantine_id=quarantine_id,
            action=action,
            payload=signed.payload,
            signature=signed.signature,
            issued_by=actor[:128],
            issued_at=now,
            expires_at=command.expires_at,
            status="pending",
        )
    )
    audit.record(
        conn,
        actor=actor,
        action=f"quarantine.{action}",
        target=f"{device_id}:{quarantine_id}",
        team=team,
        after={"command_id": command.command_id, "expires_at": command.expires_at.isoformat()}
        | ({"superseded_changes": [int(i) for i in superseded]} if superseded else {}),
        now=now,
    )
    return {"command_id": command.command_id, "team": team}


def commands_for(db: Database, device_id: str, *, now: datetime) -> list[SignedCommand]:
    """What the device should carry out now: its pending, unexpired commands, oldest first."""
    c = quarantine_commands
    with db.read() as conn:
        rows = conn.execute(
            select(c.c.payload, c.c.signature)
            .where(c.c.device_id == device_id, c.c.status == "pending", c.c.expires_at > now)
            .order_by(c.c.issued_at)
            .limit(MAX_COMMANDS)
        ).all()
    return [SignedCommand(payload=r.payload, signature=r.signature) for r in rows]


def import_outcomes(db: Database, *, now: datetime) -> int:
    """Mark pending commands done or failed from the outcome events their devices reported (and expired ones
    expired), each with an audit entry; how many changed. Idempotent."""
    c, e = quarantine_commands, tables.events
    with db.read() as conn:
        pending = {r.command_id: r for r in conn.execute(select(c).where(c.c.status == "pending")).all()}
    if not pending:
        return 0
    since = min(as_utc(r.issued_at) for r in pending.values()) - CLOCK_SLACK
    with db.read() as conn:
        reported = conn.execute(
            select(e.c.device_id, e.c.seq, e.c.ts, e.c.action, e.c.data)
            .where(e.c.kind.in_(OUTCOME_KINDS), e.c.ts >= since)
            .order_by(e.c.seq)
        ).all()
    changed = 0
    with db.write() as conn:
        for ev in reported:
            data: dict[str, Any] = ev.data or {}
            row = pending.pop(str(data.get("command_id", "")), None)
            if row is None or row.device_id != ev.device_id:
                continue
            failed = ev.action == "failed"
            error = str(data.get("error", ""))[:200] if failed else None
            status = "failed" if failed else "done"
            conn.execute(
                update(c)
                .where(c.c.command_id == row.command_id, c.c.status == "pending")
                .values(status=status, outcome_at=ev.ts, outcome_seq=ev.seq, outcome_error=error)
            )
            audit.record(
                conn,
                actor=f"device:{ev.device_id}",
                action=f"quarantine.{row.action}.{status}",
                target=f"{row.device_id}:{row.quarantine_id}",
                team=row.team,
                before={"status": "pending", "command_id": row.command_id},
                after={"status": status, "seq": int(ev.seq), "error": error},
                now=now,
            )
            changed += 1
        for row in pending.values():
            if as_utc(row.expires_at) <= now:
                conn.execute(
                    update(c).where(c.c.command_id == row.command_id, c.c.status == "pending").values(status="expired")
                )
                changed += 1
    return changed


def payload_of(signed: SignedCommand) -> QuarantineCommand:
    """The command a stored signed command carries (for tests and the CLI; nothing is verified here)."""
    return QuarantineCommand.model_validate_json(base64.b64decode(signed.payload))
