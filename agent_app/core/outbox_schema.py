"""Outbox file layout and its forward migrations (SQLite DDL, schema version, chain head in `meta`).

Called by whichever thread opens an `Outbox`, inside the open lock of `outbox.py`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from policy_client.schema import GENESIS_MAC

STATE_PENDING = 0
STATE_SENT = 1
STATE_DEAD = 2

CORRUPTION_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})

Migration = Callable[[sqlite3.Connection], None]


class OutboxTooNew(RuntimeError):
    """The outbox file was written by a newer DeskWarden; this version must not touch it."""

    def __init__(self, path: Path, found: int, known: int) -> None:
        super().__init__(
            f"outbox {path} has schema version {found}, newer than this agent understands ({known}); "
            "install the newer DeskWarden again or move the file aside"
        )
        self.path = path
        self.found = found
        self.known = known


def _v1(conn: sqlite3.Connection) -> None:
    """Version 1: events (clear columns for routing, payload sealed with AES-GCM) and meta."""
    conn.execute(
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY,      -- gap-free per device; the endpoint's dedup key
            kind TEXT NOT NULL,
            severity INTEGER NOT NULL,    -- Severity.rank, for quota decisions without decrypting
            ts REAL NOT NULL,             -- observation time, unix seconds
            size INTEGER NOT NULL,        -- plaintext JSON bytes
            state INTEGER NOT NULL DEFAULT 0,  -- 0 pending, 1 sent, 2 dead letter
            sent_at REAL,
            dead_reason TEXT,
            key_id TEXT NOT NULL,
            nonce BLOB NOT NULL,
            mac BLOB NOT NULL,            -- chain link, 32 bytes
            ct BLOB NOT NULL              -- AES-GCM(plaintext JSON), tag included
        )"""
    )
    conn.execute("CREATE INDEX events_pending ON events(seq) WHERE state = 0")
    conn.execute("CREATE INDEX events_sent ON events(seq) WHERE state = 1")
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.executemany(
        "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
        [("head_seq", "0"), ("head_mac", GENESIS_MAC)],
    )


MIGRATIONS: list[Migration] = [_v1]
"""MIGRATIONS[i] takes a file from schema version i to i + 1. Append only; never edit a shipped one."""


def current_version() -> int:
    return len(MIGRATIONS)


def read_version(conn: sqlite3.Connection) -> int:
    """Schema version of an open file; 0 for a new (empty) database."""
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if has_meta is None:
        other = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' LIMIT 1").fetchone()
        if other is not None:
            # Tables but no meta: not an outbox we wrote. Treated like a damaged file.
            raise sqlite3.DatabaseError(f"unknown outbox layout (table {other[0]!r} without meta)")
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row is not None else 0


def migrate(conn: sqlite3.Connection, path: Path, *, migrations: Sequence[Migration] | None = None) -> int:
    """Bring the file to the newest version this code knows, one transaction per step."""
    steps = MIGRATIONS if migrations is None else migrations
    known = len(steps)
    version = read_version(conn)
    if version > known:
        raise OutboxTooNew(path, version, known)
    while version < known:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = read_version(conn)  # another opener may have migrated meanwhile
            if version > known:
                raise OutboxTooNew(path, version, known)
            if version < known:
                steps[version](conn)
                version += 1
                conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(version),),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return version


def read_head(conn: sqlite3.Connection) -> tuple[int, str]:
    """Chain head (last seq, last mac) from meta, never behind the rows actually present."""
    values = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('head_seq', 'head_mac')").fetchall())
    head_seq = int(values.get("head_seq", 0))
    head_mac = str(values.get("head_mac", GENESIS_MAC))
    top = conn.execute("SELECT seq, mac FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    if top is not None and top[0] > head_seq:
        head_seq, head_mac = int(top[0]), bytes(top[1]).hex()
    return head_seq, head_mac


def write_head(conn: sqlite3.Connection, seq: int, mac: str) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
        [("head_seq", str(seq)), ("head_mac", mac)],
    )
