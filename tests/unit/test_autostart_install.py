"""`deskwarden install` / `uninstall` end to end on Linux files: enrolment against a loopback endpoint, autostart
files under a temporary XDG_CONFIG_HOME, the unlock-code gate, and the uninstall event through the outbox."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent_app.core import paths
from agent_app.core.autostart import install, uninstall
from agent_app.core.autostart.linux import LinuxAutostart
from agent_app.core.autostart.model import CommandResult, LaunchSpec
from agent_app.core.outbox import Outbox
from agent_app.core.paths import assets_dir
from policy_client.secrets import SecretStore, load_or_create_keys
from policy_client.unlock_token import issue_unlock_token
from tests.integration.faulty_server import FaultyServer

TOKEN = "team-token-0123456789"
NOW = datetime(2025, 3, 14, 10, 30, tzinfo=UTC)
SPEC = LaunchSpec(argv=("/opt/deskwarden/deskwarden", "agent"), version="0.1.0")


class OkRunner:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(list(argv))
        return CommandResult(0)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv(paths.ENV_HOME, str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return paths.state_dir()


@pytest.fixture
def adapter(tmp_path: Path) -> LinuxAutostart:
    return LinuxAutostart(config_home=tmp_path / "config", run=OkRunner(), systemd=True)


SIGNING_KEY = Ed25519PrivateKey.generate()
"""The endpoint's key: it signs the policy the agent pins at enrolment and the unlock tokens."""


@pytest.fixture
def server() -> Iterator[FaultyServer]:
    public = SIGNING_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    with FaultyServer() as srv:
        srv.add_enroll_token(TOKEN)
        srv.publish_policy(b"{}", version=0, key_id="k-1", public_key_b64=base64.b64encode(public).decode())
        yield srv


def _autostart_files(tmp_path: Path) -> list[Path]:
    return [
        tmp_path / "config" / "autostart" / "deskwarden.desktop",
        tmp_path / "config" / "systemd" / "user" / "deskwarden.service",
    ]


def _queued(home: Path) -> list[dict[str, object]]:
    outbox = Outbox(paths.outbox_path(home), keys=load_or_create_keys(SecretStore(home)))
    try:
        return outbox.pending()
    finally:
        outbox.close()


def _set_credential(home: Path, value: str = "cred-abc") -> str:
    SecretStore(home).set("device_credential", value)
    return value


def test_install_without_server_only_registers_autostart(
    home: Path, adapter: LinuxAutostart, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert install(server=None, token=None, ca=None, all_users=False, adapter=adapter, spec=SPEC) == 0
    assert all(path.is_file() for path in _autostart_files(tmp_path))
    assert not paths.config_path(home).exists()
    assert "registered:" in capsys.readouterr().out


def test_install_needs_server_and_token_together(home: Path, adapter: LinuxAutostart, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--server and --token"):
        install(server="https://dw.example.com", token=None, ca=None, all_users=False, adapter=adapter, spec=SPEC)
    assert not any(path.exists() for path in _autostart_files(tmp_path))


def test_install_enrols_then_uninstall_with_code_reports_to_endpoint(
    home: Path, adapter: LinuxAutostart, server: FaultyServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert install(server=server.url, token=TOKEN, ca=None, all_users=False, adapter=adapter, spec=SPEC) == 0
    config = json.loads(paths.config_path(home).read_text(encoding="utf-8"))
    assert config["device_id"] == "dev-test-1"
    assert all(path.is_file() for path in _autostart_files(tmp_path))
    code = _token(scope="uninstall")

    result = uninstall(unlock_token=code.lower(), adapter=adapter, spec=SPEC, now=lambda: NOW, deliver_timeout=10)

    assert result == 0
    assert not any(path.exists() for path in _autostart_files(tmp_path))
    stopped = [e for e in server.accepted_events().values() if e["kind"] == "agent.stopped"]
    assert len(stopped) == 1
    assert stopped[0]["data"]["reason"] == "uninstall"
    assert stopped[0]["data"]["unlock_token_used"] is True
    assert "uninstall reported to the endpoint" in capsys.readouterr().out


def test_uninstall_without_code_is_refused_and_reported(
    home: Path, adapter: LinuxAutostart, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter.register(SPEC)
    _set_credential(home)

    assert uninstall(unlock_token=None, adapter=adapter, spec=SPEC, now=lambda: NOW) == 3

    assert all(path.is_file() for path in _autostart_files(tmp_path))
    assert "uninstall refused (no unlock token)" in capsys.readouterr().err
    events = _queued(home)
    assert [(e["kind"], e["data"]["reason"]) for e in events] == [("agent.tamper", "uninstall_refused")]  # type: ignore[index]


def test_uninstall_with_wrong_or_stale_code_is_refused(home: Path, adapter: LinuxAutostart, tmp_path: Path) -> None:
    adapter.register(SPEC)
    _set_credential(home)
    _pin_endpoint_key(home)
    stale = _token(scope="uninstall").replace("DW1-", "DW1-A", 1)  # a changed character

    assert uninstall(unlock_token="00000000", adapter=adapter, spec=SPEC, now=lambda: NOW) == 3
    assert uninstall(unlock_token=stale, adapter=adapter, spec=SPEC, now=lambda: NOW) == 3
    assert all(path.is_file() for path in _autostart_files(tmp_path))


def test_uninstall_not_enrolled_cannot_be_unlocked(home: Path, adapter: LinuxAutostart) -> None:
    adapter.register(SPEC)
    assert uninstall(unlock_token="deadbeef", adapter=adapter, spec=SPEC, now=lambda: NOW) == 3


def test_uninstall_with_valid_code_offline_keeps_event_queued(
    home: Path, adapter: LinuxAutostart, tmp_path: Path
) -> None:
    adapter.register(SPEC)
    _set_credential(home)
    _pin_endpoint_key(home)
    code = _token(scope="uninstall")

    assert uninstall(unlock_token=code, adapter=adapter, spec=SPEC, now=lambda: NOW) == 0

    assert not any(path.exists() for path in _autostart_files(tmp_path))
    events = _queued(home)
    assert [e["kind"] for e in events] == ["agent.unlock_used", "agent.stopped"]
    assert events[1]["data"] == {"reason": "uninstall", "unlock_token_used": True, "removed": 2}


def test_uninstall_allowed_by_policy_needs_no_code(
    home: Path, adapter: LinuxAutostart, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = tmp_path / "assets"
    shutil.copytree(assets_dir() / "policy", assets / "policy")
    default = assets / "policy" / "default.json"
    policy = json.loads(default.read_text(encoding="utf-8"))
    policy["controls"]["agent"]["allow_quit"] = True
    default.write_text(json.dumps(policy), encoding="utf-8")
    monkeypatch.setenv("DESKWARDEN_ASSETS", str(assets))
    adapter.register(SPEC)

    assert uninstall(unlock_token=None, adapter=adapter, spec=SPEC, now=lambda: NOW) == 0

    assert not any(path.exists() for path in _autostart_files(tmp_path))
    assert _queued(home)[0]["data"]["unlock_token_used"] is False  # type: ignore[index]


def _token(*, scope: str, device_id: str = "dev-test-1", key: Ed25519PrivateKey = SIGNING_KEY) -> str:
    """An unlock token as the endpoint would sign it for this device."""
    text, _ = issue_unlock_token(
        key,
        device_id=device_id,
        scope=scope,
        minutes=30,
        expires_at=NOW + timedelta(hours=8),  # type: ignore[arg-type]
    )
    return text


def _pin_endpoint_key(home: Path) -> None:
    """What enrolment writes: the device id and the endpoint's pinned public key."""
    public = SIGNING_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    config = {
        "server_url": "http://127.0.0.1:9",
        "device_id": "dev-test-1",
        "team": "t",
        "policy_key_id": "k-1",
        "policy_public_key": base64.b64encode(public).decode(),
    }
    paths.config_path(home).write_text(json.dumps(config), encoding="utf-8")


def test_uninstall_refuses_a_quit_token_another_devices_token_a_forged_one_and_a_reused_one(
    home: Path, adapter: LinuxAutostart
) -> None:
    adapter.register(SPEC)
    _set_credential(home)
    _pin_endpoint_key(home)
    assert uninstall(unlock_token=_token(scope="quit"), adapter=adapter, spec=SPEC, now=lambda: NOW) == 3
    assert uninstall(unlock_token=_token(scope="uninstall", device_id="dev-2"), adapter=adapter, spec=SPEC) == 3
    forged = _token(scope="uninstall", key=Ed25519PrivateKey.generate())
    assert uninstall(unlock_token=forged, adapter=adapter, spec=SPEC, now=lambda: NOW) == 3
    good = _token(scope="uninstall")
    assert uninstall(unlock_token=good, adapter=adapter, spec=SPEC, now=lambda: NOW) == 0
    adapter.register(SPEC)
    assert uninstall(unlock_token=good, adapter=adapter, spec=SPEC, now=lambda: NOW) == 3  # a token works once
