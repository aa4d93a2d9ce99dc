"""`Outbox.pending_wire`, the uploader's read of the queue: the same rows as `pending`, as the chained bytes,
from a given seq on, with damaged rows set aside exactly as `pending` does."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from agent_app.core.outbox import Outbox
from agent_app.core.outbox_crypto import RowUnreadable, wire_plaintext
from policy_client.schema import EventDraft, EventKind, RuleRef, Severity, canonical_json
from policy_client.secrets import OutboxKeys, key_id_for


def _keys() -> OutboxKeys:
    data_key = os.urandom(32)
    return OutboxKeys(key_id=key_id_for(data_key), data_key=data_key, chain_key=os.urandom(32))


def _drafts(count: int) -> list[EventDraft]:
    return [
        EventDraft(
            kind=EventKind.clipboard_sensitive,
            severity=Severity.medium,
            user="asha",
            rule=RuleRef(id="clip", policy_version=3),
            data={"i": i, "f": 0.1 * i, "big": 2**70 + i, "s": 'ü "q"'},
        )
        for i in range(count)
    ]


def test_wire_rows_are_the_pending_events_as_their_chained_bytes(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db", keys=_keys()) as box:
        box.append(_drafts(7))
        pending = box.pending()
        rows = box.pending_wire()
    assert [row.seq for row in rows] == [event["seq"] for event in pending] == list(range(1, 8))
    for row, event in zip(rows, pending, strict=True):
        assert row.kind == event["kind"]
        assert row.mac == event["mac"]
        assert json.loads(row.plaintext) == {k: v for k, v in event.items() if k != "mac"}
        assert row.plaintext == canonical_json(json.loads(row.plaintext))


def test_wire_rows_start_after_the_given_seq_and_keep_the_limits(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db", keys=_keys()) as box:
        box.append(_drafts(10))
        assert [row.seq for row in box.pending_wire(after=6)] == [7, 8, 9, 10]
        assert [row.seq for row in box.pending_wire(limit=3, after=2)] == [3, 4, 5]
        assert [row.seq for row in box.pending_wire(max_bytes=10, after=4)] == [5]  # always at least one
        assert box.pending_wire(after=10) == []
        box.mark_sent([1, 2, 3])
        assert [row.seq for row in box.pending_wire(limit=2)] == [4, 5]


def test_a_row_that_fails_authentication_is_set_aside_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, keys=_keys()) as box:
        box.append(_drafts(3))
        conn = sqlite3.connect(path)
        conn.execute("UPDATE events SET ct = zeroblob(length(ct)) WHERE seq = 2")
        conn.commit()
        conn.close()
        rows = box.pending_wire()
        assert [row.seq for row in rows] == [1, 3]
        assert box.dead_letters() == [(2, "undecryptable")]
        loss = box.pending_wire(after=3)
    assert [row.kind for row in loss] == ["agent.loss"]
    assert json.loads(loss[0].plaintext)["data"]["lost_seqs"] == [2]


def test_wire_plaintext_reencodes_a_body_holding_mac_or_device_id_and_refuses_another_seq() -> None:
    body = {"action": None, "data": {"x": 1e-05}, "device_id": "d", "mac": "00" * 32, "seq": 4, "user": "u"}
    plaintext = json.dumps(body).encode()
    assert wire_plaintext(plaintext, 4) == canonical_json({"action": None, "data": {"x": 1e-05}, "seq": 4, "user": "u"})
    clean = canonical_json({"action": None, "seq": 4})
    assert wire_plaintext(clean, 4) is clean
    assert wire_plaintext(b' {"seq": 4}', 4) == b'{"seq":4}'
    with pytest.raises(RowUnreadable):
        wire_plaintext(clean, 5)
    with pytest.raises(RowUnreadable):
        wire_plaintext(b"[4]", 4)
    with pytest.raises(RowUnreadable):
        wire_plaintext(b"{not json", 4)
