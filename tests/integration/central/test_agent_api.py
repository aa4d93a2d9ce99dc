"""The agent API over a real socket: enrolment, signed policy with ETag, idempotent ingest, heartbeat."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from central import commands
from central.simulate import SimulatedAgent, batch_json
from central.store import devices, tokens
from policy_client.schema import EnrollResponse, HeartbeatResponse, IngestResult, PolicyDocument, PolicyEnvelope
from tests.integration.central.conftest import LiveEndpoint

pytestmark = pytest.mark.integration


def _enroll_body(token: str, agent: SimulatedAgent | None = None) -> dict[str, str]:
    agent = agent or SimulatedAgent()
    return {"token": token, "hostname": "desk-9", "os": "windows", "chain_key": agent.chain_key_b64}


def test_enrolment_returns_device_credential_and_policy_key(endpoint: LiveEndpoint) -> None:
    token = commands.issue_enroll_token(endpoint.settings, "kyc", timedelta(hours=8))

    answer = endpoint.client.post("/v1/enroll", json=_enroll_body(token))

    assert answer.status_code == 200, answer.text
    enrolled = EnrollResponse.model_validate_json(answer.content)
    assert enrolled.team == "kyc"
    assert base64.b64decode(enrolled.policy_public_key) == endpoint.runtime.signer.public_raw
    assert enrolled.policy_key_id == endpoint.runtime.signer.key_id
    assert devices.find_device(endpoint.runtime.db, enrolled.credential) is not None


def test_enrolment_with_expired_revoked_or_unknown_token_is_401(endpoint: LiveEndpoint) -> None:
    rt = endpoint.runtime
    expired = tokens.issue_enroll_token(rt.db, "t", ttl=timedelta(minutes=1), now=rt.clock() - timedelta(minutes=2))
    revoked = commands.issue_enroll_token(endpoint.settings, "t", timedelta(hours=1))
    assert commands.revoke_enroll_token(endpoint.settings, revoked)

    for token, reason in ((expired, "expired"), (revoked, "revoked"), ("dwe_nobody-issued-this", "unknown")):
        answer = endpoint.client.post("/v1/enroll", json=_enroll_body(token))
        assert answer.status_code == 401
        assert reason in answer.json()["detail"]


def test_enrolment_with_a_bad_chain_key_or_body_is_4xx(endpoint: LiveEndpoint) -> None:
    token = commands.issue_enroll_token(endpoint.settings, "t", timedelta(hours=1))
    short_key = base64.b64encode(b"k" * 8).decode() + "=" * 32

    bad_key = endpoint.client.post("/v1/enroll", json=_enroll_body(token) | {"chain_key": short_key})
    not_base64 = endpoint.client.post("/v1/enroll", json=_enroll_body(token) | {"chain_key": "!" * 44})
    junk = endpoint.client.post("/v1/enroll", content=b"{{{")

    assert bad_key.status_code == 422
    assert "chain_key" in bad_key.json()["detail"]
    assert not_base64.status_code == 422
    assert junk.status_code == 400


def test_policy_has_an_etag_and_answers_304_when_unchanged(endpoint: LiveEndpoint) -> None:
    _agent, auth = endpoint.enroll()
    first = endpoint.client.get("/v1/policy", headers=auth)
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert etag == f'"1-{endpoint.runtime.signer.key_id}"'

    unchanged = endpoint.client.get("/v1/policy", headers=auth | {"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""

    assert commands.publish_policy(endpoint.settings, b'{"version": 0, "org": "Acme CX"}') == 2
    changed = endpoint.client.get("/v1/policy", headers=auth | {"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] == f'"2-{endpoint.runtime.signer.key_id}"'


def test_policy_signature_verifies_with_the_enrolment_key_over_the_exact_payload(endpoint: LiveEndpoint) -> None:
    token = commands.issue_enroll_token(endpoint.settings, "t", timedelta(hours=1))
    enrolled = EnrollResponse.model_validate_json(endpoint.client.post("/v1/enroll", json=_enroll_body(token)).content)
    commands.publish_policy(endpoint.settings, json.dumps({"version": 5, "org": "Signed Org"}).encode())

    answer = endpoint.client.get("/v1/policy", headers={"Authorization": f"Bearer {enrolled.credential}"})

    envelope = PolicyEnvelope.model_validate_json(answer.content)
    payload = base64.b64decode(envelope.payload)
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(enrolled.policy_public_key))
    key.verify(base64.b64decode(envelope.signature), payload)
    assert envelope.key_id == enrolled.policy_key_id
    document = PolicyDocument.model_validate_json(payload)
    assert (document.version, document.org) == (5, "Signed Org")


def test_policy_needs_a_device_credential(endpoint: LiveEndpoint) -> None:
    api = endpoint.api_headers("admin")
    assert endpoint.client.get("/v1/policy").status_code == 401
    assert endpoint.client.get("/v1/policy", headers={"Authorization": "Bearer dwd_nope"}).status_code == 401
    assert endpoint.client.get("/v1/policy", headers=api).status_code == 401


def test_ingest_counts_accepted_then_duplicates_and_stores_once(endpoint: LiveEndpoint) -> None:
    agent, auth = endpoint.enroll()
    body = batch_json(agent.batch(agent.events(500)))

    first = endpoint.client.post("/v1/events", content=body, headers=auth)
    replay = endpoint.client.post("/v1/events", content=body, headers=auth)

    assert IngestResult.model_validate_json(first.content) == IngestResult(accepted=500, duplicates=0)
    assert IngestResult.model_validate_json(replay.content) == IngestResult(accepted=0, duplicates=500)
    api = endpoint.api_headers()
    stored = endpoint.client.get("/v1/events", params={"device_id": agent.device_id, "limit": 1000}, headers=api)
    assert [e["seq"] for e in stored.json()] == list(range(1, 501))


def test_ingest_accepts_gzip(endpoint: LiveEndpoint) -> None:
    agent, auth = endpoint.enroll()
    body = gzip.compress(batch_json(agent.batch(agent.events(200))))

    answer = endpoint.client.post("/v1/events", content=body, headers=auth | {"Content-Encoding": "gzip"})

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 200, "duplicates": 0}


def test_chain_gap_and_broken_link_become_tamper_alerts(endpoint: LiveEndpoint) -> None:
    agent, auth = endpoint.enroll()
    events = agent.events(10)
    forged = events[9].model_copy(update={"user": "someone-else"})
    endpoint.client.post("/v1/events", content=batch_json(agent.batch(events[:3])), headers=auth)
    endpoint.client.post("/v1/events", content=batch_json(agent.batch([*events[6:9], forged])), headers=auth)

    raised = endpoint.client.get("/v1/alerts", params={"device_id": agent.device_id}, headers=endpoint.api_headers())

    assert [(a["kind"], a["event_seq"]) for a in raised.json()] == [
        ("tamper.chain_broken", 10),
        ("tamper.seq_gap", 7),
    ]
    assert raised.json()[1]["data"]["missing_ranges"] == [[4, 6]]


def test_heartbeat_records_health_and_answers_the_newest_policy_version(endpoint: LiveEndpoint) -> None:
    agent, auth = endpoint.enroll(user="meera")
    commands.publish_policy(endpoint.settings, b'{"version": 3}')
    beat = {
        "user": "meera",
        "agent_version": "0.1.0",
        "policy_version": 1,
        "queue_depth": 42,
        "oldest_unsent_age_s": 12.5,
        "collectors": {"usb": "running", "clipboard": "failed"},
        "rss_bytes": 61_000_000,
        "cpu_percent": 0.2,
    }

    answer = endpoint.client.post("/v1/heartbeat", json=beat, headers=auth)

    assert HeartbeatResponse.model_validate_json(answer.content).policy_version == 3
    (device,) = endpoint.client.get("/v1/devices", headers=endpoint.api_headers()).json()
    assert device["device_id"] == agent.device_id
    assert (device["queue_depth"], device["policy_version"], device["user"]) == (42, 1, "meera")
    assert device["collectors"] == {"usb": "running", "clipboard": "failed"}
    assert device["online"] is True
    assert device["agent_version"] == "0.1.0"


def test_heartbeat_with_bad_body_or_credential_is_4xx(endpoint: LiveEndpoint) -> None:
    _agent, auth = endpoint.enroll()
    assert endpoint.client.post("/v1/heartbeat", json={"queue_depth": -1}, headers=auth).status_code == 422
    assert endpoint.client.post("/v1/heartbeat", json={}, headers={"Authorization": "Bearer x"}).status_code == 401
