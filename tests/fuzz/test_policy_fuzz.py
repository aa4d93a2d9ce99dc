"""Hypothesis against the policy parser and verifier: any bytes are refused with PolicyRejected, never a crash."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from central.signing import PolicySigner
from policy_client.policy_store import PolicyRejected, PolicyStore, verify_envelope
from policy_client.schema import PolicyDocument
from tests.fuzz.budget import budget

SIGNER = PolicySigner.from_private_key(Ed25519PrivateKey.generate())
TRUSTED = {SIGNER.key_id: SIGNER.public_raw}

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
CONTROL_NAMES = ["usb", "downloads", "clipboard", "screen_capture", "clean_desk", "acknowledgement", "reporting"]


def envelope(payload: bytes, *, signer: PolicySigner = SIGNER) -> bytes:
    body = {
        "key_id": signer.key_id,
        "payload": base64.b64encode(payload).decode(),
        "signature": signer.sign(payload),
    }
    return json.dumps(body).encode()


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """Policy-shaped JSON: mostly valid structure with fuzzed values."""
    controls = draw(st.dictionaries(st.sampled_from(CONTROL_NAMES), JSON, max_size=4))
    doc: dict[str, Any] = {"version": draw(st.integers(min_value=-3, max_value=2**64)), "controls": controls}
    if draw(st.booleans()):
        doc["issued_at"] = draw(st.sampled_from(["2024-01-01T00:00:00Z", "yesterday", 5, None]))
    if draw(st.booleans()):
        doc["org"] = draw(st.text(max_size=30))
    return doc


@budget(300)
@given(raw=st.binary(max_size=2048))
def test_arbitrary_bytes_are_refused_cleanly(raw: bytes) -> None:
    with pytest.raises(PolicyRejected):
        verify_envelope(raw, TRUSTED)


@budget(200)
@given(body=JSON)
def test_arbitrary_json_envelopes_are_refused_cleanly(body: object) -> None:
    with pytest.raises(PolicyRejected):
        verify_envelope(json.dumps(body).encode(), TRUSTED)


@budget(200)
@given(document=documents())
def test_signed_documents_either_parse_or_are_refused_as_invalid_schema(document: dict[str, Any]) -> None:
    reason: str | None = None
    try:
        verified = verify_envelope(envelope(json.dumps(document).encode()), TRUSTED)
    except PolicyRejected as exc:
        reason = exc.reason
    if reason is not None:
        assert reason in ("invalid_schema", "invalid_json"), reason
        return
    assert isinstance(verified.document, PolicyDocument)
    assert verified.document.version == document["version"]


@budget(200)
@given(data=st.data())
def test_any_flipped_byte_in_a_valid_envelope_is_refused_or_harmless(data: st.DataObject) -> None:
    document = PolicyDocument(version=5)
    good = envelope(document.model_dump_json().encode())
    position = data.draw(st.integers(min_value=0, max_value=len(good) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    bad = bytearray(good)
    bad[position] ^= flip
    try:
        verified = verify_envelope(bytes(bad), TRUSTED)
    except PolicyRejected:
        return
    # Only changes that leave the signed bytes as they were (JSON whitespace or escapes, base64's unused
    # trailing bits) can survive.
    assert verified.document == document


@budget(150)
@given(raw=st.one_of(st.binary(max_size=512), documents().map(lambda d: envelope(json.dumps(d).encode()))))
def test_policy_store_accept_never_raises_and_keeps_a_valid_policy(tmp_path: Path, raw: bytes) -> None:
    store = PolicyStore(tmp_path / "policy", trusted_keys=TRUSTED)
    before = store.current()
    verdict = store.accept(raw)
    assert verdict.status in ("updated", "unchanged", "rejected")
    if verdict.status == "rejected":
        assert store.current() == before
        assert verdict.events, "a rejection must be recorded as an event"
    assert isinstance(store.current(), PolicyDocument)
