"""Crashes the fuzzers found in the read API, kept as regression tests named after what broke."""

from __future__ import annotations

import pytest

from tests.fuzz.conftest import FuzzEndpoint


@pytest.mark.parametrize(
    ("path", "param"),
    [("/v1/alerts", "after_id"), ("/v1/events", "after_pk"), ("/v1/events", "since_seq")],
)
def test_a_paging_cursor_beyond_64_bits_is_a_422_not_a_driver_overflow(
    fuzz_endpoint: FuzzEndpoint, path: str, param: str
) -> None:
    response = fuzz_endpoint.client.get(path, params={param: 2**63}, headers=fuzz_endpoint.api_auth)
    assert response.status_code == 422, response.text
    ok = fuzz_endpoint.client.get(path, params={param: 2**63 - 1}, headers=fuzz_endpoint.api_auth)
    assert ok.status_code == 200, ok.text
