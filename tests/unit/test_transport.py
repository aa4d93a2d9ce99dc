"""Transport rules: which endpoint URLs are accepted, gzip bodies, headers, and error translation."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from policy_client.transport import (
    InsecureUrlError,
    Transport,
    TransportError,
    gzip_bytes,
    is_loopback_host,
    validate_base_url,
)
from tests.integration.faulty_server import FaultyServer


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://dw.example.com", "https://dw.example.com"),
        ("https://dw.example.com/", "https://dw.example.com"),
        ("https://dw.example.com:8443/agent/", "https://dw.example.com:8443/agent"),
        ("HTTPS://DW.example.com", "https://dw.example.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.8.9.10", "http://127.8.9.10"),
        ("http://localhost:9000", "http://localhost:9000"),
        ("http://[::1]:9000/", "http://[::1]:9000"),
        ("https://[2001:db8::1]:443", "https://[2001:db8::1]:443"),
    ],
)
def test_accepted_urls_are_normalised(url: str, expected: str) -> None:
    assert validate_base_url(url) == expected


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://dw.example.com", "plain http"),
        ("http://10.0.0.5:8000", "plain http"),
        ("http://localhost.evil.com", "plain http"),
        ("http://127.0.0.1.nip.io", "plain http"),
        ("http://[::2]", "plain http"),
        ("ftp://dw.example.com", "https://"),
        ("dw.example.com", "https://"),
        ("https://", "no host"),
        ("https://user:pw@dw.example.com", "user name"),
        ("https://dw.example.com/?x=1", "query"),
        ("https://dw.example.com:99999", "malformed"),
    ],
)
def test_refused_urls_say_why(url: str, why: str) -> None:
    with pytest.raises(InsecureUrlError, match=why):
        validate_base_url(url)


def test_transport_refuses_plain_http_to_a_remote_host() -> None:
    with pytest.raises(InsecureUrlError):
        Transport("http://192.0.2.10")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("128.0.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 - a string, not a bind
        ("example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_missing_ca_bundle_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="CA bundle"):
        Transport("https://dw.example.com", ca_bundle=tmp_path / "nope.pem")


def test_gzip_round_trip() -> None:
    body = b'{"events":[' + b'{"seq":1},' * 1000 + b"]}"
    packed = gzip_bytes(body)
    assert len(packed) < len(body) // 5
    assert gzip.decompress(packed) == body


def test_repr_never_shows_the_credential() -> None:
    transport = Transport("https://dw.example.com", credential="s3cret-credential-value")
    try:
        assert "s3cret" not in repr(transport)
    finally:
        transport.close()


def test_posts_gzip_with_the_bearer_credential() -> None:
    with FaultyServer() as server:
        transport = Transport(server.url, credential="cred-0123456789abcdef")
        try:
            response = transport.post_json("/v1/heartbeat", b'{"queue_depth": 3}')
        finally:
            transport.close()
        assert response.status_code == 200
        (record,) = server.requests("/v1/heartbeat")
        assert record.gzip
        assert record.credential == "cred-0123456789abcdef"
        assert server.heartbeats()[0].queue_depth == 3


def test_a_body_compressed_ahead_is_posted_as_gzip_with_the_bearer_credential() -> None:
    with FaultyServer() as server:
        transport = Transport(server.url, credential="cred-0123456789abcdef", gzip_level=6)
        try:
            packed = transport.compress(b'{"queue_depth": 4}')
            response = transport.post_gzipped("/v1/heartbeat", packed)
        finally:
            transport.close()
        assert gzip.decompress(packed) == b'{"queue_depth": 4}'
        assert response.status_code == 200
        (record,) = server.requests("/v1/heartbeat")
        assert record.gzip
        assert record.credential == "cred-0123456789abcdef"
        assert server.heartbeats()[0].queue_depth == 4


def test_connection_refused_becomes_transport_error() -> None:
    with FaultyServer() as server:
        url = server.url
    transport = Transport(url, connect_timeout=1.0)
    try:
        with pytest.raises(TransportError, match="failed"):
            transport.get("/v1/policy")
    finally:
        transport.close()
