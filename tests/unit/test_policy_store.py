"""Signed policy: tampering, wrong keys, rollback, junk and schema errors are rejected; LKG survives restarts."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policy_client.policy_store import KEEP_VERSIONS, PolicyStore
from policy_client.schema import EventKind, PolicyDocument

SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


TRUSTED = {"k1": _raw_public(SIGNING_KEY)}


def _payload(version: int, **extra: Any) -> bytes:
    document: dict[str, Any] = {"version": version, "issued_at": "2024-05-01T09:00:00Z", "org": "Acme CX"}
    document.update(extra)
    return json.dumps(document).encode()


def envelope(
    payload: bytes, *, key: Ed25519PrivateKey = SIGNING_KEY, key_id: str = "k1", signature: bytes | None = None
) -> bytes:
    sig = signature if signature is not None else key.sign(payload)
    return json.dumps(
        {"key_id": key_id, "payload": base64.b64encode(payload).decode(), "signature": base64.b64encode(sig).decode()}
    ).encode()


def signed(version: int, **extra: Any) -> bytes:
    return envelope(_payload(version, **extra))


@pytest.fixture
def store(tmp_path: Path) -> PolicyStore:
    return PolicyStore(tmp_path / "policy", trusted_keys=TRUSTED)


def test_no_policy_means_the_built_in_default(store: PolicyStore) -> None:
    assert store.current() == PolicyDocument(version=0, issued_at=store.current().issued_at)
    assert not store.has_signed_policy


def test_bundled_default_file_is_used_when_nothing_is_cached(tmp_path: Path) -> None:
    default = tmp_path / "default.json"
    default.write_text(json.dumps({"version": 0, "org": "bundled", "controls": {"usb": {"mode": "audit"}}}))
    store = PolicyStore(tmp_path / "policy", trusted_keys=TRUSTED, default_path=default)
    assert store.current().org == "bundled"


def test_valid_policy_is_accepted_and_reported(store: PolicyStore) -> None:
    verdict = store.accept(signed(3, controls={"usb": {"mode": "block"}}))
    assert verdict.status == "updated"
    assert verdict.policy.version == 3
    assert verdict.policy.controls.usb.mode == "block"
    assert store.current() == verdict.policy
    (event,) = verdict.events
    assert event.kind == EventKind.policy_updated
    assert event.data == {"version": 3, "previous_version": None, "key_id": "k1"}


def test_same_policy_again_is_unchanged_without_events(store: PolicyStore) -> None:
    store.accept(signed(3))
    verdict = store.accept(signed(3))
    assert verdict.status == "unchanged"
    assert verdict.events == ()


def _assert_rejected(store: PolicyStore, offer: bytes, reason: str, *, keeps: int) -> None:
    verdict = store.accept(offer)
    assert verdict.status == "rejected"
    assert verdict.reason == reason
    assert verdict.policy.version == keeps
    assert store.current().version == keeps
    (event,) = verdict.events
    assert event.kind == EventKind.policy_rejected
    assert event.severity == "high"
    assert event.data["reason"] == reason


@pytest.mark.parametrize("position", [0, 10, -1])
def test_flipped_payload_byte_is_a_bad_signature(store: PolicyStore, position: int) -> None:
    store.accept(signed(2))
    payload = bytearray(_payload(5))
    good_sig = SIGNING_KEY.sign(bytes(payload))
    payload[position] ^= 0x01
    _assert_rejected(store, envelope(bytes(payload), signature=good_sig), "bad_signature", keeps=2)


def test_flipped_signature_byte_is_a_bad_signature(store: PolicyStore) -> None:
    payload = _payload(5)
    sig = bytearray(SIGNING_KEY.sign(payload))
    sig[7] ^= 0x80
    _assert_rejected(store, envelope(payload, signature=bytes(sig)), "bad_signature", keeps=0)


def test_truncated_signature_is_a_bad_signature(store: PolicyStore) -> None:
    payload = _payload(5)
    _assert_rejected(store, envelope(payload, signature=SIGNING_KEY.sign(payload)[:40]), "bad_signature", keeps=0)


def test_signature_over_reserialised_json_is_not_accepted(store: PolicyStore) -> None:
    """The signature covers the exact bytes: the same document re-serialised must not verify."""
    payload = _payload(5)
    reserialised = json.dumps(json.loads(payload), indent=1).encode()
    _assert_rejected(store, envelope(reserialised, signature=SIGNING_KEY.sign(payload)), "bad_signature", keeps=0)


def test_right_key_id_wrong_key_is_a_bad_signature(store: PolicyStore) -> None:
    _assert_rejected(store, envelope(_payload(5), key=OTHER_KEY, key_id="k1"), "bad_signature", keeps=0)


def test_unknown_key_id_is_rejected(store: PolicyStore) -> None:
    store.accept(signed(1))
    _assert_rejected(store, envelope(_payload(5), key=OTHER_KEY, key_id="k-evil"), "unknown_key", keeps=1)


def test_rollback_to_a_lower_version_is_rejected(store: PolicyStore) -> None:
    store.accept(signed(7))
    _assert_rejected(store, signed(6), "rollback", keeps=7)
    assert store.accept(signed(6)).offered_version == 6


def test_same_version_with_different_content_is_rejected(store: PolicyStore) -> None:
    store.accept(signed(7, org="A"))
    _assert_rejected(store, signed(7, org="B"), "version_conflict", keeps=7)
    assert store.current().org == "A"


@pytest.mark.parametrize("junk", [b"", b"not json", b"\x00\xff\xfe", b"[1,2]", b"[" * 100_000])
def test_junk_envelope_is_rejected(store: PolicyStore, junk: bytes) -> None:
    verdict = store.accept(junk)
    assert verdict.status == "rejected"
    assert verdict.reason in ("invalid_json", "invalid_envelope")
    assert verdict.events[0].kind == EventKind.policy_rejected


def test_signed_junk_payload_is_invalid_json(store: PolicyStore) -> None:
    store.accept(signed(1))
    _assert_rejected(store, envelope(b"{this is not json"), "invalid_json", keeps=1)


@pytest.mark.parametrize(
    "payload",
    [
        _payload(5, surprise=True),
        _payload(5, controls={"usb": {"mode": "explode"}}),
        _payload(5, controls={"clean_desk": {"times": ["25:00"]}}),
        json.dumps({"version": -1}).encode(),
        json.dumps({"version": 5.5}).encode(),
        json.dumps([5]).encode(),
    ],
)
def test_schema_errors_are_rejected(store: PolicyStore, payload: bytes) -> None:
    store.accept(signed(1))
    _assert_rejected(store, envelope(payload), "invalid_schema", keeps=1)


def test_schema_error_reports_the_offered_version(store: PolicyStore) -> None:
    assert store.accept(envelope(_payload(9, surprise=1))).offered_version == 9


def test_payload_that_is_not_base64_is_rejected(store: PolicyStore) -> None:
    bad = json.dumps({"key_id": "k1", "payload": "***", "signature": "AAAA"}).encode()
    assert store.accept(bad).reason == "invalid_envelope"


def test_envelope_with_extra_fields_is_rejected(store: PolicyStore) -> None:
    data = json.loads(signed(3))
    data["note"] = "hi"
    assert store.accept(json.dumps(data).encode()).reason == "invalid_envelope"


def test_lkg_survives_a_restart_and_is_stored_byte_exact(tmp_path: Path) -> None:
    offer = signed(4, org="Acme")
    PolicyStore(tmp_path / "p", trusted_keys=TRUSTED).accept(offer)
    (cached,) = (tmp_path / "p").glob("*.envelope")
    assert cached.read_bytes() == offer
    assert [p for p in (tmp_path / "p").iterdir() if p.suffix == ".tmp"] == []
    reopened = PolicyStore(tmp_path / "p", trusted_keys=TRUSTED)
    assert reopened.current().version == 4
    assert reopened.current().org == "Acme"
    assert reopened.take_startup_events() == []
    # rollback protection holds across restarts
    assert reopened.accept(signed(3)).reason == "rollback"


def test_only_the_newest_versions_are_kept(tmp_path: Path) -> None:
    store = PolicyStore(tmp_path / "p", trusted_keys=TRUSTED)
    for version in range(1, KEEP_VERSIONS + 3):
        store.accept(signed(version))
    assert len(list((tmp_path / "p").glob("*.envelope"))) == KEEP_VERSIONS


def test_tampered_lkg_file_falls_back_to_the_next_older_and_is_reported(tmp_path: Path) -> None:
    store = PolicyStore(tmp_path / "p", trusted_keys=TRUSTED)
    store.accept(signed(1))
    store.accept(signed(2, controls={"usb": {"mode": "block"}}))
    newest = tmp_path / "p" / "policy-000000000002.envelope"
    data = json.loads(newest.read_bytes())
    forged = _payload(2, controls={"usb": {"mode": "off"}})
    data["payload"] = base64.b64encode(forged).decode()
    newest.write_text(json.dumps(data))

    reopened = PolicyStore(tmp_path / "p", trusted_keys=TRUSTED)
    assert reopened.current().version == 1
    (event,) = reopened.take_startup_events()
    assert event.kind == EventKind.policy_rejected
    assert event.data["reason"] == "tampered_cache"
    assert event.data["cause"] == "bad_signature"
    assert event.data["offered_version"] == 2
    assert reopened.take_startup_events() == []
    assert not newest.exists()
    assert (tmp_path / "p" / "policy-000000000002.envelope.rejected").exists()
    # the genuine version 2 is accepted again from the endpoint
    assert reopened.accept(signed(2, controls={"usb": {"mode": "block"}})).status == "updated"


def test_renamed_lkg_file_is_tampering(tmp_path: Path) -> None:
    store = PolicyStore(tmp_path / "p", trusted_keys=TRUSTED)
    store.accept(signed(1))
    os.replace(tmp_path / "p" / "policy-000000000001.envelope", tmp_path / "p" / "policy-000000000009.envelope")
    reopened = PolicyStore(tmp_path / "p", trusted_keys=TRUSTED)
    assert reopened.current().version == 0
    assert reopened.take_startup_events()[0].data["reason"] == "tampered_cache"


def test_truncated_lkg_file_uses_the_default(tmp_path: Path) -> None:
    store = PolicyStore(tmp_path / "p", trusted_keys=TRUSTED)
    store.accept(signed(1))
    cached = tmp_path / "p" / "policy-000000000001.envelope"
    cached.write_bytes(cached.read_bytes()[:20])
    reopened = PolicyStore(tmp_path / "p", trusted_keys=TRUSTED)
    assert reopened.current().version == 0
    assert reopened.take_startup_events()[0].data["cause"] == "invalid_json"


def test_a_failed_write_keeps_the_previous_lkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = PolicyStore(tmp_path / "p", trusted_keys=TRUSTED)
    store.accept(signed(1))

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        store.accept(signed(2))
    monkeypatch.undo()
    assert store.current().version == 1
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["policy-000000000001.envelope"]
    assert PolicyStore(tmp_path / "p", trusted_keys=TRUSTED).current().version == 1
