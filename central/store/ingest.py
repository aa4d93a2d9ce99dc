"""Storing an event batch exactly once per (device_id, seq) and checking the device's HMAC chain.

Called from request worker threads; one transaction per batch, committed before the API answers.

Chain state per device is the highest seq received (`last_seq`, `last_mac`) and the number of
seqs below it not received yet (`missing`). Event n's link is checked as soon as event n-1's mac
is known: from the same batch, from `last_mac`, or from the stored event. When n-1 has not
arrived, n waits in `chain_pending` (digest and mac) and is checked when n-1 arrives. A gap is
alerted once, when a seq beyond `last_seq + 1` arrives; filling it later raises nothing.

A stored `(device_id, seq)` is a duplicate only when the event carries the stored `id` and `mac`. Another
event under a stored seq is a seq reuse: the whole batch is refused (`SeqReuse`, 409 at the API) and
`tamper.seq_reuse` is committed on its own, so nothing of the batch is taken for a duplicate and dropped.

The store raises only the integrity alerts it detects (chain, gap, seq reuse, forged unlock token); which stored
events raise alerts is the alerting's decision, injected as `classify` (central/alerting/classify.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import JsonValue
from sqlalchemy import delete, insert, select, tuple_, update

from central.store import tables
from central.store.alerts import (
    CHAIN_BROKEN,
    SEQ_GAP,
    SEQ_REUSE,
    UNLOCK_FORGED,
    NewAlert,
    insert_alerts,
)
from central.store.clock import as_utc
from central.store.engine import Database
from policy_client.schema import (
    GENESIS_MAC,
    ChainHmac,
    Event,
    EventBatch,
    EventKind,
    Severity,
    chained_json,
    data_orjson_exact,
    json_time,
    orjson_exact,
)

try:  # optional accelerator
    import orjson
except ImportError:  # pragma: no cover - exercised only where orjson is not installed
    orjson = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

MAX_GAP_RANGES_IN_ALERT = 50
MAX_SEQS_IN_REUSE_ALERT = 50


@dataclass(frozen=True)
class IngestOutcome:
    accepted: int
    duplicates: int
    alerts: tuple[NewAlert, ...]


class DeviceGone(Exception):
    """The device row vanished or was revoked between authentication and ingest."""


class SeqReuse(Exception):
    """The batch carries another event under a seq already stored (or twice in itself); nothing was stored.

    `alert` was committed before this was raised; `last_seq` is the device's highest stored seq."""

    def __init__(self, seqs: list[int], *, last_seq: int, alert: NewAlert) -> None:
        super().__init__(f"seq {seqs[0]} already holds another event")
        self.seqs = seqs
        self.last_seq = last_seq
        self.alert = alert


EventClassifier = Callable[[list[Event]], list[NewAlert]]
"""Which newly stored events raise alerts (central/alerting/classify.py); injected so that the store only stores."""


_EVENT_COLUMNS = (
    'device_id, seq, id, ts, kind, severity, "user", action, rule_id, policy_version, data, mac, received_at, team'
)


def _insert_sql(db: Database) -> str:
    """Driver-level INSERT: per-row SQLAlchemy parameter processing costs more than the insert itself."""
    mark = "?" if db.is_sqlite else "%s"
    marks = ", ".join([mark] * 14)
    return f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({marks}) ON CONFLICT (device_id, seq) DO NOTHING"  # noqa: S608


@dataclass(frozen=True, slots=True)
class _Statements:
    """The hot path's statements as driver SQL, written once per dialect: building and compiling (or looking up)
    a SQLAlchemy statement per request cost more CPU than SQLite spends running it."""

    insert_events: str
    read_device: str
    """The device's team, key and chain head; on PostgreSQL locked until the transaction ends (SQLite's one
    writer needs no row lock)."""
    stored_range: str
    advance_device: str
    """Chain head, missing count and last_seen; the user only when the batch names one."""
    touch_device: str


_STATEMENTS: dict[bool, _Statements] = {}


def _statements(db: Database) -> _Statements:
    sqlite_db = db.is_sqlite
    statements = _STATEMENTS.get(sqlite_db)
    if statements is None:
        m = "?" if sqlite_db else "%s"
        lock = "" if sqlite_db else " FOR UPDATE"
        statements = _Statements(
            insert_events=_insert_sql(db),
            read_device=(
                "SELECT team, chain_key, last_seq, last_mac, missing, revoked_at FROM devices"  # noqa: S608
                f" WHERE device_id = {m}{lock}"
            ),
            stored_range=f"SELECT seq, id, mac FROM events WHERE device_id = {m} AND seq >= {m} AND seq <= {m}",  # noqa: S608
            advance_device=(
                f"UPDATE devices SET last_seen = {m}, missing = {m}, last_seq = {m}, last_mac = {m},"  # noqa: S608
                f' "user" = COALESCE(NULLIF({m}, \'\'), "user") WHERE device_id = {m}'
            ),
            touch_device=f"UPDATE devices SET last_seen = {m} WHERE device_id = {m}",  # noqa: S608
        )
        _STATEMENTS[sqlite_db] = statements
    return statements


_json_data = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _encode_data(data: dict[str, Any], *, exact: bool | None = None) -> str:
    """The data column: compact JSON, through orjson when that is byte-identical (see schema.orjson_exact)."""
    if orjson is not None and (orjson_exact(data) if exact is None else exact):
        try:
            return orjson.dumps(data).decode()
        except (TypeError, RecursionError):
            pass
    return _json_data(data)


def _sqlite_time(value: datetime) -> str:
    # The text format SQLAlchemy's SQLite DateTime reads back, in UTC (SQLite keeps no offset).
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def decode_chain_key(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("chain_key is not valid base64") from None


@dataclass(slots=True)
class _Prepared:
    event: Event
    digest: bytes
    row: tuple[Any, ...]
    """Column values in `_EVENT_COLUMNS` order, without the trailing team."""


def _json_body(ev: Event) -> dict[str, Any]:
    """The chained fields of `ev.model_dump(mode="json")`, built directly: the per-event pydantic dump cost more
    than the rest of the preparation. Enum members stay members (str subclasses, written as their values);
    tests/unit/test_ingest_prepare.py checks the digest and the columns against the pydantic dump."""
    rule = ev.rule
    return {
        "id": str(ev.id),
        "seq": ev.seq,
        "ts": json_time(ev.ts),
        "kind": ev.kind,
        "severity": ev.severity,
        "user": ev.user,
        "action": ev.action,
        "rule": None if rule is None else {"id": rule.id, "policy_version": rule.policy_version},
        "data": ev.data,
    }


def _sqlite_text_time(json_ts: str, value: datetime) -> str:
    """`_sqlite_time(value)`, cut from its JSON text when that is UTC ("...Z")."""
    if json_ts.endswith("Z"):
        core = json_ts[:-1]
        if len(core) == 19:
            core += ".000000"
        if len(core) == 26:
            return core[:10] + " " + core[11:]
    return _sqlite_time(value)


def _prepare(db: Database, device_id: str, batch: EventBatch, now: datetime) -> tuple[dict[int, _Prepared], set[int]]:
    """CPU work done before taking the write lock: canonical digests and row values, first copy per seq;
    and the seqs the batch carries twice with different events (a repeat of the same event is a duplicate)."""
    unique: dict[int, _Prepared] = {}
    clashes: set[int] = set()
    sqlite_db = db.is_sqlite
    received = _sqlite_time(now) if sqlite_db else now
    sha256 = hashlib.sha256
    for ev in batch.events:
        first = unique.get(ev.seq)
        if first is not None:
            if first.event.id != ev.id or first.event.mac != ev.mac:
                clashes.add(ev.seq)
            continue
        # What the chain covers; its strings also serve as column values.
        body = _json_body(ev)
        data = ev.data
        exact = data_orjson_exact(data)
        rule = ev.rule
        row = (
            device_id,
            ev.seq,
            body["id"],
            _sqlite_text_time(body["ts"], ev.ts) if sqlite_db else ev.ts,
            ev.kind._value_,
            ev.severity._value_,
            ev.user,
            ev.action._value_,
            rule.id if rule else None,
            rule.policy_version if rule else None,
            _encode_data(data, exact=exact),
            ev.mac,
            received,
        )
        unique[ev.seq] = _Prepared(ev, sha256(chained_json(body, data_exact=exact)).digest(), row)
    return unique, clashes


def ingest_batch(
    db: Database, device_id: str, batch: EventBatch, *, now: datetime, classify: EventClassifier
) -> IngestOutcome:
    """Store the batch's new events and check their chain; `classify` (the alerting's `classify_events`) says which
    of the new events raise alerts, stored with the integrity alerts in the same transaction. Raises `SeqReuse`,
    after committing its alert and storing nothing, when an event differs from the one stored under its seq (or
    from its twin in the batch)."""
    unique, clashes = _prepare(db, device_id, batch, now)
    if not unique:
        return IngestOutcome(accepted=0, duplicates=0, alerts=())
    seqs = sorted(unique)
    sql = _statements(db)
    db_now: Any = _sqlite_time(now) if db.is_sqlite else now
    reuse: SeqReuse | None = None

    with db.write() as conn:
        dev = conn.exec_driver_sql(sql.read_device, (device_id,)).first()
        if dev is None or dev[5] is not None:
            raise DeviceGone(device_id)
        team, chain_key = str(dev[0]), str(dev[1])
        last_seq, last_mac, missing = int(dev[2]), str(dev[3]), int(dev[4])

        # Seqs above last_seq cannot be stored yet, so the common case needs no lookup.
        stored: dict[int, tuple[str, str]] = {}
        if seqs[0] <= last_seq:
            stored = {
                int(seq): (str(event_id), str(mac))
                for seq, event_id, mac in conn.exec_driver_sql(sql.stored_range, (device_id, seqs[0], seqs[-1]))
            }
        conflicts = sorted(
            clashes | {seq for seq, held in stored.items() if seq in unique and held != _identity(unique[seq].event)}
        )
        if conflicts:
            reuse = _seq_reuse(conflicts, unique, stored, last_seq=last_seq)
            conn.exec_driver_sql(sql.touch_device, (db_now, device_id))
            insert_alerts(conn, [reuse.alert], device_id=device_id, team=team, now=now)
            new_seqs: list[int] = []
        else:
            new_seqs = [seq for seq in seqs if seq not in stored]  # the rest are exact repeats: duplicates
        duplicates = len(batch.events) - len(new_seqs)
        if not new_seqs:
            alerts: list[NewAlert] = []
        else:
            alerts = _store(
                conn,
                sql,
                device_id=device_id,
                team=team,
                key=decode_chain_key(chain_key),
                fresh=[unique[seq] for seq in new_seqs],
                last_seq=last_seq,
                last_mac=last_mac,
                missing=missing,
                now=now,
                db_now=db_now,
                classify=classify,
            )

    if reuse is not None:
        log.warning("refused batch of device %s: seq %s already holds another event", device_id, reuse.seqs[0])
        raise reuse
    for alert in alerts:
        # Tamper evidence is an operator concern too; violations are the console's business.
        level = logging.WARNING if alert.kind.startswith("tamper.") else logging.DEBUG
        log.log(level, "alert %s for device %s at seq %s", alert.kind, device_id, alert.event_seq)
    return IngestOutcome(accepted=len(new_seqs), duplicates=duplicates, alerts=tuple(alerts))


def _identity(event: Event) -> tuple[str, str]:
    """What makes a resent event the same event: its id and its chain link."""
    return str(event.id), event.mac


def _seq_reuse(
    conflicts: list[int], unique: dict[int, _Prepared], stored: dict[int, tuple[str, str]], *, last_seq: int
) -> SeqReuse:
    first = conflicts[0]
    sent = unique[first].event
    held = stored.get(first)
    data: dict[str, JsonValue] = {
        "seqs": list(conflicts[:MAX_SEQS_IN_REUSE_ALERT]),
        "count": len(conflicts),
        "seqs_truncated": len(conflicts) > MAX_SEQS_IN_REUSE_ALERT,
        "last_seq": last_seq,
        "sent_id": str(sent.id),
        "sent_kind": sent.kind.value,
        "stored_id": held[0] if held else None,
        "reason": "another event under a stored seq" if held else "two events under one seq in a batch",
    }
    alert = NewAlert(kind=SEQ_REUSE, severity=Severity.high.value, event_seq=first, data=data)
    return SeqReuse(conflicts, last_seq=last_seq, alert=alert)


def _store(
    conn: Any,
    sql: _Statements,
    *,
    device_id: str,
    team: str,
    key: bytes,
    fresh: list[_Prepared],
    last_seq: int,
    last_mac: str,
    missing: int,
    now: datetime,
    db_now: Any,
    classify: EventClassifier,
) -> list[NewAlert]:
    """Insert new events, check their links, advance the device's chain state, and insert their alerts."""
    conn.exec_driver_sql(sql.insert_events, [(*p.row, team) for p in fresh])
    alerts = _check_chain(
        conn, device_id=device_id, key=key, fresh=fresh, last_seq=last_seq, last_mac=last_mac, had_gaps=missing > 0
    )
    new_seqs = [p.event.seq for p in fresh]
    new_last_seq, new_missing, gap_alerts = _advance(new_seqs, last_seq=last_seq, missing=missing)
    alerts.extend(gap_alerts)
    new_events = [p.event for p in fresh]
    alerts.extend(classify(new_events))
    alerts.extend(_unlock_alerts(conn, device_id=device_id, new_events=new_events))

    new_last_mac = last_mac
    if new_last_seq != last_seq:
        new_last_mac = next(p.event.mac for p in fresh if p.event.seq == new_last_seq)
    conn.exec_driver_sql(
        sql.advance_device, (db_now, new_missing, new_last_seq, new_last_mac, new_events[-1].user, device_id)
    )
    insert_alerts(conn, alerts, device_id=device_id, team=team, now=now)
    return alerts


def _check_chain(
    conn: Any,
    *,
    device_id: str,
    key: bytes,
    fresh: list[_Prepared],
    last_seq: int,
    last_mac: str,
    had_gaps: bool,
) -> list[NewAlert]:
    e, p = tables.events, tables.chain_pending
    new_events = [p.event for p in fresh]
    macs: dict[int, str] = {ev.seq: ev.mac for ev in new_events}
    if last_seq > 0:
        macs.setdefault(last_seq, last_mac)
    macs[0] = GENESIS_MAC
    wanted = {ev.seq - 1 for ev in new_events} - macs.keys()
    if wanted:
        # Predecessors stored earlier (a gap being filled, or a batch that overlaps stored events).
        rows = conn.execute(select(e.c.seq, e.c.mac).where(e.c.device_id == device_id, e.c.seq.in_(sorted(wanted))))
        for seq, mac in rows:
            macs[int(seq)] = str(mac)

    alerts: list[NewAlert] = []
    pending_rows: list[dict[str, Any]] = []
    link = ChainHmac(key).link
    for prepared in fresh:
        ev, digest = prepared.event, prepared.digest
        prev = macs.get(ev.seq - 1)
        if prev is None:
            pending_rows.append({"device_id": device_id, "seq": ev.seq, "digest": digest.hex(), "mac": ev.mac})
        elif link(prev, ev.seq, digest) != ev.mac:
            alerts.append(_broken(ev.seq))
    if pending_rows:
        conn.execute(insert(p), pending_rows)

    if had_gaps:
        # Events that arrived before their predecessor: check the ones whose predecessor is here now.
        successors = sorted({ev.seq + 1 for ev in new_events} - {ev.seq for ev in new_events})
        waiting = conn.execute(
            select(p.c.seq, p.c.digest, p.c.mac).where(p.c.device_id == device_id, p.c.seq.in_(successors))
        ).all()
        for seq, digest_hex, mac in waiting:
            if link(macs[int(seq) - 1], int(seq), bytes.fromhex(digest_hex)) != mac:
                alerts.append(_broken(int(seq)))
        if waiting:
            conn.execute(
                delete(p).where(tuple_(p.c.device_id, p.c.seq).in_([(device_id, int(row.seq)) for row in waiting]))
            )
    return alerts


def _broken(seq: int) -> NewAlert:
    return NewAlert(
        kind=CHAIN_BROKEN,
        severity=Severity.high.value,
        event_seq=seq,
        data={"seq": seq, "reason": "event mac does not chain from its predecessor"},
    )


def _advance(new_seqs: list[int], *, last_seq: int, missing: int) -> tuple[int, int, list[NewAlert]]:
    """New (last_seq, missing) after storing `new_seqs`, and one gap alert listing the ranges skipped."""
    gaps: list[tuple[int, int]] = []
    top = last_seq
    for seq in new_seqs:
        if seq > top + 1:
            gaps.append((top + 1, seq - 1))
            missing += seq - 1 - top
        elif seq <= top:
            missing = max(0, missing - 1)
        top = max(top, seq)
    alerts: list[NewAlert] = []
    if gaps:
        count = sum(hi - lo + 1 for lo, hi in gaps)
        ranges: list[Any] = [[lo, hi] for lo, hi in gaps[:MAX_GAP_RANGES_IN_ALERT]]
        alerts.append(
            NewAlert(
                kind=SEQ_GAP,
                severity=Severity.high.value,
                event_seq=gaps[0][1] + 1,
                data={"missing_ranges": ranges, "missing_count": count, "ranges_truncated": len(gaps) > len(ranges)},
            )
        )
    return top, missing, alerts


_TOKEN_ID = re.compile(r"[0-9a-f]{16}")


def _reported_token_id(event: Event) -> str | None:
    value = event.data.get("token_id")
    if not isinstance(value, str):
        return None
    token_id = value.strip().lower()
    return token_id if _TOKEN_ID.fullmatch(token_id) else None


def _unlock_alerts(conn: Any, *, device_id: str, new_events: list[Event]) -> list[NewAlert]:
    """`agent.unlock_used`: a token this endpoint issued for this device is marked used (first use kept, no
    alert); a token never issued, issued for another device, or reported with another scope is a forgery."""
    uses = [ev for ev in new_events if ev.kind is EventKind.agent_unlock_used]
    if not uses:
        return []
    u = tables.unlock_tokens
    wanted = sorted({tid for ev in uses if (tid := _reported_token_id(ev)) is not None})
    issued = {
        str(row.token_id): row
        for row in conn.execute(
            select(u.c.token_id, u.c.device_id, u.c.scope, u.c.used_at).where(u.c.token_id.in_(wanted))
        )
    }
    alerts: list[NewAlert] = []
    first_use: dict[str, tuple[datetime, int]] = {}
    for ev in uses:
        token_id = _reported_token_id(ev)
        row = None if token_id is None else issued.get(token_id)
        reported_scope = ev.data.get("scope")
        if token_id is None or row is None:
            reason = "no token with this id was issued"
        elif row.device_id != device_id:
            reason = "the token was issued for another device"
        elif reported_scope is not None and reported_scope != row.scope:
            reason = f"the token was issued for {row.scope}, not {str(reported_scope)[:32]}"
        else:
            used = (ev.ts.astimezone(UTC), ev.seq)
            first_use[token_id] = min(first_use.get(token_id, used), used)
            continue
        alerts.append(
            NewAlert(
                kind=UNLOCK_FORGED,
                severity=Severity.high.value,
                event_seq=ev.seq,
                data={"event_id": str(ev.id), **ev.data, "reason": reason},
            )
        )
    for token_id, (when, seq) in first_use.items():
        known = issued[token_id].used_at
        if known is None or as_utc(known) > when:
            conn.execute(update(u).where(u.c.token_id == token_id).values(used_at=when, used_seq=seq))
    return alerts
