"""Upgrades keep the outbox: a file in the shipped v1 layout with events still queued is opened by the current code
(migrations run, including a simulated next version) and delivered; a file from a newer DeskWarden is refused
with a clear message and left untouched."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_app.core import outbox_schema, paths
from agent_app.core.outbox import Outbox, OutboxTooNew
from agent_app.core.uploader import Uploader
from policy_client.schema import GENESIS_MAC, EventDraft, EventKind, Severity
from policy_client.secrets import OutboxKeys, key_id_for
from policy_client.transport import Transport
from tests.integration.faulty_server import FaultyServer

pytestmark = pytest.mark.integration

DATA_KEY = bytes(range(32))
KEYS = OutboxKeys(key_id=key_id_for(DATA_KEY), data_key=DATA_KEY, chain_key=bytes(range(32, 64)))
CREDENTIAL = "cred-0123456789abcdef"
QUEUED = 25
SENT = 5

# The v1 layout exactly as DeskWarden 0.1 shipped it. Frozen here on purpose: a shipped migration must never
# change, so if outbox_schema._v1 is edited this fixture still describes the files that exist in the field.
V1_DDL = (
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, severity INTEGER NOT NULL, ts REAL NOT NULL,
        size INTEGER NOT NULL, state INTEGER NOT NULL DEFAULT 0, sent_at REAL, dead_reason TEXT,
        key_id TEXT NOT NULL, nonce BLOB NOT NULL, mac BLOB NOT NULL, ct BLOB NOT NULL)""",
    "CREATE INDEX events_pending ON events(seq) WHERE state = 0",
    "CREATE INDEX events_sent ON events(seq) WHERE state = 1",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
V1_COLUMNS = "seq, kind, severity, ts, size, state, sent_at, dead_reason, key_id, nonce, mac, ct"


def _sealed_rows(scratch: Path) -> tuple[list[tuple[object, ...]], tuple[int, str]]:
    """Rows sealed by the real cipher and chain (written by the current Outbox, read back raw)."""
    outbox = Outbox(scratch, keys=KEYS)
    drafts = [
        EventDraft(kind=EventKind.usb_mounted, severity=Severity.medium, data={"n": i, "label": f"stick-{i}"})
        for i in range(SENT + QUEUED)
    ]
    seqs = outbox.append(drafts)
    outbox.mark_sent(seqs[:SENT])
    outbox.close()
    conn = sqlite3.connect(scratch)
    try:
        rows = conn.execute(f"SELECT {V1_COLUMNS} FROM events ORDER BY seq").fetchall()  # noqa: S608
        meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('head_seq', 'head_mac')").fetchall())
    finally:
        conn.close()
    return rows, (int(meta["head_seq"]), str(meta["head_mac"]))


def write_v1_outbox(path: Path, scratch: Path) -> None:
    rows, (head_seq, head_mac) = _sealed_rows(scratch)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN")
        for ddl in V1_DDL:
            conn.execute(ddl)
        conn.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?)",
            [("schema_version", "1"), ("head_seq", str(head_seq)), ("head_mac", head_mac or GENESIS_MAC)],
        )
        conn.executemany(f"INSERT INTO events({V1_COLUMNS}) VALUES ({', '.join('?' * 12)})", rows)  # noqa: S608
        conn.execute("COMMIT")
    finally:
        conn.close()


def _v2_adds_a_column(conn: sqlite3.Connection) -> None:
    """What a next release's migration could look like: additive, defaulted."""
    conn.execute("ALTER TABLE events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")


@pytest.fixture
def v1_file(tmp_path: Path) -> Path:
    path = tmp_path / "home" / "outbox.db"
    path.parent.mkdir()
    write_v1_outbox(path, tmp_path / "scratch.db")
    return path


@pytest.fixture
def server() -> Iterator[FaultyServer]:
    with FaultyServer(credential=CREDENTIAL) as srv:
        yield srv


def _deliver(path: Path, server: FaultyServer) -> Uploader:
    uploader = Uploader(
        outbox_factory=lambda: Outbox(path, keys=KEYS),
        transport=Transport(server.url, credential=CREDENTIAL),
        device_id="dev-test-1",
        record=lambda draft: None,
    )
    uploader.start()
    return uploader


def _schema_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    finally:
        conn.close()


def test_v1_outbox_with_queued_events_is_delivered_by_the_current_code(v1_file: Path, server: FaultyServer) -> None:
    outbox = Outbox(v1_file, keys=KEYS)
    assert outbox.depth() == QUEUED
    outbox.close()

    uploader = _deliver(v1_file, server)
    try:
        assert server.wait_until(lambda s: len(s.accepted_seqs()) >= QUEUED, timeout=15)
    finally:
        uploader.stop()

    assert server.accepted_seqs() == list(range(SENT + 1, SENT + QUEUED + 1))
    assert [e["data"]["n"] for _, e in sorted(server.accepted_events().items())] == list(range(SENT, SENT + QUEUED))
    assert _schema_version(v1_file) == outbox_schema.current_version()


def test_upgrade_to_a_newer_schema_migrates_keeps_the_chain_and_delivers(
    v1_file: Path, server: FaultyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_schema, "MIGRATIONS", [*outbox_schema.MIGRATIONS, _v2_adds_a_column])
    known = outbox_schema.current_version()
    assert known >= 2  # whatever the current version, one more step is simulated

    outbox = Outbox(v1_file, keys=KEYS)
    new_seqs = outbox.append([EventDraft(kind=EventKind.agent_started, data={"after": "upgrade"})])
    outbox.close()
    assert new_seqs == [SENT + QUEUED + 1]  # the chain head survived the migration
    assert _schema_version(v1_file) == known

    uploader = _deliver(v1_file, server)
    try:
        assert server.wait_until(lambda s: len(s.accepted_seqs()) >= QUEUED + 1, timeout=15)
    finally:
        uploader.stop()
    assert server.accepted_seqs() == list(range(SENT + 1, SENT + QUEUED + 2))


def test_outbox_from_a_newer_deskwarden_is_refused_and_untouched(v1_file: Path) -> None:
    conn = sqlite3.connect(v1_file, isolation_level=None)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(outbox_schema.current_version() + 1),))
    conn.close()
    before = hashlib.sha256(v1_file.read_bytes()).hexdigest()

    with pytest.raises(OutboxTooNew, match="newer than this agent understands") as caught:
        Outbox(v1_file, keys=KEYS)

    assert caught.value.found == outbox_schema.current_version() + 1
    assert hashlib.sha256(v1_file.read_bytes()).hexdigest() == before
    assert not list(v1_file.parent.glob("*corrupt*"))  # refused, not "recovered" into a fresh file


@pytest.mark.slow
def test_agent_refuses_to_start_on_a_newer_outbox_with_a_clear_message(v1_file: Path, tmp_path: Path) -> None:
    conn = sqlite3.connect(v1_file, isolation_level=None)
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.close()
    env = {
        **os.environ,
        paths.ENV_HOME: str(v1_file.parent),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "QT_QPA_PLATFORM": "offscreen",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent_app",
            "service",
            "--state-dir",
            str(v1_file.parent),
            "--socket",
            str(tmp_path / "run" / "service.sock"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "schema version 999, newer than this agent understands" in done.stderr


def service_argv(home: Path, tmp_path: Path) -> list[str]:
    """`deskwarden service` over an old per-user state directory (the engine that opens the outbox)."""
    argv = [sys.executable, "-m", "agent_app", "service", "--state-dir", str(home)]
    return [*argv, "--socket", str(tmp_path / "run" / "service.sock")]
