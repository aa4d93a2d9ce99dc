"""`RowCipher.seal_draft` (the enqueue hot path, written out in one function) seals exactly what the
step-by-step functions give: the stdlib canonical body, its chain link and its AES-GCM row."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import datetime, tzinfo
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_app.core.outbox_crypto import RowCipher, chain_mac, draft_body, utc
from policy_client.schema import MAX_DATA_BYTES, Action, EventDraft, EventKind, RuleRef, Severity
from policy_client.secrets import OutboxKeys, key_id_for
from tests.support.event_strategies import event_data, json_text, rule_refs, timezones

_DATA_KEY = bytes(range(32))
_KEYS = OutboxKeys(key_id=key_id_for(_DATA_KEY), data_key=_DATA_KEY, chain_key=b"k" * 32)


def _stdlib(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@settings(max_examples=300, deadline=None)
@given(
    data=event_data(),
    seq=st.integers(min_value=1, max_value=2**63 - 1),
    rule=rule_refs(),
    tz=timezones(),
    user=json_text(),
)
def test_seal_draft_matches_the_step_by_step_form(
    data: dict[str, Any], seq: int, rule: RuleRef | None, tz: tzinfo, user: str
) -> None:
    ts = datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=tz)
    draft = EventDraft(
        kind=EventKind.clipboard_sensitive,
        ts=ts,
        severity=Severity.high,
        user=user,
        action=Action.masked,
        rule=rule,
        data=data,
    )
    prev = os.urandom(32)
    nonce = os.urandom(12)
    event_id = "018f0000-0000-7000-8000-000000000000"
    row = RowCipher(_KEYS).seal_draft(draft, 3, seq, prev, event_id, nonce)
    body = draft_body(draft, event_id, seq, utc(draft.ts))
    expected = _stdlib(body)
    if len(json.dumps(data, separators=(",", ":"))) > MAX_DATA_BYTES:
        assert row is None
        return
    assert row is not None
    mac = hmac.new(_KEYS.chain_key, prev + seq.to_bytes(8, "big") + hashlib.sha256(expected).digest(), "sha256")
    assert row[7] == mac.digest()
    aad = f"{_KEYS.key_id}|{seq}|clipboard.sensitive|".encode() + row[7]
    assert AESGCM(_DATA_KEY).decrypt(nonce, row[8], aad) == expected
    assert type(row[1]) is str
    assert row[:7] == (seq, "clipboard.sensitive", 3, utc(ts).timestamp(), len(expected), _KEYS.key_id, nonce)
    assert json.loads(expected)["ts"].endswith("Z")


def test_seal_draft_refuses_data_over_the_bound() -> None:
    draft = EventDraft(kind=EventKind.agent_loss, data={"blob": "\u00e9" * (MAX_DATA_BYTES // 5)})
    assert RowCipher(_KEYS).seal_draft(draft, 3, 1, b"\0" * 32, "id", os.urandom(12)) is None


@settings(max_examples=50, deadline=None)
@given(key=st.binary(min_size=1, max_size=200), seq=st.integers(min_value=0, max_value=2**64 - 1), text=st.binary())
def test_the_precomputed_hmac_equals_chain_mac(key: bytes, seq: int, text: bytes) -> None:
    cipher = RowCipher(OutboxKeys(key_id=_KEYS.key_id, data_key=_DATA_KEY, chain_key=key))
    prev = hashlib.sha256(text).digest()
    assert cipher.chain_mac(prev, seq, text) == chain_mac(key, prev, seq, text)
