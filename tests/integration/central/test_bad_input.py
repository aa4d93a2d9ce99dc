"""Bad requests to the agent API get a clear 4xx, never a 5xx; overload gets 429 with Retry-After."""

from __future__ import annotations

import gzip
import json
import threading

import httpx
import pytest
from sqlalchemy import select

from central.simulate import batch_json
from central.store import tables
from policy_client.schema import MAX_BATCH_EVENTS
from tests.integration.central.conftest import LiveEndpoint
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def _assert_clear_4xx(answer: httpx.Response, status: int, *words: str) -> None:
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, str)
    for word in words:
        assert word in detail


def test_malformed_json_is_400(endpoint: LiveEndpoint) -> None:
    _agent, auth = endpoint.enroll()
    _assert_clear_4xx(endpoint.client.post("/v1/events", content=b'{"device_id": ', headers=auth), 400, "JSON")


def test_wrong_types_are_422_naming_the_fields(endpoint: LiveEndpoint) -> None:
    agent, auth = endpoint.enroll()
    event = json.loads(batch_json(agent.batch(agent.events(1))))["events"][0]
    body = {"device_id": agent.device_id, "events": [event | {"seq": "first", "severity": "apocalyptic"}]}

    answer = endpoint.client.post("/v1/events", json=body, headers=auth)

    _assert_clear_4xx(answer, 422, "events.0.seq", "events.0.severity")


ODD_BODIES = [
    b"",
    b"null",
    b"[]",
    b'"text"',
    b'{"device_id": "x", "events": null}',
    b'{"device_id": "x", "events": [1, 2]}',
    b'{"device_id": "x", "events": [], "extra": true}',
    b"[" * 5000 + b"]" * 5000,
    b'{"device_id": "\\u0000", "events": []}',
    '{"device_id": "\u00e9\u6f22", "events": []}'.encode(),
    b"\xff\xfe\x00garbage",
]


def test_odd_bodies_are_4xx(endpoint: LiveEndpoint) -> None:
    _agent, auth = endpoint.enroll()
    for body in ODD_BODIES:
        answer = endpoint.client.post("/v1/events", content=body, headers=auth)
        assert 400 <= answer.status_code < 500, (body[:40], answer.text)
        assert answer.json()["detail"]


def test_values_too_big_to_store_are_422(endpoint: LiveEndpoint) -> None:
    agent, auth = endpoint.enroll()
    event = json.loads(batch_json(agent.batch(agent.events(1))))["events"][0]

    answer = endpoint.client.post(
        "/v1/events", json={"device_id": agent.device_id, "events": [event | {"seq": 2**70}]}, headers=auth
    )

    _assert_clear_4xx(answer, 422, "seq")


def test_more_than_500_events_is_413(endpoint: LiveEndpoint) -> None:
    agent, auth = endpoint.enroll()
    events = json.loads(batch_json(agent.batch(agent.events(MAX_BATCH_EVENTS))))["events"]
    oversized = {"device_id": agent.device_id, "events": [*events, events[0]]}

    _assert_clear_4xx(endpoint.client.post("/v1/events", json=oversized, headers=auth), 413, "500")


def test_body_over_the_size_cap_is_413_plain_or_gzip(endpoint: LiveEndpoint) -> None:
    _agent, auth = endpoint.enroll()
    cap = endpoint.settings.max_body_bytes
    huge = b" " * (cap + 1)

    plain = endpoint.client.post("/v1/events", content=huge, headers=auth)
    bomb = endpoint.client.post("/v1/events", content=gzip.compress(huge), headers=auth | {"Content-Encoding": "gzip"})

    _assert_clear_4xx(plain, 413, "larger than")
    _assert_clear_4xx(bomb, 413, "decompressed")


def test_broken_gzip_is_400_and_unknown_encoding_415(endpoint: LiveEndpoint) -> None:
    agent, auth = endpoint.enroll()
    body = gzip.compress(batch_json(agent.batch(agent.events(3))))

    truncated = endpoint.client.post("/v1/events", content=body[:-12], headers=auth | {"Content-Encoding": "gzip"})
    not_gzip = endpoint.client.post("/v1/events", content=b"plain", headers=auth | {"Content-Encoding": "gzip"})
    brotli = endpoint.client.post("/v1/events", content=body, headers=auth | {"Content-Encoding": "br"})

    _assert_clear_4xx(truncated, 400, "gzip")
    _assert_clear_4xx(not_gzip, 400, "gzip")
    _assert_clear_4xx(brotli, 415, "Content-Encoding")


def test_another_devices_batch_is_403(endpoint: LiveEndpoint) -> None:
    agent, auth = endpoint.enroll()
    other, _other_auth = endpoint.enroll()
    mixed = agent.batch(agent.events(1)).model_copy(update={"events": other.events(1)})

    theirs = endpoint.client.post("/v1/events", content=batch_json(other.batch(other.events(1))), headers=auth)
    smuggled = endpoint.client.post("/v1/events", content=batch_json(mixed), headers=auth)

    _assert_clear_4xx(theirs, 403, "device_id")
    _assert_clear_4xx(smuggled, 403, "device_id")


def test_unknown_missing_or_malformed_credential_is_401(endpoint: LiveEndpoint) -> None:
    agent, _auth = endpoint.enroll()
    body = batch_json(agent.batch(agent.events(1)))

    for headers in ({}, {"Authorization": "Bearer dwd_unknown"}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        answer = endpoint.client.post("/v1/events", content=body, headers=headers)
        _assert_clear_4xx(answer, 401)
        assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_overload_is_429_with_retry_after(busy_endpoint: LiveEndpoint) -> None:
    agent, auth = busy_endpoint.enroll()
    other, other_auth = busy_endpoint.enroll(user="ravi")
    first_body = batch_json(agent.batch(agent.events(5)))
    results: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(base_url=busy_endpoint.url, timeout=30) as client:
            results.append(client.post("/v1/events", content=first_body, headers=auth))

    # The endpoint's only slot is held by a batch whose store transaction waits for the device row this
    # test locks (a slow body no longer holds a slot: the slot is taken once the body has arrived).
    sender = threading.Thread(target=send)
    d = tables.devices
    with busy_endpoint.runtime.db.write() as conn:
        conn.execute(select(d.c.device_id).where(d.c.device_id == agent.device_id).with_for_update())
        sender.start()
        wait_for(lambda: busy_endpoint.runtime.limiter.busy == 1, timeout=10, what="the first batch to hold the slot")
        refused = busy_endpoint.client.post(
            "/v1/events", content=batch_json(other.batch(other.events(1))), headers=other_auth
        )
    sender.join(timeout=30)

    _assert_clear_4xx(refused, 429, "busy")
    assert refused.headers["Retry-After"] == "7"
    assert results[0].json() == {"accepted": 5, "duplicates": 0}
    wait_for(lambda: busy_endpoint.runtime.limiter.busy == 0, timeout=10, what="the slot to be released")
    again = busy_endpoint.client.post("/v1/events", content=batch_json(agent.batch(agent.events(1))), headers=auth)
    assert again.json() == {"accepted": 1, "duplicates": 0}
