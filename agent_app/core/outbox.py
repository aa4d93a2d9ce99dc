"""The agent's durable, encrypted, hash-chained event outbox (SQLite WAL, group commit).

One `Outbox` per thread: the pipeline thread appends, the uploader thread reads and acknowledges;
both may open the same file. Layout and migrations: outbox_schema.py; sealing: outbox_crypto.py;
damage handling: outbox_recovery.py; design note: docs/outbox.md.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from agent_app.core import outbox_schema
from agent_app.core.outbox_crypto import (
    NONCE_BYTES,
    RowCipher,
    RowUnreadable,
    WireRow,
    canonical,
    chain_mac,
    event_ids,
    utc,
    wire_plaintext,
)
from agent_app.core.outbox_recovery import RecoveryReport, is_corruption, open_checked, recover
from agent_app.core.outbox_schema import STATE_SENT, OutboxTooNew
from policy_client.schema import (
    EventDraft,
    EventKind,
    Severity,
    utc_now,
)
from policy_client.secrets import OutboxKeys

__all__ = ["Outbox", "OutboxTooNew", "ResyncReport", "read_depth"]

log = logging.getLogger(__name__)

DEFAULT_QUOTA_BYTES = 512 * 1024 * 1024
SOFT_LIMIT = 0.9
"""Above this fraction of the quota, info/low drafts are refused (after purging sent history)."""
PURGE_TARGET = 0.8
"""Purging sent history stops once usage is estimated below this fraction."""
ROW_OVERHEAD = 100
"""Page bytes a row costs beyond its ciphertext (clear columns, nonce, mac, cell and index entries)."""
WIRE_OVERHEAD = 120
"""Bytes an event adds on the wire beyond its plaintext: mac and device_id fields."""
_RANKS = {severity: severity.rank for severity in Severity}
_RANK_BY_VALUE = {severity.value: severity.rank for severity in Severity}
"""By plain string: a dict lookup keyed by an enum member calls `Enum.__hash__`, a Python function."""
_RANK_HIGH = Severity.high.rank
_RANK_MEDIUM = Severity.medium.rank

BACKGROUND_CHECK_FROM = 32 * 1024 * 1024
"""After an unclean stop, files at least this big get their quick_check on a background thread
(about 0.8 s per GB) so uploading starts at once; smaller files are checked before open returns."""
CLEAN_MARKER_SUFFIX = "-clean"
HIGH_WATER_SUFFIX = "-seq"
"""Side file holding the last committed seq and mac, fsynced after every commit. SQLite forgets commits whose
WAL frames are cut off (a truncated WAL); this mark is how the outbox notices, reports the loss and never
reuses those seqs (the endpoint would take new events under a reused seq for duplicates)."""
_HIGH_WATER_LEN = 20 + 1 + 64 + 1

_T = TypeVar("_T")


@dataclass(frozen=True)
class ResyncReport:
    """What `Outbox.resync` did: where the seqs continue now, and which queued events moved where."""

    endpoint_seq: int
    local_head: int
    """The outbox head before the resync."""
    base: int
    """The new events follow this seq: the endpoint's head, or this outbox's own when it is further."""
    loss_seq: int
    """Seq of the `agent.loss` record (reason `seq_resync`) written first after `base`."""
    moved: dict[int, int]
    """Old seq -> new seq of every queued event written again."""


_OPEN_LOCKS: dict[str, threading.RLock] = {}
_OPEN_LOCKS_GUARD = threading.Lock()


class _FileUse:
    """Per file, in this process: open instances and whether the file's integrity is established."""

    def __init__(self) -> None:
        self.open = 0
        self.verified = False
        self.marker: bool | None = None
        """What the first open found: True clean stop and unchanged, False changed since, None no marker."""


_USES: dict[str, _FileUse] = {}


def _path_lock(path: Path) -> threading.RLock:
    """Serialises open and recovery of one file among the threads of this process."""
    key = str(path.resolve())
    with _OPEN_LOCKS_GUARD:
        return _OPEN_LOCKS.setdefault(key, threading.RLock())


def _use(path: Path) -> _FileUse:
    key = str(path.resolve())
    with _OPEN_LOCKS_GUARD:
        return _USES.setdefault(key, _FileUse())


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + CLEAN_MARKER_SUFFIX)


def _fingerprint(path: Path) -> list[list[int] | None]:
    """Identity, size and change times of the file and its WAL; any write or replacement changes it."""
    out: list[list[int] | None] = []
    for name in (path, path.with_name(path.name + "-wal")):
        try:
            st = os.stat(name)
        except FileNotFoundError:
            out.append(None)
            continue
        out.append([st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
    return out


def _take_clean_marker(path: Path) -> bool | None:
    """Consume the marker a clean close left: True if the files are untouched since, False if they
    changed, None without a marker (first start, or the last stop was not clean)."""
    marker = _marker_path(path)
    try:
        text = marker.read_text(encoding="utf-8")
    except (FileNotFoundError, OSError, UnicodeDecodeError):
        return None
    try:
        marker.unlink()
    except OSError:
        log.warning("could not remove the outbox clean-stop marker; checking the file")
        return False
    try:
        return bool(json.loads(text) == _fingerprint(path))
    except ValueError:
        return False


def _write_clean_marker(path: Path) -> None:
    marker = _marker_path(path)
    tmp = marker.with_name(marker.name + ".tmp")
    try:
        tmp.write_text(json.dumps(_fingerprint(path)), encoding="utf-8")
        os.replace(tmp, marker)
    except OSError:
        log.debug("could not write the outbox clean-stop marker", exc_info=True)


def _ident(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _is_full(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return bool((code & 0xFF) == sqlite3.SQLITE_FULL)
    return "disk is full" in str(exc)


def _high_water_path(path: Path) -> Path:
    return path.with_name(path.name + HIGH_WATER_SUFFIX)


def _read_high_water(path: Path) -> tuple[int, str] | None:
    """(seq, mac hex) of the last commit the mark saw, or None when absent or unreadable."""
    try:
        text = _high_water_path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit() or len(parts[1]) != 64:
        return None
    try:
        bytes.fromhex(parts[1])
    except ValueError:
        return None
    return int(parts[0]), parts[1]


class _FileSwapped(Exception):
    """Another thread recovered the file and replaced it; reopen and retry."""


_INSERT = (
    "INSERT INTO events(seq, kind, severity, ts, size, state, key_id, nonce, mac, ct)"
    " VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?)"
)
_READ_COLS = "seq, kind, key_id, nonce, mac, ct"


class Outbox:
    """Durable queue of outgoing events; see the module docstring for threading."""

    def __init__(
        self,
        path: Path,
        *,
        keys: OutboxKeys,
        quota_bytes: int = DEFAULT_QUOTA_BYTES,
        clock: Callable[[], datetime] = utc_now,
        check: bool = True,
    ) -> None:
        """Open or create the file, migrate it, recover it if damaged. Never raises for damage.

        `check=False` skips the full quick_check (a second Outbox on a file the first already checked).
        Raises `OutboxTooNew` when a newer DeskWarden wrote the file.
        """
        self._path = path
        self._cipher = RowCipher(keys)
        self._chain_key = keys.chain_key
        self._key_id = keys.key_id
        self._quota = quota_bytes
        self._clock = clock
        self._lock = threading.RLock()
        self._unreported: dict[str, Counter[str]] = {}
        self._dropped: Counter[str] = Counter()
        self.recoveries: list[RecoveryReport] = []
        """Recoveries this instance performed (for health reporting and tests)."""
        self._conn: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None
        self._counted = False
        self._high_water_fd: int | None = None
        self._mark_floor = 0
        """Never write a mark below this: a recovery's own commit must not erase the evidence of lost commits."""
        with self._lock:
            self._raise_mark_floor()
            self._open(quick_check=check)
            self._reconcile_high_water()

    # --- opening and recovery ----------------------------------------------------------------

    def _open(self, *, quick_check: bool) -> None:
        report: RecoveryReport | None = None
        background = False
        with _path_lock(self._path):
            use = _use(self._path)
            if not self._counted:
                if use.open == 0:
                    # First instance in this process: a clean stop left a marker if nothing changed since.
                    use.marker = _take_clean_marker(self._path)
                    use.verified = use.marker is True
                use.open += 1
                self._counted = True
            if quick_check and not use.verified and use.marker is None:
                background = _size(self._path) >= BACKGROUND_CHECK_FROM
                quick_check = not background
            try:
                conn = open_checked(self._path, quick_check=quick_check and not use.verified)
            except OutboxTooNew:
                raise
            except Exception as exc:
                if not is_corruption(exc):
                    raise
                report = recover(self._path, cipher=self._cipher, stamp=self._clock(), detail=str(exc))
                conn = open_checked(self._path, quick_check=False)
                background = False
            if (quick_check and report is None) or report is not None:
                use.verified = True  # checked now, or just rebuilt from authenticated rows
            self._conn = conn
            self._file = _ident(self._path)
        if report is not None:
            self._record_recovery(report)
        if background:
            threading.Thread(
                target=self._background_check, args=(self._file,), name="outbox-check", daemon=True
            ).start()

    def _reconcile_high_water(self) -> None:
        """Commits the high-water mark saw but the database lost (a truncated WAL, a rebuilt file): record an
        `agent.loss` for them and continue the seqs after them, so the endpoint sees a gap, not duplicates."""
        mark = _read_high_water(self._path)
        if mark is None:
            return
        mark_seq, mark_mac = mark
        with _path_lock(self._path):
            head_seq, _ = outbox_schema.read_head(self._db())
            if mark_seq <= head_seq:
                return
            log.error(
                "outbox lost commits %d..%d (truncated WAL or damaged file); reporting them", head_seq + 1, mark_seq
            )

            def lift(conn: sqlite3.Connection) -> None:
                outbox_schema.write_head(conn, mark_seq, mark_mac)

            data = {
                "reason": "lost_commits",
                "count": mark_seq - head_seq,
                "first_seq": head_seq + 1,
                "last_seq": mark_seq,
            }
            self._commit_group([], extra=[self._loss_draft(data)], before=lift)

    def _raise_mark_floor(self) -> None:
        mark = _read_high_water(self._path)
        if mark is not None:
            self._mark_floor = max(self._mark_floor, mark[0])

    def _write_high_water(self, seq: int, mac: bytes) -> None:
        """Durably note the last committed seq (one small fixed-size write and fdatasync per commit)."""
        if seq < self._mark_floor:
            return  # a recovery's record, written before `_reconcile_high_water` lifts the head past the mark
        record = f"{seq:020d} {mac.hex()}\n".encode("ascii")
        try:
            if self._high_water_fd is None:
                self._high_water_fd = os.open(_high_water_path(self._path), os.O_WRONLY | os.O_CREAT, 0o600)
            _write_at_start(self._high_water_fd, record)
        except OSError:
            # The rows are committed; without the mark only a later truncated WAL would go unnoticed.
            log.warning("could not update the outbox high-water mark", exc_info=True)

    def _background_check(self, ident: tuple[int, int] | None) -> None:
        """quick_check on its own connection while the queue is in use; recovers the file if it fails."""
        try:
            conn = sqlite3.connect(f"{self._path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
            try:
                result = [str(row[0]) for row in conn.execute("PRAGMA quick_check(20)").fetchall()]
            except sqlite3.DatabaseError as exc:
                if not is_corruption(exc):
                    raise
                result = [str(exc)]
            finally:
                conn.close()
            if _ident(self._path) != ident:
                return  # replaced meanwhile (recovered by someone else)
            if result == ["ok"]:
                _use(self._path).verified = True
                return
            log.error("outbox integrity check failed after an unclean stop: %s", "; ".join(result)[:200])
            with self._lock:
                if self._conn is not None and _ident(self._path) == ident:
                    self._recover("quick_check: " + "; ".join(result)[:500])
        except Exception:
            log.exception("background outbox integrity check failed to run")

    def _record_recovery(self, report: RecoveryReport) -> None:
        self.recoveries.append(report)
        self._commit_group([], extra=[self._loss_draft(report.loss_data())])

    def _recover(self, detail: str) -> None:
        """A corrupt page found while working: salvage the file (once, whoever sees it first)."""
        self._raise_mark_floor()
        with _path_lock(self._path):
            self._close_conn()
            if _ident(self._path) == self._file:
                report = recover(self._path, cipher=self._cipher, stamp=self._clock(), detail=detail)
                self._conn = open_checked(self._path, quick_check=False)
                self._file = _ident(self._path)
                _use(self._path).verified = True  # rebuilt from authenticated rows
                self._record_recovery(report)
                self._reconcile_high_water()
            else:
                self._open(quick_check=False)

    def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                log.debug("closing a damaged outbox connection failed", exc_info=True)
            self._conn = None

    def _db(self) -> sqlite3.Connection:
        """The connection, reopened first if another thread swapped the file."""
        if self._conn is None:
            raise RuntimeError("outbox is closed")
        if _ident(self._path) != self._file:
            self._close_conn()
            self._open(quick_check=False)
        if self._conn is None:
            raise RuntimeError("outbox failed to reopen")
        return self._conn

    def _guarded(self, op: Callable[[], _T]) -> _T:
        with self._lock:
            for _ in range(3):
                try:
                    return op()
                except _FileSwapped:
                    self._close_conn()
                    self._open(quick_check=False)
                except Exception as exc:
                    if not is_corruption(exc):
                        raise
                    self._recover(str(exc))
            return op()

    # --- writing -----------------------------------------------------------------------------

    def append(self, drafts: Sequence[EventDraft]) -> list[int]:
        """Write a group of drafts in one durable transaction; returns the seqs of the accepted ones.

        Refused drafts (quota, oversized data, full disk) are counted and reported by an
        `agent.loss` event in this or the next append that can write.
        """
        group = list(drafts)
        return self._guarded(lambda: self._append(group))

    def _append(self, drafts: list[EventDraft]) -> list[int]:
        try:
            return self._commit_group(drafts)
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
        log.error("outbox disk is full; writing only high and critical events of a group of %s", len(drafts))
        important = [d for d in drafts if d.severity.rank >= _RANK_HIGH]
        self._count("disk_full", (d for d in drafts if d.severity.rank < _RANK_HIGH))
        try:
            return self._commit_group(important)
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            self._count("disk_full", important)
            return []

    def _count(self, reason: str, drafts: Any) -> None:
        counts = self._unreported.setdefault(reason, Counter())
        for draft in drafts:
            counts[str(draft.kind.value)] += 1
            self._dropped[str(draft.kind.value)] += 1

    def _loss_draft(self, data: dict[str, Any]) -> EventDraft:
        return EventDraft(kind=EventKind.agent_loss, ts=self._clock(), severity=Severity.high, data=data)

    def _commit_group(
        self,
        drafts: list[EventDraft],
        *,
        extra: Sequence[EventDraft] = (),
        before: Callable[[sqlite3.Connection], None] | None = None,
    ) -> list[int]:
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if _ident(self._path) != self._file:
                raise _FileSwapped
            if before is not None:
                before(conn)
            seq, prev_hex = outbox_schema.read_head(conn)
            prev = bytes.fromhex(prev_hex)
            used = self._used_bytes(conn)
            soft, hard = self._quota * SOFT_LIMIT, float(self._quota)
            purged = False
            refused: dict[str, Counter[str]] = {}
            rows: list[tuple[Any, ...]] = []
            seqs: list[int] = []
            ids = event_ids(len(drafts) + len(extra) + len(self._unreported) + 2)
            nonces = os.urandom(NONCE_BYTES * len(ids))
            seal = self._cipher.seal_draft
            ranks = _RANK_BY_VALUE
            for draft in drafts:
                rank = ranks[draft.severity._value_]
                if rank < _RANK_HIGH and used >= (hard if rank == _RANK_MEDIUM else soft):
                    if not purged:
                        used, purged = self._purge_for_quota(conn, used), True
                    if used >= (hard if rank == _RANK_MEDIUM else soft):
                        refused.setdefault("quota", Counter())[draft.kind.value] += 1
                        continue
                n = len(rows)
                row = seal(draft, rank, seq + 1, prev, ids[n], nonces[NONCE_BYTES * n : NONCE_BYTES * (n + 1)])
                if row is None:
                    refused.setdefault("oversized", Counter())[draft.kind.value] += 1
                    continue
                seq, prev = seq + 1, row[7]
                rows.append(row)
                seqs.append(seq)
                used += len(row[8]) + ROW_OVERHEAD
            losses = list(extra)
            for reason in sorted(set(self._unreported) | set(refused)):
                counts = self._unreported.get(reason, Counter()) + refused.get(reason, Counter())
                if counts:
                    data = {"reason": reason, "dropped": dict(sorted(counts.items())), "count": counts.total()}
                    losses.append(self._loss_draft(data))
            for loss in losses:
                n = len(rows)
                row = seal(
                    loss, _RANKS[loss.severity], seq + 1, prev, ids[n], nonces[NONCE_BYTES * n : NONCE_BYTES * (n + 1)]
                )
                if row is None:  # a loss record is small; only a bug gets here
                    raise RuntimeError("loss record does not fit an event")
                seq, prev = seq + 1, row[7]
                rows.append(row)
            if rows:
                conn.executemany(_INSERT, rows)
                outbox_schema.write_head(conn, seq, prev.hex())
            conn.execute("COMMIT")
            if rows:
                self._write_high_water(seq, prev)
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.debug("rollback failed", exc_info=True)
            raise
        self._unreported.clear()
        for counts in refused.values():
            self._dropped.update(counts)
        return seqs

    def _seal(
        self, draft: EventDraft, rank: int, seq: int, prev_mac: bytes, event_id: str, nonce: bytes
    ) -> tuple[Any, ...] | None:
        """One row for `draft` at `seq` (mac at index 7, ciphertext at 8); None when data is too big."""
        return self._cipher.seal_draft(draft, rank, seq, prev_mac, event_id, nonce)

    def _used_bytes(self, conn: sqlite3.Connection) -> int:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * page_size)

    def _purge_for_quota(self, conn: sqlite3.Connection, used: int) -> int:
        """Delete the oldest sent rows until usage is estimated under PURGE_TARGET; new usage."""
        need = used - self._quota * PURGE_TARGET
        freed, cutoff = 0, None
        for seq, size in conn.execute("SELECT seq, size FROM events WHERE state = 1 ORDER BY seq"):
            freed += size + 28 + ROW_OVERHEAD  # 28: GCM tag and JSON framing
            cutoff = seq
            if freed >= need:
                break
        if cutoff is None:
            return used
        deleted = conn.execute("DELETE FROM events WHERE state = 1 AND seq <= ?", (cutoff,)).rowcount
        log.warning("outbox near its quota: purged %s sent events from local history", deleted)
        return min(used, self._used_bytes(conn))

    # --- resynchronising with the endpoint ------------------------------------------------------

    def resync(self, endpoint_seq: int, endpoint_mac: str, *, force: bool = False) -> ResyncReport | None:
        """Continue after the endpoint's chain head when this outbox no longer matches it; None when it does.

        It does not match when the head is below the endpoint's (the outbox was lost or replaced and counts
        from 1 again), when the event this outbox holds at `endpoint_seq` has another mac, or (`force`, after a
        409) when a queued event sits at a seq the endpoint already holds. Then, in one transaction, every
        queued event is written again, in order, after `base`: the endpoint's head when no seq above it was
        used here except by queued events (no gap, no seq reused), else this outbox's own head. The first new
        row is an `agent.loss` record (reason `seq_resync`) that makes the jump explicit; it chains from
        `endpoint_mac` when `base` is the endpoint's head, so the endpoint's chain check holds across it.
        Events keep their id, time and content; only seq and mac change.
        """
        if endpoint_seq <= 0 or len(endpoint_mac) != 64:
            return None
        bytes.fromhex(endpoint_mac)  # ValueError for a malformed mac, before touching the file
        return self._guarded(lambda: self._resync(endpoint_seq, endpoint_mac.lower(), force))

    def _resync(self, endpoint_seq: int, endpoint_mac: str, force: bool) -> ResyncReport | None:
        conn = self._db()
        # Runs after every heartbeat: a few indexed reads decide, without the write lock; the decision is taken
        # again inside the write transaction before anything is rewritten.
        if _diverged(conn, endpoint_seq, endpoint_mac, force=force) is None:
            return None
        conn.execute("BEGIN IMMEDIATE")
        try:
            if _ident(self._path) != self._file:
                raise _FileSwapped
            head = _diverged(conn, endpoint_seq, endpoint_mac, force=force)
            if head is None:
                conn.execute("ROLLBACK")
                return None
            head_seq, head_mac = head
            queued = conn.execute(
                f"SELECT {_READ_COLS}, severity, ts, size FROM events WHERE state = 0 ORDER BY seq"  # noqa: S608
            ).fetchall()
            report, top = self._rewrite_after(conn, endpoint_seq, endpoint_mac, head_seq, head_mac, queued)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.debug("rollback failed", exc_info=True)
            raise
        self._write_high_water(*top)
        log.warning(
            "outbox resynchronised with the endpoint (its head %d, ours %d): %d queued events continue after %d",
            endpoint_seq,
            head_seq,
            len(report.moved),
            report.base,
        )
        return report

    def _rewrite_after(
        self,
        conn: sqlite3.Connection,
        endpoint_seq: int,
        endpoint_mac: str,
        head_seq: int,
        head_mac: str,
        queued: list[tuple[Any, ...]],
    ) -> tuple[ResyncReport, tuple[int, bytes]]:
        """Inside `_resync`'s transaction: delete the queued rows and write the loss record and them again."""
        readable: list[tuple[int, str, int, float, dict[str, Any]]] = []
        unreadable: list[tuple[int, str]] = []
        for seq, kind, key_id, nonce, mac, ct, severity, ts, _size in queued:
            try:
                body = self._cipher.open_body(
                    key_id=str(key_id), seq=seq, kind=str(kind), mac=bytes(mac), nonce=bytes(nonce), ct=bytes(ct)
                )
            except RowUnreadable:
                unreadable.append((int(seq), str(kind)))
                continue
            readable.append((int(seq), str(kind), int(severity), float(ts), dict(body)))
        if unreadable:
            conn.executemany(
                "UPDATE events SET state = 2, dead_reason = 'undecryptable' WHERE seq = ?",
                [(seq,) for seq, _ in unreadable],
            )
        conn.executemany("DELETE FROM events WHERE seq = ?", [(row[0],) for row in readable])
        left_above = int(conn.execute("SELECT count(*) FROM events WHERE seq > ?", (endpoint_seq,)).fetchone()[0])
        moved_above = sum(1 for row in readable if row[0] > endpoint_seq)
        if head_seq <= endpoint_seq or (left_above == 0 and moved_above == head_seq - endpoint_seq):
            # Seqs above the endpoint's head never reached it (it holds none above), and every one used here
            # was a queued event written again now: continuing from its head leaves no gap and reuses nothing.
            base, prev = endpoint_seq, bytes.fromhex(endpoint_mac)
        else:
            base, prev = head_seq, bytes.fromhex(head_mac)
        data: dict[str, Any] = {
            "reason": "seq_resync",
            "endpoint_last_seq": endpoint_seq,
            "local_head": head_seq,
            "resent": len(readable),
        }
        if head_seq < endpoint_seq:
            # Seqs the endpoint holds from this device that this outbox has no record of (a lost or replaced
            # outbox); whatever that outbox still held beyond them is unknown.
            data |= {"first_seq": head_seq + 1, "last_seq": endpoint_seq}
        elif base > endpoint_seq:
            data |= {
                "first_seq": endpoint_seq + 1,
                "last_seq": base,
                "detail": "these seqs never reach the endpoint",
            }
        if unreadable:
            counts = Counter(kind for _, kind in unreadable)
            data |= {"dropped": dict(sorted(counts.items())), "count": len(unreadable)}
        loss = self._loss_draft(data)
        ids = event_ids(1)
        nonces = os.urandom(NONCE_BYTES * (len(readable) + 1))
        seq = base + 1
        row = self._seal(loss, _RANKS[loss.severity], seq, prev, ids[0], nonces[:NONCE_BYTES])
        if row is None:  # a loss record is small; only a bug gets here
            raise RuntimeError("loss record does not fit an event")
        rows = [row]
        prev = row[7]
        loss_seq = seq
        moved: dict[int, int] = {}
        for n, (old_seq, kind, severity, ts, event) in enumerate(readable, start=1):
            seq += 1
            event.pop("mac", None)
            event["seq"] = seq
            plaintext = canonical(event)
            mac = chain_mac(self._chain_key, prev, seq, plaintext)
            nonce = nonces[NONCE_BYTES * n : NONCE_BYTES * (n + 1)]
            ct = self._cipher.seal(seq, kind, mac, nonce, plaintext)
            rows.append((seq, kind, severity, ts, len(plaintext), self._key_id, nonce, mac, ct))
            moved[old_seq] = seq
            prev = mac
        conn.executemany(_INSERT, rows)
        outbox_schema.write_head(conn, seq, prev.hex())
        report = ResyncReport(endpoint_seq=endpoint_seq, local_head=head_seq, base=base, loss_seq=loss_seq, moved=moved)
        return report, (seq, prev)

    # --- reading and acknowledging -------------------------------------------------------------

    def pending(self, *, limit: int = 500, max_bytes: int = 1_000_000) -> list[dict[str, Any]]:
        """Oldest unsent events in seq order as JSON-mode dicts (all Event fields but device_id)."""
        return self._guarded(lambda: self._pending(limit, max_bytes))

    def _pending(self, limit: int, max_bytes: int) -> list[dict[str, Any]]:
        while True:
            conn = self._db()
            out: list[dict[str, Any]] = []
            bad: list[tuple[int, str]] = []
            total = 0
            cursor = conn.execute(
                f"SELECT {_READ_COLS}, size FROM events WHERE state = 0 ORDER BY seq LIMIT ?",  # noqa: S608
                (max(1, limit),),
            )
            for seq, kind, key_id, nonce, mac, ct, size in cursor.fetchall():
                cost = int(size) + WIRE_OVERHEAD
                if out and total + cost > max_bytes:
                    break
                try:
                    body = self._cipher.open_body(
                        key_id=str(key_id), seq=seq, kind=str(kind), mac=bytes(mac), nonce=bytes(nonce), ct=bytes(ct)
                    )
                except RowUnreadable:
                    bad.append((seq, str(kind)))
                    continue
                out.append(body)
                total += cost
            if bad:
                self._set_aside_unreadable(bad)
            if out or not bad:
                return out

    def pending_wire(self, *, limit: int = 500, max_bytes: int = 1_000_000, after: int = 0) -> list[WireRow]:
        """What `pending` returns, as the uploader sends it: each row's chained plaintext, not parsed into a dict.

        Only rows above seq `after` (the uploader reads the next batch while the previous one is in flight).
        """
        return self._guarded(lambda: self._pending_wire(limit, max_bytes, after))

    def _pending_wire(self, limit: int, max_bytes: int, after: int) -> list[WireRow]:
        while True:
            out: list[WireRow] = []
            bad: list[tuple[int, str]] = []
            total = 0
            rows = (
                self._db()
                .execute(
                    "SELECT seq, kind, key_id, nonce, mac, ct, size FROM events"
                    " WHERE state = 0 AND seq > ? ORDER BY seq LIMIT ?",
                    (after, max(1, limit)),
                )
                .fetchall()
            )
            open_row = self._cipher.open
            for seq, kind, key_id, nonce, mac, ct, size in rows:
                cost = size + WIRE_OVERHEAD
                if out and total + cost > max_bytes:
                    break
                try:
                    plaintext = open_row(key_id=key_id, seq=seq, kind=kind, mac=mac, nonce=nonce, ct=ct)
                    out.append(WireRow(seq, kind, mac.hex(), wire_plaintext(plaintext, seq)))
                except RowUnreadable:
                    bad.append((seq, str(kind)))
                    continue
                total += cost
            if bad:
                self._set_aside_unreadable(bad)
            if out or not bad:
                return out

    def _set_aside_unreadable(self, bad: list[tuple[int, str]]) -> None:
        """Rows that fail authentication leave the queue as dead letters, reported as lost."""
        log.error("outbox: %s rows fail to decrypt; reporting them as lost", len(bad))
        counts = Counter(kind for _, kind in bad)
        data = {
            "reason": "corruption",
            "dropped": dict(sorted(counts.items())),
            "count": len(bad),
            "lost_seqs": [seq for seq, _ in bad][:200],
            "detail": "rows failed authentication",
        }

        def dead(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE events SET state = 2, dead_reason = 'undecryptable' WHERE seq = ? AND state = 0",
                [(seq,) for seq, _ in bad],
            )

        self._commit_group([], extra=[self._loss_draft(data)], before=dead)

    def mark_sent(self, seqs: Sequence[int]) -> None:
        """Acknowledged by the endpoint: leave the queue, stay in local history.

        One range update per run of consecutive seqs (a drained batch is one run).
        """
        now = self._clock().timestamp()
        params = [(now, first, last) for first, last in _runs(seqs)]
        self._guarded(
            lambda: self._update(
                "UPDATE events SET state = 1, sent_at = ? WHERE seq BETWEEN ? AND ? AND state <> 1", params
            )
        )

    def dead_letter(self, seqs: Sequence[int], reason: str) -> None:
        """Refused for good by the endpoint: leave the queue, kept with the reason."""
        params = [(reason, int(seq)) for seq in seqs]
        self._guarded(
            lambda: self._update("UPDATE events SET state = 2, dead_reason = ? WHERE seq = ? AND state = 0", params)
        )

    def _update(self, sql: str, params: list[tuple[Any, ...]]) -> None:
        if not params:
            return
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def dead_letters(self) -> list[tuple[int, str]]:
        rows = self._guarded(
            lambda: self._db().execute("SELECT seq, dead_reason FROM events WHERE state = 2 ORDER BY seq").fetchall()
        )
        return [(int(seq), str(reason or "")) for seq, reason in rows]

    def depth(self) -> int:
        """Events waiting to be sent (not sent, not dead-lettered)."""
        row = self._guarded(lambda: self._db().execute("SELECT count(*) FROM events WHERE state = 0").fetchone())
        return int(row[0])

    def oldest_unsent_ts(self) -> datetime | None:
        """Observation time of the first event still queued (in seq order)."""
        row = self._guarded(
            lambda: self._db().execute("SELECT ts FROM events WHERE state = 0 ORDER BY seq LIMIT 1").fetchone()
        )
        return None if row is None else datetime.fromtimestamp(float(row[0]), UTC)

    def last_seq(self) -> int:
        return self._guarded(lambda: outbox_schema.read_head(self._db())[0])

    def history(self, *, limit: int = 200) -> list[dict[str, Any]]:
        """Newest first, sent or not (with a "sent" flag): what was reported about the person at the desk."""
        rows = self._guarded(
            lambda: (
                self._db()
                .execute(f"SELECT {_READ_COLS}, state FROM events ORDER BY seq DESC LIMIT ?", (limit,))  # noqa: S608
                .fetchall()
            )
        )
        out: list[dict[str, Any]] = []
        for seq, kind, key_id, nonce, mac, ct, state in rows:
            try:
                body = self._cipher.open_body(
                    key_id=str(key_id), seq=seq, kind=str(kind), mac=bytes(mac), nonce=bytes(nonce), ct=bytes(ct)
                )
            except RowUnreadable:
                continue  # reported as lost when the uploader reaches it
            body["sent"] = state == STATE_SENT
            out.append(body)
        return out

    def purge_history(self, older_than: datetime) -> int:
        """Delete sent events observed before `older_than`; unsent and dead-lettered ones stay."""
        cutoff = utc(older_than).timestamp()

        def purge() -> int:
            conn = self._db()
            conn.execute("BEGIN IMMEDIATE")
            try:
                count = conn.execute("DELETE FROM events WHERE state = 1 AND ts < ?", (cutoff,)).rowcount
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return int(count)

        return self._guarded(purge)

    # --- quota and losses ------------------------------------------------------------------------

    def set_quota(self, quota_bytes: int) -> None:
        if quota_bytes <= 0:
            raise ValueError("quota must be positive")
        with self._lock:
            self._quota = quota_bytes

    @property
    def quota_bytes(self) -> int:
        return self._quota

    @property
    def loss_counts(self) -> dict[str, int]:
        """Drafts this instance refused since it opened, by kind (all reasons)."""
        with self._lock:
            return dict(self._dropped)

    @property
    def unreported_losses(self) -> dict[str, dict[str, int]]:
        """Refusals not yet written as an `agent.loss` event (e.g. while the disk is full), by reason."""
        with self._lock:
            return {reason: dict(counts) for reason, counts in self._unreported.items() if counts}

    def used_bytes(self) -> int:
        """Bytes of the file in use (page_count - freelist_count) * page_size; what the quota compares."""
        return self._guarded(lambda: self._used_bytes(self._db()))

    def close(self) -> None:
        """Close; the last instance in the process to close a verified file leaves a clean-stop marker."""
        with self._lock:
            self._close_conn()
            if self._high_water_fd is not None:
                os.close(self._high_water_fd)
                self._high_water_fd = None
            if not self._counted:
                return
            self._counted = False
            with _path_lock(self._path):
                use = _use(self._path)
                use.open = max(0, use.open - 1)
                if use.open == 0 and use.verified and _ident(self._path) == self._file:
                    _write_clean_marker(self._path)

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _diverged(conn: sqlite3.Connection, endpoint_seq: int, endpoint_mac: str, *, force: bool) -> tuple[int, str] | None:
    """The outbox head when it no longer matches the endpoint's (see `Outbox.resync`), else None."""
    head_seq, head_mac = outbox_schema.read_head(conn)
    if head_seq < endpoint_seq:
        return head_seq, head_mac
    held = conn.execute("SELECT mac FROM events WHERE seq = ?", (endpoint_seq,)).fetchone()
    if held is not None and bytes(held[0]).hex() != endpoint_mac:
        return head_seq, head_mac
    if force:
        queued_below = conn.execute(
            "SELECT 1 FROM events WHERE state = 0 AND seq <= ? LIMIT 1", (endpoint_seq,)
        ).fetchone()
        if queued_below is not None:
            return head_seq, head_mac
    return None


def _write_at_start(fd: int, data: bytes) -> None:
    if sys.platform == "win32":
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
        os.fsync(fd)
    elif sys.platform == "darwin":
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    else:
        os.pwrite(fd, data, 0)
        os.fdatasync(fd)


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _runs(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Distinct seqs as inclusive (first, last) ranges of consecutive values."""
    runs: list[tuple[int, int]] = []
    for seq in sorted({int(s) for s in seqs}):
        if runs and runs[-1][1] == seq - 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def read_depth(path: Path) -> int:
    """Queue depth without opening an Outbox (read-only; for `deskwarden status`). 0 if there is no file."""
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    try:
        has = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone()
        if has is None:
            return 0
        return int(conn.execute("SELECT count(*) FROM events WHERE state = 0").fetchone()[0])
    finally:
        conn.close()
