"""Enrolment against a real loopback endpoint, and the agent config file (atomic save, .bak, corrupt file)."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from agent_app.core import paths
from policy_client.agent_config import (
    CONFIG_FILENAME,
    AgentConfig,
    ConfigError,
    backup_path,
    load_config,
    save_config,
)
from policy_client.enrollment import CREDENTIAL_NAME, EnrollmentError, enroll
from tests.integration.faulty_server import FaultyServer

TOKEN = "team-token-0123456789"
CHAIN_KEY = bytes(range(32))


class MemoryStore:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def set(self, name: str, value: str) -> None:
        self.values[name] = value


def _public_key_b64() -> str:
    raw = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return base64.b64encode(raw).decode()


def _server(**kwargs: object) -> FaultyServer:
    server = FaultyServer(**kwargs)  # type: ignore[arg-type]
    server.add_enroll_token(TOKEN)
    server.publish_policy(b"{}", version=0, key_id="k-2024", public_key_b64=_public_key_b64())
    return server


def _config(**overrides: str) -> AgentConfig:
    values = {
        "server_url": "https://dw.example.com",
        "device_id": "dev-1",
        "team": "collections",
        "policy_key_id": "k1",
        "policy_public_key": _public_key_b64(),
    }
    values.update(overrides)
    return AgentConfig(**values)


def test_config_filename_matches_agent_paths(tmp_path: Path) -> None:
    assert paths.config_path(tmp_path) == tmp_path / CONFIG_FILENAME


def test_enroll_saves_credential_then_config(tmp_path: Path) -> None:
    store = MemoryStore()
    with _server() as server:
        config = enroll(server.url + "/", TOKEN, home=tmp_path, store=store, chain_key=CHAIN_KEY, hostname="desk-7")
        (request,) = server.enrolments()
    assert config.device_id == "dev-test-1"
    assert config.team == "collections"
    assert config.policy_key_id == "k-2024"
    assert len(config.public_key_bytes()) == 32
    assert config.server_url == server.url
    assert store.values[CREDENTIAL_NAME] == "cred-0123456789abcdef"
    assert load_config(tmp_path / CONFIG_FILENAME) == config
    assert base64.b64decode(request.chain_key) == CHAIN_KEY
    assert request.hostname == "desk-7"
    assert "cred-" not in (tmp_path / CONFIG_FILENAME).read_text()


def test_bad_token_is_a_clear_error_and_saves_nothing(tmp_path: Path) -> None:
    store = MemoryStore()
    with _server() as server, pytest.raises(EnrollmentError, match="wrong, expired or already used") as info:
        enroll(server.url, "wrong-token-123", home=tmp_path, store=store, chain_key=CHAIN_KEY)
    assert "wrong-token-123" not in str(info.value)
    assert store.values == {}
    assert not (tmp_path / CONFIG_FILENAME).exists()


def test_token_is_single_use(tmp_path: Path) -> None:
    with _server() as server:
        enroll(server.url, TOKEN, home=tmp_path, store=MemoryStore(), chain_key=CHAIN_KEY)
        with pytest.raises(EnrollmentError, match="refused the enrolment token"):
            enroll(server.url, TOKEN, home=tmp_path / "b", store=MemoryStore(), chain_key=CHAIN_KEY)


def test_unreachable_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    with _server() as server:
        url = server.url
    with pytest.raises(EnrollmentError, match="cannot reach the endpoint"):
        enroll(url, TOKEN, home=tmp_path, store=MemoryStore(), chain_key=CHAIN_KEY)


def test_plain_http_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EnrollmentError, match="refusing plain http"):
        enroll("http://dw.example.com", TOKEN, home=tmp_path, store=MemoryStore(), chain_key=CHAIN_KEY)


def _tls_material(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "deskwarden-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "ca.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


def test_untrusted_certificate_is_a_tls_error_and_a_ca_bundle_fixes_it(tmp_path: Path) -> None:
    context, ca = _tls_material(tmp_path)
    home = tmp_path / "home"
    with _server(tls=context) as server:
        assert server.url.startswith("https://")
        with pytest.raises(EnrollmentError, match=r"TLS verification .* failed.*CA bundle"):
            enroll(server.url, TOKEN, home=home, store=MemoryStore(), chain_key=CHAIN_KEY)
        config = enroll(server.url, TOKEN, home=home, store=MemoryStore(), chain_key=CHAIN_KEY, ca_bundle=ca)
    assert config.ca_bundle == str(ca.resolve())


# --- agent config file ---------------------------------------------------------------------------


def test_missing_config_means_not_enrolled(tmp_path: Path) -> None:
    assert load_config(tmp_path / "agent.json") is None


def test_save_keeps_the_previous_good_file_as_bak(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    first, second = _config(device_id="dev-1"), _config(device_id="dev-2")
    save_config(path, first)
    save_config(path, second)
    assert load_config(path) == second
    assert load_config(backup_path(path)) == first
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"server_url": "https://x"}', "device_id"),
        (b"[]", "invalid"),
    ],
)
def test_corrupt_config_is_a_clear_error_naming_the_backup(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "agent.json"
    good = _config()
    save_config(path, good)
    save_config(path, good)  # now a .bak exists
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(backup_path(path)) in str(info.value)
    assert load_config(path, use_backup=True) == good


def test_config_with_plain_http_remote_url_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    data = json.loads(_config().model_dump_json())
    data["server_url"] = "http://dw.example.com"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="plain http"):
        load_config(path)


def test_config_rejects_a_short_public_key() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        _config(policy_public_key=base64.b64encode(b"short").decode())
