"""Device credentials, enrolment tokens and API tokens: each works only for what it was issued for, until revoked."""

from __future__ import annotations

import base64
import os
from datetime import timedelta

from sqlalchemy import update

from central.store import devices, tables, tokens
from tests.security.conftest import SecurityEndpoint


def _enroll_body(token: str) -> dict[str, str]:
    return {
        "token": token,
        "hostname": "h",
        "os": "linux",
        "user": "u",
        "chain_key": base64.b64encode(os.urandom(32)).decode(),
    }


def test_a_device_credential_cannot_post_for_another_device(security_endpoint: SecurityEndpoint) -> None:
    red = security_endpoint.enroll("red", "RED-7c1")
    blue = security_endpoint.enroll("blue", "BLUE-9f2")
    forged = blue.agent.batch(blue.agent.events(2))
    as_red = security_endpoint.client.post("/v1/events", content=forged.model_dump_json(), headers=red.auth)
    assert as_red.status_code == 403, as_red.text
    # Red's own batch envelope with blue's events inside is refused too.
    smuggled = red.agent.batch(blue.agent.events(1)).model_dump_json()
    assert security_endpoint.client.post("/v1/events", content=smuggled, headers=red.auth).status_code == 403
    beat = {"ts": "2030-01-01T09:00:00Z", "policy_version": 0, "queue_depth": 0}
    assert security_endpoint.client.post("/v1/heartbeat", json=beat, headers=red.auth).status_code == 200
    api = {"Authorization": f"Bearer {security_endpoint.api_token()}"}
    stored = security_endpoint.client.get("/v1/events", params={"device_id": blue.agent.device_id}, headers=api)
    assert [e["seq"] for e in stored.json()] == [1, 2], "nothing forged may be stored for blue"


def test_a_revoked_device_credential_is_refused(security_endpoint: SecurityEndpoint) -> None:
    red = security_endpoint.enroll("red", "RED-1")
    assert devices.revoke_device(security_endpoint.runtime.db, red.agent.device_id, now=security_endpoint.clock())
    answer = security_endpoint.client.post(
        "/v1/events", content=red.agent.batch(red.agent.events(1)).model_dump_json(), headers=red.auth
    )
    assert answer.status_code == 401
    assert security_endpoint.client.get("/v1/policy", headers=red.auth).status_code == 401


def test_expired_and_revoked_enrolment_tokens_are_refused(security_endpoint: SecurityEndpoint) -> None:
    db, clock = security_endpoint.runtime.db, security_endpoint.clock
    expiring = tokens.issue_enroll_token(db, "red", ttl=timedelta(minutes=5), now=clock())
    revoked = tokens.issue_enroll_token(db, "red", ttl=timedelta(hours=1), now=clock())
    assert tokens.revoke_enroll_token(db, revoked, now=clock())
    answer = security_endpoint.client.post("/v1/enroll", json=_enroll_body(revoked))
    assert answer.status_code == 401
    assert "revoked" in answer.json()["detail"]
    assert security_endpoint.client.post("/v1/enroll", json=_enroll_body(expiring)).status_code == 200
    clock.now += timedelta(minutes=5)
    answer = security_endpoint.client.post("/v1/enroll", json=_enroll_body(expiring))
    assert answer.status_code == 401
    assert "expired" in answer.json()["detail"]
    assert security_endpoint.client.post("/v1/enroll", json=_enroll_body("dwe_" + "A" * 43)).status_code == 401


def test_revoked_and_unknown_api_tokens_are_refused(security_endpoint: SecurityEndpoint) -> None:
    token = security_endpoint.api_token("auditor")
    headers = {"Authorization": f"Bearer {token}"}
    assert security_endpoint.client.get("/v1/devices", headers=headers).status_code == 200
    with security_endpoint.runtime.db.write() as conn:
        conn.execute(
            update(tables.api_tokens)
            .where(tables.api_tokens.c.token_hash == tokens.token_hash(token))
            .values(revoked_at=security_endpoint.clock())
        )
    for path in ("/v1/devices", "/v1/events", "/v1/alerts"):
        assert security_endpoint.client.get(path, headers=headers).status_code == 401, path
    bogus = {"Authorization": "Bearer dwa_" + "B" * 43}
    assert security_endpoint.client.get("/v1/events", headers=bogus).status_code == 401
    # A device credential is not an API token, and an API token is not a device credential.
    red = security_endpoint.enroll("red", "RED-2")
    assert security_endpoint.client.get("/v1/events", headers=red.auth).status_code == 401
    admin = {"Authorization": f"Bearer {security_endpoint.api_token()}"}
    assert security_endpoint.client.get("/v1/policy", headers=admin).status_code == 401
