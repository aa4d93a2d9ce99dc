"""Policy signing key, first-start policy and `publish_policy` versioning."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from central import commands
from central.runtime import Runtime, prepare
from central.settings import ServerSettings
from central.signing import load_or_create_signer
from central.store import policies
from policy_client.schema import PolicyDocument


def test_first_start_creates_a_private_key_file_and_reuses_it(settings: ServerSettings, runtime: Runtime) -> None:
    path = settings.signing_key_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_signer(path)
    assert again.public_raw == runtime.signer.public_raw
    assert runtime.signer.key_id == hashlib.sha256(runtime.signer.public_raw).hexdigest()[:16]


def test_first_start_publishes_version_one_once(settings: ServerSettings, runtime: Runtime) -> None:
    stored = policies.current_policy(runtime.db)
    assert stored is not None
    assert stored.version == 1
    assert PolicyDocument.model_validate_json(stored.payload).version == 1

    second = prepare(settings)
    try:
        assert policies.latest_version(second.db) == 1
    finally:
        second.db.dispose()


def test_stored_signature_verifies_over_the_exact_payload(runtime: Runtime) -> None:
    stored = policies.current_policy(runtime.db)
    assert stored is not None
    envelope = stored.envelope
    payload = base64.b64decode(envelope.payload)
    public = Ed25519PublicKey.from_public_bytes(runtime.signer.public_raw)
    public.verify(base64.b64decode(envelope.signature), payload)
    assert envelope.key_id == runtime.signer.key_id
    assert stored.etag == f'"1-{runtime.signer.key_id}"'


def test_publish_numbers_versions_after_the_current_one(settings: ServerSettings, runtime: Runtime) -> None:
    assert commands.publish_policy(settings, b'{"version": 0, "org": "Acme CX"}') == 2
    assert commands.publish_policy(settings, b'{"version": 2}') == 3
    assert commands.publish_policy(settings, b'{"version": 10}') == 10
    assert commands.publish_policy(settings, b'{"version": 4}') == 11

    stored = policies.current_policy(runtime.db)
    assert stored is not None
    document = json.loads(stored.payload)
    assert document["version"] == 11


def test_publish_refuses_an_invalid_policy_listing_each_problem(settings: ServerSettings) -> None:
    bad = b'{"version": 1, "controls": {"usb": {"mode": "explode"}, "clean_desk": {"times": ["25:00"]}}, "x": 1}'

    with pytest.raises(commands.InvalidPolicyError) as caught:
        commands.publish_policy(settings, bad)

    message = str(caught.value)
    assert "controls.usb.mode" in message
    assert "controls.clean_desk.times" in message
    assert "x: Extra inputs are not permitted" in message
    assert isinstance(caught.value, ValueError)


def test_publish_refuses_junk(settings: ServerSettings) -> None:
    with pytest.raises(commands.InvalidPolicyError, match="invalid policy document"):
        commands.publish_policy(settings, b"\x00not json")


def test_bundled_default_policy_is_used_for_version_one(tmp_path: Path) -> None:
    document = policies.parse_policy(b'{"version": 0, "org": "Bundled"}')
    path = tmp_path / "default.json"
    path.write_text(document.model_dump_json())
    from central import runtime as runtime_module

    initial = runtime_module._initial_policy(path)
    assert (initial.version, initial.org) == (1, "Bundled")
    path.write_text("{broken")
    assert runtime_module._initial_policy(path).org == ""
    assert runtime_module._initial_policy(tmp_path / "missing.json").version == 1


def test_a_document_without_a_version_gets_the_next_one(settings: ServerSettings) -> None:
    first = commands.publish_policy(settings, b'{"org": "Acme CX"}')
    second = commands.publish_policy(settings, b'{"org": "Acme CX", "controls": {"usb": {"mode": "block"}}}')
    assert second == first + 1
