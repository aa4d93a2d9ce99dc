"""Hypothesis against POST /v1/events: arbitrary bytes, gzip and JSON shapes get 2xx or 4xx, never 5xx."""

from __future__ import annotations

import gzip
import json
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import budget
from tests.fuzz.conftest import FuzzEndpoint

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
ENCODINGS = st.sampled_from([None, "gzip", "x-gzip", "identity", "deflate", "br", "GZIP", ""])


def _post(endpoint: FuzzEndpoint, body: bytes, *, encoding: str | None) -> int:
    headers = {**endpoint.device_auth, "Content-Type": "application/json"}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    response = endpoint.client.post("/v1/events", content=body, headers=headers)
    assert response.status_code < 500, (response.status_code, response.text[:500], body[:200])
    if response.status_code >= 400:
        assert "detail" in response.json(), response.text
    return response.status_code


@st.composite
def event_like(draw: st.DrawFn, device_id: str) -> dict[str, Any]:
    """Mostly well-formed events with one field fuzzed, so validation gets past the envelope."""
    event: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "device_id": device_id,
        "seq": draw(st.integers(min_value=-5, max_value=2**64)),
        "ts": draw(
            st.sampled_from(["2024-05-01T10:00:00Z", "2024-05-01T10:00:00", "not a time", "9999-12-31T23:59:59Z"])
        ),
        "kind": draw(st.sampled_from(["usb.mounted", "agent.loss", "nope", ""])),
        "severity": draw(st.sampled_from(["info", "critical", "huge"])),
        "user": draw(st.text(max_size=10)),
        "action": draw(st.sampled_from(["observed", "blocked", "zapped"])),
        "data": draw(st.dictionaries(st.text(max_size=8), JSON, max_size=4)),
        "mac": draw(st.sampled_from(["0" * 64, "f" * 64, "xyz"])),
    }
    victim = draw(st.sampled_from([None, *event]))
    if victim is not None:
        event[victim] = draw(JSON)
    return event


@budget(150)
@given(raw=st.binary(max_size=4096), encoding=ENCODINGS)
def test_arbitrary_bytes_get_a_4xx(fuzz_endpoint: FuzzEndpoint, raw: bytes, encoding: str | None) -> None:
    status = _post(fuzz_endpoint, raw, encoding=encoding)
    assert status >= 400


@budget(150)
@given(raw=st.binary(max_size=4096), cut=st.integers(min_value=0, max_value=64))
def test_gzip_of_arbitrary_or_truncated_bytes_never_5xx(fuzz_endpoint: FuzzEndpoint, raw: bytes, cut: int) -> None:
    packed = gzip.compress(raw)
    _post(fuzz_endpoint, packed[: max(0, len(packed) - cut)], encoding="gzip")


@budget(150)
@given(body=JSON, gzipped=st.booleans())
def test_arbitrary_json_never_5xx(fuzz_endpoint: FuzzEndpoint, body: object, gzipped: bool) -> None:
    raw = json.dumps(body).encode()
    _post(fuzz_endpoint, gzip.compress(raw) if gzipped else raw, encoding="gzip" if gzipped else None)


@budget(200)
@given(data=st.data())
def test_batches_with_one_fuzzed_field_never_5xx(fuzz_endpoint: FuzzEndpoint, data: st.DataObject) -> None:
    events = data.draw(st.lists(event_like(fuzz_endpoint.device_id), max_size=4))
    body: dict[str, Any] = {"device_id": fuzz_endpoint.device_id, "events": events}
    if data.draw(st.booleans()):
        body[data.draw(st.sampled_from(["device_id", "events", "extra"]))] = data.draw(JSON)
    raw = json.dumps(body).encode()
    _post(fuzz_endpoint, raw, encoding=None)
