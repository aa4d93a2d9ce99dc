"""Outbox: every public method, encryption, the HMAC chain, quota, full disk and migrations."""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from agent_app.core import outbox_schema
from agent_app.core.outbox import Outbox, OutboxTooNew, read_depth
from agent_app.core.outbox_crypto import canonical, event_ids, ts_json
from policy_client.schema import (
    GENESIS_MAC,
    MAX_DATA_BYTES,
    EventDraft,
    EventKind,
    RuleRef,
    Severity,
    event_digest,
    verify_link,
)
from policy_client.schema import Event as WireEvent
from policy_client.secrets import OutboxKeys, key_id_for


def make_keys() -> OutboxKeys:
    data_key = os.urandom(32)
    return OutboxKeys(key_id=key_id_for(data_key), data_key=data_key, chain_key=os.urandom(32))


def draft(
    i: int = 0, *, severity: Severity = Severity.info, kind: EventKind = EventKind.usb_mounted, **data: Any
) -> EventDraft:
    return EventDraft(kind=kind, severity=severity, user="agent01", data={"n": i, **data})


def verify_chain(keys: OutboxKeys, bodies: list[dict[str, Any]]) -> None:
    prev = GENESIS_MAC
    for expected_seq, body in enumerate(bodies, start=1):
        clean = {k: v for k, v in body.items() if k != "sent"}
        event = WireEvent.model_validate({**clean, "device_id": "dev-1"})
        assert event.seq == expected_seq
        assert verify_link(keys.chain_key, prev, event), f"chain broken at seq {event.seq}"
        prev = event.mac


def all_events(box: Outbox) -> list[dict[str, Any]]:
    return list(reversed(box.history(limit=1_000_000)))


@pytest.fixture
def keys() -> OutboxKeys:
    return make_keys()


@pytest.fixture
def box(tmp_path: Path, keys: OutboxKeys) -> Iterator[Outbox]:
    outbox = Outbox(tmp_path / "outbox.db", keys=keys)
    yield outbox
    outbox.close()


def test_append_assigns_gap_free_seqs_and_pending_returns_wire_fields(box: Outbox, keys: OutboxKeys) -> None:
    assert box.append([draft(i) for i in range(3)]) == [1, 2, 3]
    assert box.append([draft(3, severity=Severity.high)]) == [4]
    assert box.last_seq() == 4
    events = box.pending()
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    assert set(events[0]) == {"id", "seq", "ts", "kind", "severity", "user", "action", "rule", "data", "mac"}
    assert events[3]["severity"] == "high"
    assert events[0]["data"] == {"n": 0}
    ids = [uuid.UUID(e["id"]) for e in events]
    assert all(i.version == 7 for i in ids)
    assert len(set(ids)) == 4
    verify_chain(keys, events)


def test_empty_append_writes_nothing(box: Outbox) -> None:
    assert box.append([]) == []
    assert box.last_seq() == 0
    assert box.depth() == 0
    assert box.pending() == []
    assert box.oldest_unsent_ts() is None


def test_chain_continues_across_reopen(tmp_path: Path, keys: OutboxKeys) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, keys=keys) as first:
        first.append([draft(i) for i in range(5)])
    with Outbox(path, keys=keys) as second:
        assert second.append([draft(5)]) == [6]
        verify_chain(keys, all_events(second))


def test_rule_and_times_survive_and_are_normalised_to_utc(box: Outbox, keys: OutboxKeys) -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    drafts = [
        EventDraft(
            kind=EventKind.usb_blocked,
            ts=datetime(2026, 1, 5, 14, 30, tzinfo=ist),
            rule=RuleRef(id="usb.block", policy_version=3),
        ),
        EventDraft(kind=EventKind.capture_hotkey, ts=datetime(2026, 1, 5, 9, 0, 0, 1)),  # naive: taken as UTC
    ]
    box.append(drafts)
    first, second = box.pending()
    assert first["ts"] == "2026-01-05T09:00:00Z"
    assert first["rule"] == {"id": "usb.block", "policy_version": 3}
    assert second["ts"] == "2026-01-05T09:00:00.000001Z"
    assert box.oldest_unsent_ts() == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    verify_chain(keys, [first, second])


def test_plaintext_digest_is_the_schema_digest() -> None:
    body = {
        "id": "x",
        "seq": 1,
        "ts": "t",
        "kind": "usb.mounted",
        "severity": "info",
        "user": "é",
        "action": "observed",
        "rule": None,
        "data": {"b": 1, "a": [1.5, None]},
    }
    import hashlib

    assert hashlib.sha256(canonical(body)).digest() == event_digest(body)


@settings(max_examples=200)
@given(st.datetimes(timezones=st.just(UTC)))
def test_ts_json_matches_pydantic(moment: datetime) -> None:
    assert ts_json(moment) == TypeAdapter(datetime).dump_python(moment, mode="json")


def test_event_ids_are_version_7_and_time_ordered() -> None:
    ids = [uuid.UUID(i) for i in event_ids(50)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == 50
    later = uuid.UUID(event_ids(1)[0])
    assert later.int >> 80 >= ids[0].int >> 80


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers(-(2**53), 2**53)
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
            max_leaves=8,
        ),
        max_size=5,
    ),
    st.text(max_size=40),
)
def test_chain_verifies_for_arbitrary_data(
    tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any], user: str
) -> None:
    keys = make_keys()
    with Outbox(tmp_path_factory.mktemp("ob") / "o.db", keys=keys) as outbox:
        outbox.append([EventDraft(kind=EventKind.download_detected, user=user, data=data)])
        verify_chain(keys, outbox.pending())


def test_ciphertext_does_not_contain_plaintext(tmp_path: Path, keys: OutboxKeys) -> None:
    path = tmp_path / "outbox.db"
    marker = "XXXX-1111-MARKER-" + uuid.uuid4().hex
    outbox = Outbox(path, keys=keys)
    outbox.append([draft(1, sample=marker), EventDraft(kind=EventKind.clipboard_sensitive, user=marker)])
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert marker.encode() not in raw
    assert b"agent01" not in raw
    assert outbox.pending()[0]["data"]["sample"] == marker
    outbox.close()


def _flip_ct_byte(path: Path, seq: int) -> None:
    conn = sqlite3.connect(path)
    ct = bytearray(conn.execute("SELECT ct FROM events WHERE seq = ?", (seq,)).fetchone()[0])
    ct[len(ct) // 2] ^= 0x01
    conn.execute("UPDATE events SET ct = ? WHERE seq = ?", (bytes(ct), seq))
    conn.commit()
    conn.close()


def test_flipped_byte_makes_that_row_lost_not_a_crash(tmp_path: Path, keys: OutboxKeys) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, keys=keys)
    outbox.append([draft(i) for i in range(5)])
    _flip_ct_byte(path, 3)
    events = outbox.pending()
    seqs = [e["seq"] for e in events]
    assert 3 not in seqs
    assert seqs == [1, 2, 4, 5]
    loss = outbox.pending()[-1]  # the loss record is written after the batch that found the damage
    assert loss["kind"] == "agent.loss"
    assert loss["severity"] == "high"
    assert loss["data"]["reason"] == "corruption"
    assert loss["data"]["dropped"] == {"usb.mounted": 1}
    assert loss["data"]["count"] == 1
    assert outbox.dead_letters() == [(3, "undecryptable")]
    assert all(e["seq"] != 3 for e in outbox.history())
    outbox.close()


def test_mac_column_is_authenticated(tmp_path: Path, keys: OutboxKeys) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, keys=keys) as outbox:
        outbox.append([draft(1), draft(2)])
        conn = sqlite3.connect(path)
        conn.execute("UPDATE events SET mac = ? WHERE seq = 1", (bytes(32),))
        conn.commit()
        conn.close()
        assert [e["seq"] for e in outbox.pending() if e["kind"] != "agent.loss"] == [2]


def test_mark_sent_depth_oldest_and_history(box: Outbox) -> None:
    box.append([EventDraft(kind=EventKind.usb_mounted, ts=datetime(2026, 1, 1, 8, i, tzinfo=UTC)) for i in range(5)])
    assert box.depth() == 5
    box.mark_sent([1, 2])
    assert box.depth() == 3
    assert [e["seq"] for e in box.pending()] == [3, 4, 5]
    assert box.oldest_unsent_ts() == datetime(2026, 1, 1, 8, 2, tzinfo=UTC)
    history = box.history(limit=10)
    assert [(e["seq"], e["sent"]) for e in history] == [(5, False), (4, False), (3, False), (2, True), (1, True)]
    assert [e["seq"] for e in box.history(limit=2)] == [5, 4]
    box.mark_sent([1])  # acknowledging twice is harmless
    assert box.depth() == 3


def test_dead_letter_moves_out_of_pending_and_is_kept(box: Outbox) -> None:
    box.append([draft(i) for i in range(4)])
    box.dead_letter([2, 3], "400: schema rejected")
    assert [e["seq"] for e in box.pending()] == [1, 4]
    assert box.depth() == 2
    assert box.dead_letters() == [(2, "400: schema rejected"), (3, "400: schema rejected")]
    assert len(box.history()) == 4


def test_purge_history_deletes_only_old_sent_rows(box: Outbox) -> None:
    old = datetime(2025, 1, 1, tzinfo=UTC)
    new = datetime(2026, 6, 1, tzinfo=UTC)
    box.append([EventDraft(kind=EventKind.usb_mounted, ts=t) for t in (old, old, old, new)])
    box.mark_sent([1, 2, 4])
    assert box.purge_history(datetime(2026, 1, 1, tzinfo=UTC)) == 2
    assert sorted(e["seq"] for e in box.history()) == [3, 4]
    assert box.depth() == 1
    assert box.append([draft()]) == [5]


def test_pending_limit_and_max_bytes(box: Outbox) -> None:
    box.append([draft(i, pad="x" * 1000) for i in range(10)])
    assert [e["seq"] for e in box.pending(limit=3)] == [1, 2, 3]
    assert len(box.pending(max_bytes=3000)) == 2  # ~1.3 kB each on the wire
    assert [e["seq"] for e in box.pending(max_bytes=10)] == [1]  # always at least one


def test_read_depth(tmp_path: Path, box: Outbox) -> None:
    assert read_depth(tmp_path / "missing.db") == 0
    box.append([draft(i) for i in range(7)])
    box.mark_sent([1])
    assert read_depth(tmp_path / "outbox.db") == 6


def test_two_instances_on_one_file_keep_one_chain(tmp_path: Path, keys: OutboxKeys) -> None:
    path = tmp_path / "outbox.db"
    writer = Outbox(path, keys=keys)
    reader = Outbox(path, keys=keys, check=False)
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(50):
                writer.append([draft(i), draft(i)])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    sent = 0
    while not done.is_set() or reader.depth():
        batch = reader.pending(limit=7)
        reader.mark_sent([e["seq"] for e in batch])
        sent += len(batch)
    thread.join(5)
    reader.append([draft(99)])  # the reader may write too (loss records); the chain stays one
    assert not errors
    assert sent == 100
    verify_chain(keys, all_events(writer))
    writer.close()
    reader.close()


def test_oversized_data_is_refused_and_counted(box: Outbox) -> None:
    big: dict[str, Any] = {"blob": "x" * (MAX_DATA_BYTES + 10)}
    seqs = box.append([draft(1), EventDraft(kind=EventKind.download_detected, data=big), draft(2)])
    assert seqs == [1, 2]
    loss = box.pending()[-1]
    assert loss["seq"] == 3
    assert loss["data"] == {"reason": "oversized", "dropped": {"download.detected": 1}, "count": 1}
    assert box.loss_counts == {"download.detected": 1}


# --- quota ---------------------------------------------------------------------------------


def _fill_until_refused(box: Outbox, severity: Severity) -> int:
    for _ in range(500):
        before = box.last_seq()
        group = [draft(i, severity=severity, pad="p" * 400) for i in range(20)]
        if len(box.append(group)) < len(group):
            return box.last_seq() - before
    raise AssertionError("quota never refused anything")


def test_quota_refuses_low_then_medium_never_high(tmp_path: Path, keys: OutboxKeys) -> None:
    outbox = Outbox(tmp_path / "outbox.db", keys=keys, quota_bytes=256 * 1024)
    _fill_until_refused(outbox, Severity.info)
    assert outbox.used_bytes() >= 0.9 * 256 * 1024 * 0.9
    assert outbox.append([draft(severity=Severity.low)]) == []
    assert outbox.append([draft(severity=Severity.medium)]) != []  # below the hard limit still
    _fill_until_refused(outbox, Severity.medium)
    assert outbox.append([draft(severity=Severity.medium)]) == []
    assert len(outbox.append([draft(i, severity=Severity.critical) for i in range(50)])) == 50
    assert len(outbox.append([draft(i, severity=Severity.high) for i in range(5)])) == 5
    losses = [e for e in outbox.pending(limit=100_000, max_bytes=10**9) if e["kind"] == "agent.loss"]
    assert losses
    assert all(e["severity"] == "high" and e["data"]["reason"] == "quota" for e in losses)
    total = sum(e["data"]["count"] for e in losses)
    assert total == sum(outbox.loss_counts.values())
    assert outbox.unreported_losses == {}
    verify_chain(keys, all_events(outbox))
    outbox.close()


def test_quota_purges_sent_history_before_refusing(tmp_path: Path, keys: OutboxKeys) -> None:
    outbox = Outbox(tmp_path / "outbox.db", keys=keys, quota_bytes=256 * 1024)
    _fill_until_refused(outbox, Severity.info)
    pending = outbox.pending(limit=100_000, max_bytes=10**9)
    outbox.mark_sent([e["seq"] for e in pending])
    accepted = outbox.append([draft(i, pad="p" * 400) for i in range(20)])
    assert len(accepted) == 20
    assert len(outbox.history(limit=100_000)) < len(pending)
    assert outbox.depth() >= 20  # unsent rows are never purged
    outbox.set_quota(10 * 1024 * 1024)
    assert outbox.quota_bytes == 10 * 1024 * 1024
    with pytest.raises(ValueError, match="positive"):
        outbox.set_quota(0)
    outbox.close()


def test_full_disk_keeps_rows_and_reports_loss_later(tmp_path: Path, keys: OutboxKeys) -> None:
    outbox = Outbox(tmp_path / "outbox.db", keys=keys)
    assert outbox.append([draft(i) for i in range(10)]) == list(range(1, 11))
    conn = outbox._conn  # the only way to make SQLite's file "full" without a tiny filesystem
    assert conn is not None
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    group = [draft(i, pad="z" * 3000) for i in range(30)] + [draft(0, severity=Severity.critical, pad="z" * 3000)] * 30
    assert outbox.append(group) == []
    assert outbox.unreported_losses == {"disk_full": {"usb.mounted": 60}}
    assert outbox.last_seq() == 10
    assert [e["seq"] for e in outbox.pending()] == list(range(1, 11))
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert outbox.append([draft(11)]) == [11]
    loss = outbox.pending()[-1]
    assert loss["data"] == {"reason": "disk_full", "dropped": {"usb.mounted": 60}, "count": 60}
    verify_chain(keys, all_events(outbox))
    outbox.close()


def test_full_disk_still_writes_high_severity_when_it_fits(tmp_path: Path, keys: OutboxKeys) -> None:
    outbox = Outbox(tmp_path / "outbox.db", keys=keys)
    outbox.append([draft(0)])
    conn = outbox._conn
    assert conn is not None
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    seqs = outbox.append([draft(i, pad="q" * 2000) for i in range(40)] + [draft(1, severity=Severity.critical)])
    assert seqs == [2]
    assert [e["severity"] for e in outbox.pending()] == ["info", "critical", "high"]
    outbox.close()


# --- migrations ------------------------------------------------------------------------------


def test_new_and_empty_files_are_migrated_to_v1(tmp_path: Path, keys: OutboxKeys) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with Outbox(empty, keys=keys) as outbox:
        assert outbox.append([draft()]) == [1]
    conn = sqlite3.connect(empty)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_newer_schema_version_is_refused(tmp_path: Path, keys: OutboxKeys) -> None:
    path = tmp_path / "outbox.db"
    Outbox(path, keys=keys).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(OutboxTooNew, match="schema version 7") as info:
        Outbox(path, keys=keys)
    assert (info.value.found, info.value.known) == (7, 1)
    assert path.exists()  # left alone for the newer agent


def test_a_later_migration_runs_forward_and_keeps_rows(
    tmp_path: Path, keys: OutboxKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, keys=keys) as outbox:
        outbox.append([draft(i) for i in range(3)])

    def v2(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")

    monkeypatch.setattr(outbox_schema, "MIGRATIONS", [*outbox_schema.MIGRATIONS, v2])
    with Outbox(path, keys=keys) as outbox:
        assert outbox.append([draft(3)]) == [4]
        verify_chain(keys, all_events(outbox))
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
    assert conn.execute("SELECT sum(attempts) FROM events").fetchone() == (0,)
    conn.close()
    monkeypatch.undo()
    with pytest.raises(OutboxTooNew):
        Outbox(path, keys=keys)


def test_closed_outbox_refuses_work(tmp_path: Path, keys: OutboxKeys) -> None:
    outbox = Outbox(tmp_path / "o.db", keys=keys)
    outbox.close()
    with pytest.raises(RuntimeError, match="closed"):
        outbox.depth()
