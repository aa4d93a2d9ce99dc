"""Opening the outbox file safely: damage detection, salvage into a fresh file, and the swap.

Called by the thread that opens an `Outbox` (or hits a corrupt page later), under the per-path
lock of `outbox.py`. Never raises for a damaged file; raises `OutboxTooNew` for a newer one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agent_app.core import outbox_schema
from agent_app.core.outbox_crypto import RowCipher, RowUnreadable
from agent_app.core.outbox_schema import CORRUPTION_CODES, STATE_DEAD, STATE_PENDING, STATE_SENT
from policy_client.agent_config import fsync_dir
from policy_client.schema import GENESIS_MAC, Severity

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 30.0
_MAX_SKIPS = 10_000
_MAX_POINT_LOOKUPS = 200_000
_BLIND_SKIPS = 64
_ROW_COLS = "seq, kind, state, sent_at, dead_reason, key_id, nonce, mac, ct"


class DamagedFile(Exception):
    """quick_check or the schema says the file cannot be trusted as it is."""


def is_corruption(exc: BaseException) -> bool:
    """True for SQLite errors that mean a damaged file (not busy, full or permission problems)."""
    if isinstance(exc, DamagedFile):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in CORRUPTION_CODES
    message = str(exc)
    return "malformed" in message or "not a database" in message or "unknown outbox layout" in message


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA journal_size_limit=67108864")  # keep a drained WAL from squatting on disk
    except BaseException:
        conn.close()
        raise
    return conn


def _check(conn: sqlite3.Connection, path: Path, *, quick_check: bool) -> None:
    if quick_check:
        result = [str(row[0]) for row in conn.execute("PRAGMA quick_check(20)").fetchall()]
        if result != ["ok"]:
            raise DamagedFile("quick_check: " + "; ".join(result)[:500])
    outbox_schema.migrate(conn, path)
    outbox_schema.read_head(conn)  # meta and the last page of events are readable


@dataclass(frozen=True)
class RecoveryReport:
    """What a recovery kept and lost; becomes an `agent.loss` event with reason "corruption"."""

    detail: str
    corrupt_path: Path
    salvaged: int
    lost: dict[str, int]
    lost_seqs: list[int] = field(default_factory=list)
    unreadable_ranges: list[tuple[int, int]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(self.lost.values())

    def loss_data(self) -> dict[str, Any]:
        return {
            "reason": "corruption",
            "dropped": dict(self.lost),
            "count": self.count,
            "salvaged": self.salvaged,
            "corrupt_file": self.corrupt_path.name,
            "detail": self.detail[:300],
            "lost_seqs": self.lost_seqs[:200],
            "unreadable_ranges": [list(r) for r in self.unreadable_ranges[:50]],
        }


def _siblings(path: Path) -> list[tuple[str, Path]]:
    return [(suffix, path.with_name(path.name + suffix)) for suffix in ("", "-wal", "-shm", "-journal")]


def salvaged_path(path: Path) -> Path:
    return path.with_name(path.name + ".salvaged")


def finish_interrupted_recovery(path: Path) -> None:
    """A crash between moving the damaged file aside and renaming the salvage: finish the rename."""
    pending = salvaged_path(path)
    if pending.exists() and not path.exists():
        log.warning("finishing an interrupted outbox recovery: %s", pending)
        os.replace(pending, path)


def open_checked(path: Path, *, quick_check: bool) -> sqlite3.Connection:
    """Open, migrate and check; raises for damage (see `is_corruption`) or `OutboxTooNew`."""
    finish_interrupted_recovery(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        _check(conn, path, quick_check=quick_check)
    except BaseException:
        conn.close()
        raise
    return conn


# --- salvage ----------------------------------------------------------------------------------


@dataclass
class _Salvage:
    rows: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    unreadable: list[tuple[int, int]] = field(default_factory=list)
    meta_head: tuple[int, str] | None = None
    top_seq: int = 0
    claimed: int = 0
    """Highest seq the file claims to hold (meta head or max(seq)); 0 when neither is readable."""


def _read_meta_head(conn: sqlite3.Connection) -> tuple[int, str] | None:
    try:
        values = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        head_seq, head_mac = int(values["head_seq"]), str(values["head_mac"])
        bytes.fromhex(head_mac)
    except (sqlite3.Error, KeyError, ValueError, TypeError):
        return None
    return (head_seq, head_mac) if len(head_mac) == 64 else None


def _scalar(conn: sqlite3.Connection, sql: str) -> int | None:
    try:
        row = conn.execute(sql).fetchone()
    except sqlite3.Error:
        return None
    return int(row[0]) if row is not None and row[0] is not None else None


def _scan(conn: sqlite3.Connection, found: _Salvage) -> None:
    """Read rows in seq order; skip ahead (growing steps) past pages that fail to read.

    Skipping stops past the highest seq the file claims (meta head or max(seq)); when neither is
    readable it gives up after a few blind steps rather than probing an empty key space.
    """
    pos = _scalar(conn, "SELECT min(seq) FROM events") or 1
    claimed = max(found.meta_head[0] if found.meta_head else 0, _scalar(conn, "SELECT max(seq) FROM events") or 0)
    found.claimed = claimed
    step = 1
    for attempt in range(_MAX_SKIPS):
        if (claimed and pos > claimed) or (not claimed and attempt > _BLIND_SKIPS):
            return
        start = pos
        try:
            for row in conn.execute(f"SELECT {_ROW_COLS} FROM events WHERE seq >= ? ORDER BY seq", (pos,)):  # noqa: S608
                if isinstance(row[0], int) and row[0] >= pos:
                    found.rows[row[0]] = row
                    pos = row[0] + 1
            return
        except sqlite3.Error as exc:
            if not is_corruption(exc):
                return  # no events table at all, or the file is not a database
            if pos > start:
                step = 1
            found.unreadable.append((pos, pos + step - 1))
            pos += step
            step = min(step * 2, 1024)


def _point_lookups(conn: sqlite3.Connection, found: _Salvage) -> None:
    """Retry each skipped seq alone: a point lookup may descend around the damaged page.

    Ranges are clipped to the claimed seqs; with nothing claimed, blind skips count as nothing.
    """
    still: list[tuple[int, int]] = []
    budget = _MAX_POINT_LOOKUPS
    clipped = [(first, min(last, found.claimed)) for first, last in found.unreadable if first <= found.claimed]
    for first, last in clipped:
        run_start: int | None = None
        for seq in range(first, last + 1):
            budget -= 1
            ok = False
            if budget > 0:
                try:
                    row = conn.execute(f"SELECT {_ROW_COLS} FROM events WHERE seq = ?", (seq,)).fetchone()  # noqa: S608
                    ok = True
                    if row is not None:
                        found.rows[seq] = row
                except sqlite3.Error:
                    ok = False
            if not ok and run_start is None:
                run_start = seq
            if ok and run_start is not None:
                still.append((run_start, seq - 1))
                run_start = None
        if run_start is not None:
            still.append((run_start, last))
    found.unreadable = still


def _salvage(path: Path) -> _Salvage:
    found = _Salvage()
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error:
        return found
    try:
        found.meta_head = _read_meta_head(conn)
        _scan(conn, found)
        _point_lookups(conn, found)
        tops = [_scalar(conn, "SELECT max(seq) FROM events") or 0, *found.rows.keys()]
        found.top_seq = max(tops)
    finally:
        conn.close()
    return found


def _rebuild(row: tuple[Any, ...], cipher: RowCipher) -> tuple[Any, ...]:
    """A readable row, re-derived from its authenticated plaintext (clear columns are not trusted)."""
    seq, kind, state, sent_at, dead_reason, key_id, nonce, mac, ct = row
    plaintext = cipher.open(
        key_id=str(key_id), seq=seq, kind=str(kind), mac=bytes(mac), nonce=bytes(nonce), ct=bytes(ct)
    )
    body = json.loads(plaintext)
    if not isinstance(body, dict) or body.get("seq") != seq:
        raise RowUnreadable(f"row {seq} holds another event")
    severity = Severity(body["severity"]).rank
    ts = datetime.fromisoformat(str(body["ts"]).replace("Z", "+00:00")).timestamp()
    size = len(plaintext)
    if state not in (STATE_PENDING, STATE_SENT, STATE_DEAD):
        state = STATE_PENDING  # resending is safe (the endpoint dedups); losing is not
    return (seq, kind, severity, ts, size, state, sent_at, dead_reason, key_id, bytes(nonce), bytes(mac), bytes(ct))


def recover(path: Path, *, cipher: RowCipher, stamp: datetime, detail: str) -> RecoveryReport:
    """Salvage every readable row of a damaged outbox into a fresh file that replaces it.

    Order matters for crash safety: build `<name>.salvaged` first, then move the damaged files
    aside, then rename the salvage into place (finished by `finish_interrupted_recovery`).
    """
    log.error("outbox %s is damaged (%s); salvaging", path, detail[:200])
    found = _salvage(path)
    kept: list[tuple[Any, ...]] = []
    lost: Counter[str] = Counter()
    lost_seqs: list[int] = []
    top_mac: bytes | None = None
    for seq in sorted(found.rows):
        row = found.rows[seq]
        if seq == found.top_seq:
            top_mac = bytes(row[7]) if isinstance(row[7], bytes) else None
        try:
            kept.append(_rebuild(row, cipher))
        except (RowUnreadable, ValueError, KeyError, TypeError):
            lost[str(row[1]) if isinstance(row[1], str) else "unknown"] += 1
            lost_seqs.append(seq)
    unknown = sum(last - first + 1 for first, last in found.unreadable)
    if unknown:
        lost["unknown"] += unknown

    head_seq, head_mac = 0, GENESIS_MAC
    if found.top_seq:
        head_seq = found.top_seq
        head_mac = top_mac.hex() if top_mac is not None and len(top_mac) == 32 else GENESIS_MAC
    if found.meta_head is not None and found.meta_head[0] >= head_seq:
        head_seq, head_mac = found.meta_head

    target = salvaged_path(path)
    for _, sibling in _siblings(target):
        with contextlib.suppress(FileNotFoundError):
            sibling.unlink()
    fresh = sqlite3.connect(str(target), isolation_level=None, timeout=BUSY_TIMEOUT_S)
    try:
        fresh.execute("PRAGMA journal_mode=DELETE")
        fresh.execute("PRAGMA synchronous=FULL")
        outbox_schema.migrate(fresh, target)
        fresh.execute("BEGIN IMMEDIATE")
        fresh.executemany(
            "INSERT INTO events(seq, kind, severity, ts, size, state, sent_at, dead_reason, key_id, nonce, mac, ct)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            kept,
        )
        outbox_schema.write_head(fresh, head_seq, head_mac)
        fresh.execute("COMMIT")
    finally:
        fresh.close()

    aside = path.with_name(f"{path.name}.corrupt-{stamp.strftime('%Y%m%dT%H%M%S%fZ')}")
    for suffix, sibling in _siblings(path):
        with contextlib.suppress(FileNotFoundError):
            os.replace(sibling, aside.with_name(aside.name + suffix))
    os.replace(target, path)
    fsync_dir(path.parent)
    report = RecoveryReport(
        detail=detail,
        corrupt_path=aside,
        salvaged=len(kept),
        lost=dict(lost),
        lost_seqs=lost_seqs,
        unreadable_ranges=found.unreadable,
    )
    log.error("outbox recovered: kept %s rows, lost %s; damaged file kept as %s", len(kept), report.count, aside)
    return report
