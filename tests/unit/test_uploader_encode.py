"""The uploader's batch body built from real outbox rows (canonical bytes spliced in) verifies end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

from agent_app.core.outbox import Outbox
from agent_app.core.uploader import Uploader
from policy_client.schema import GENESIS_MAC, EventBatch, EventDraft, EventKind, RuleRef, Severity, verify_link
from policy_client.secrets import OutboxKeys, key_id_for


def _keys() -> OutboxKeys:
    data_key = os.urandom(32)
    return OutboxKeys(key_id=key_id_for(data_key), data_key=data_key, chain_key=os.urandom(32))


def _uploader(device_id: str) -> Uploader:
    def no_outbox() -> Outbox:
        raise AssertionError("not used")

    return Uploader(outbox_factory=no_outbox, transport=None, device_id=device_id, record=lambda d: None)


def test_spliced_rows_parse_as_the_same_events_and_their_chain_verifies(tmp_path: Path) -> None:
    keys = _keys()
    drafts = [
        EventDraft(kind=EventKind.usb_mounted, user="asha", data={"label": 'ÜSB "x"\n', "n": 1}),
        EventDraft(kind=EventKind.agent_heartbeat, data={"cpu": 1e-05, "big": 2**70, "nested": [{"a": None}]}),
        EventDraft(
            kind=EventKind.clipboard_sensitive,
            severity=Severity.high,
            rule=RuleRef(id="clip", policy_version=4),
            data={},
        ),
    ]
    with Outbox(tmp_path / "outbox.db", keys=keys) as box:
        box.append(drafts)
        pending = box.pending()
        rows = box.pending_wire()
    assert [row.seq for row in rows] == [event["seq"] for event in pending]
    body = _uploader('dev "7"')._encode(rows)
    batch = EventBatch.model_validate_json(body)
    assert batch.device_id == 'dev "7"'
    prev = GENESIS_MAC
    for event, original in zip(batch.events, pending, strict=True):
        assert event.device_id == 'dev "7"'
        assert event.model_dump(mode="json") == {**original, "device_id": 'dev "7"'}
        assert verify_link(keys.chain_key, prev, event)
        prev = event.mac
    assert json.loads(body)["events"][1]["data"]["big"] == 2**70
