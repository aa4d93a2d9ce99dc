"""Outbox recovery on real damaged files: truncated WAL, missing -shm, flipped page bytes, garbage."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent_app.core.outbox import Outbox
from agent_app.core.outbox_recovery import salvaged_path
from policy_client.schema import GENESIS_MAC, EventDraft, EventKind, Severity, verify_link
from policy_client.schema import Event as WireEvent
from policy_client.secrets import OutboxKeys, key_id_for


def make_keys() -> OutboxKeys:
    data_key = os.urandom(32)
    return OutboxKeys(key_id=key_id_for(data_key), data_key=data_key, chain_key=os.urandom(32))


def drafts(start: int, count: int) -> list[EventDraft]:
    return [
        EventDraft(kind=EventKind.download_detected, severity=Severity.medium, data={"n": i, "pad": "d" * 200})
        for i in range(start, start + count)
    ]


def events_by_seq(box: Outbox) -> dict[int, dict[str, Any]]:
    return {e["seq"]: e for e in box.history(limit=1_000_000)}


def verify_segments(keys: OutboxKeys, events: dict[int, dict[str, Any]]) -> None:
    """Every event whose predecessor survived links to it; seq 1 links to genesis."""
    for seq, body in events.items():
        prev = GENESIS_MAC if seq == 1 else events.get(seq - 1, {}).get("mac")
        if prev is None:
            continue
        clean = {k: v for k, v in body.items() if k != "sent"}
        assert verify_link(keys.chain_key, prev, WireEvent.model_validate({**clean, "device_id": "d"}))


def snapshot(src: Path, dst: Path, *, shm: bool = False) -> None:
    """Copy the files of a live outbox as a kill -9 would leave them (main file and WAL)."""
    suffixes = ["", "-wal"] + (["-shm"] if shm else [])
    for suffix in suffixes:
        shutil.copyfile(src.with_name(src.name + suffix), dst.with_name(dst.name + suffix))


def loss_events(box: Outbox) -> list[dict[str, Any]]:
    return [e for e in box.pending(limit=100_000, max_bytes=10**9) if e["kind"] == "agent.loss"]


def leaf_table_pages(path: Path) -> list[int]:
    """Page numbers of the events table's leaf pages (b-tree page type 0x0D)."""
    raw = path.read_bytes()
    page_size = int.from_bytes(raw[16:18], "big")
    conn = sqlite3.connect(path)
    meta_root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'meta'").fetchone()[0]
    conn.close()
    pages = []
    for number in range(2, len(raw) // page_size + 1):
        if raw[(number - 1) * page_size] == 0x0D and number != meta_root:
            pages.append(number)
    return pages


def page_size_of(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:18], "big")


def write_byte(path: Path, offset: int, value: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(bytes([value]))


@pytest.fixture
def keys() -> OutboxKeys:
    return make_keys()


def test_truncated_wal_simply_opens(tmp_path: Path, keys: OutboxKeys) -> None:
    live, copy = tmp_path / "live.db", tmp_path / "copy.db"
    box = Outbox(live, keys=keys)
    box.append(drafts(0, 10))
    box.append(drafts(10, 10))
    snapshot(live, copy)
    box.close()
    wal = copy.with_name(copy.name + "-wal")
    os.truncate(wal, wal.stat().st_size - 100)  # the last frame is cut mid-way
    with Outbox(copy, keys=keys) as reopened:
        assert reopened.recoveries == []
        assert reopened.last_seq() == 10  # the torn transaction never happened
        assert reopened.append(drafts(20, 1)) == [11]
        events = events_by_seq(reopened)
        assert sorted(events) == list(range(1, 12))
        verify_segments(keys, events)


def test_commits_cut_from_the_wal_are_reported_and_their_seqs_never_reused(tmp_path: Path, keys: OutboxKeys) -> None:
    live, copy = tmp_path / "live.db", tmp_path / "copy.db"
    box = Outbox(live, keys=keys)
    box.append(drafts(0, 10))
    box.append(drafts(10, 10))
    snapshot(live, copy)
    shutil.copyfile(live.with_name(live.name + "-seq"), copy.with_name(copy.name + "-seq"))
    box.close()
    wal = copy.with_name(copy.name + "-wal")
    os.truncate(wal, wal.stat().st_size - 100)  # the second commit (seqs 11-20) is cut off
    with Outbox(copy, keys=keys) as reopened:
        (loss,) = loss_events(reopened)
        assert loss["data"] == {"reason": "lost_commits", "count": 10, "first_seq": 11, "last_seq": 20}
        assert loss["seq"] == 21
        assert reopened.append(drafts(20, 1)) == [22]
    with Outbox(copy, keys=keys) as again:
        assert len(loss_events(again)) == 1, "a second open must not report the same loss again"


def test_missing_shm_opens_with_everything(tmp_path: Path, keys: OutboxKeys) -> None:
    live, copy = tmp_path / "live.db", tmp_path / "copy.db"
    box = Outbox(live, keys=keys)
    box.append(drafts(0, 25))
    snapshot(live, copy, shm=True)
    box.close()
    copy.with_name(copy.name + "-shm").unlink()
    with Outbox(copy, keys=keys) as reopened:
        assert reopened.recoveries == []
        assert reopened.depth() == 25
        assert reopened.append(drafts(25, 1)) == [26]


def test_garbage_file_is_moved_aside_and_replaced(tmp_path: Path, keys: OutboxKeys) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(os.urandom(16384))
    with Outbox(path, keys=keys) as box:
        assert len(box.recoveries) == 1
        assert box.recoveries[0].salvaged == 0
        (loss,) = loss_events(box)
        assert loss["data"]["reason"] == "corruption"
        assert loss["severity"] == "high"
        assert box.append(drafts(0, 1)) == [2]
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1
    with Outbox(path, keys=keys) as again:  # no crash loop: the second open is a normal open
        assert again.recoveries == []
        assert again.last_seq() == 2


def _damaged_outbox(tmp_path: Path, keys: OutboxKeys, rows: int = 400) -> tuple[Path, int]:
    path = tmp_path / "outbox.db"
    with Outbox(path, keys=keys) as box:
        for start in range(0, rows, 100):
            box.append(drafts(start, 100))
        box.mark_sent([1, 2, 3])
    pages = leaf_table_pages(path)
    assert len(pages) > 10
    victim = pages[len(pages) // 2]
    return path, (victim - 1) * page_size_of(path)


def test_flipped_page_header_salvages_the_rest(tmp_path: Path, keys: OutboxKeys) -> None:
    path, page_offset = _damaged_outbox(tmp_path, keys)
    write_byte(path, page_offset, 0xFF)  # invalid b-tree page type: quick_check fails
    with Outbox(path, keys=keys) as box:
        (report,) = box.recoveries
        events = events_by_seq(box)
        kept = [s for s in events if events[s]["kind"] != "agent.loss"]
        assert 300 < report.salvaged == len(kept) < 400
        covered = set(kept)
        for first, last in report.unreadable_ranges:
            covered.update(range(first, last + 1))
        assert set(range(1, 401)) <= covered
        assert report.count >= 400 - len(kept)
        (loss,) = loss_events(box)
        assert loss["seq"] == 401
        assert loss["data"]["count"] == report.count
        assert loss["data"]["salvaged"] == report.salvaged
        assert [events[s]["sent"] for s in (1, 2, 3)] == [True, True, True]
        verify_segments(keys, events)
        assert box.append(drafts(999, 1)) == [402]
    with Outbox(path, keys=keys) as again:
        assert again.recoveries == []
        assert again.last_seq() == 402
    assert any(".corrupt-" in p.name for p in tmp_path.iterdir())


def test_flipped_cell_byte_loses_exactly_that_row(tmp_path: Path, keys: OutboxKeys) -> None:
    path, page_offset = _damaged_outbox(tmp_path, keys)
    end_of_page = page_offset + page_size_of(path) - 5  # inside the GCM tag of the page's first cell
    raw = path.read_bytes()
    write_byte(path, end_of_page, raw[end_of_page] ^ 0x40)
    with Outbox(path, keys=keys) as box:
        assert box.recoveries == []  # the b-tree is fine; only the sealed payload is not
        queued = box.pending(limit=1000, max_bytes=10**9)
        assert len(queued) == 396  # 400 - 3 sent - 1 lost
        (dead,) = box.dead_letters()
        assert dead[1] == "undecryptable"
        (loss,) = loss_events(box)
        assert loss["data"]["lost_seqs"] == [dead[0]]


def test_damage_found_after_open_recovers_instead_of_raising(tmp_path: Path, keys: OutboxKeys) -> None:
    path, page_offset = _damaged_outbox(tmp_path, keys)
    write_byte(path, page_offset, 0xFF)
    with Outbox(path, keys=keys, check=False) as box:  # quick_check skipped: found on first read
        assert box.recoveries == []
        queued = box.pending(limit=1000, max_bytes=10**9)
        assert len(box.recoveries) == 1
        assert queued
        assert box.depth() == len(box.pending(limit=1000, max_bytes=10**9))


def test_interrupted_recovery_is_finished_on_next_open(tmp_path: Path, keys: OutboxKeys) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(tmp_path / "built.db", keys=keys) as box:
        box.append(drafts(0, 5))
    (tmp_path / "built.db").rename(salvaged_path(path))
    with Outbox(path, keys=keys) as box:
        assert box.last_seq() == 5
    assert not salvaged_path(path).exists()


def test_rows_sealed_with_another_key_count_as_lost(tmp_path: Path, keys: OutboxKeys) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, keys=keys) as box:
        box.append(drafts(0, 3))
    other = OutboxKeys(key_id=keys.key_id, data_key=os.urandom(32), chain_key=keys.chain_key)
    with Outbox(path, keys=other) as box:
        (loss,) = box.pending()  # only the loss record, sealed with the new key
        assert loss["kind"] == "agent.loss"
        assert loss["data"]["count"] == 3
        assert [s for s, _ in box.dead_letters()] == [1, 2, 3]
