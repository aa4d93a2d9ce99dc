"""`deskwarden install` / `uninstall` end to end on Linux files: enrolment against a loopback endpoint, autostart
files under a temporary XDG_CONFIG_HOME, the unlock-code gate, and the uninstall event through the outbox."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent_app.core import paths
from agent_app.core.autostart import install, uninstall
from agent_app.core.autostart.linux import LinuxAutostart
from agent_app.core.autostart.model import CommandResult, LaunchSpec
from agent_app.core.autostart.unlock import check_unlock_code
from agent_app.core.outbox import Outbox
from agent_app.core.runtime import assets_dir
from policy_client.schema import unlock_code
from policy_client.secrets import SecretStore, load_or_create_keys
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


@pytest.fixture
def server() -> Iterator[FaultyServer]:
    public = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
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
    code = _code(home, NOW.date())

    result = uninstall(unlock_code=code.upper(), adapter=adapter, spec=SPEC, now=lambda: NOW, deliver_timeout=10)

    assert result == 0
    assert not any(path.exists() for path in _autostart_files(tmp_path))
    stopped = [e for e in server.accepted_events().values() if e["kind"] == "agent.stopped"]
    assert len(stopped) == 1
    assert stopped[0]["data"]["reason"] == "uninstall"
    assert stopped[0]["data"]["unlock_code_used"] is True
    assert "uninstall reported to the endpoint" in capsys.readouterr().out


def test_uninstall_without_code_is_refused_and_reported(
    home: Path, adapter: LinuxAutostart, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter.register(SPEC)
    _set_credential(home)

    assert uninstall(unlock_code=None, adapter=adapter, spec=SPEC, now=lambda: NOW) == 3

    assert all(path.is_file() for path in _autostart_files(tmp_path))
    assert "uninstall refused (no unlock code)" in capsys.readouterr().err
    events = _queued(home)
    assert [(e["kind"], e["data"]["reason"]) for e in events] == [("agent.tamper", "uninstall_refused")]  # type: ignore[index]


def test_uninstall_with_wrong_or_stale_code_is_refused(home: Path, adapter: LinuxAutostart, tmp_path: Path) -> None:
    adapter.register(SPEC)
    _set_credential(home)
    stale = _code(home, (NOW - timedelta(days=2)).date())

    assert uninstall(unlock_code="00000000", adapter=adapter, spec=SPEC, now=lambda: NOW) == 3
    assert uninstall(unlock_code=stale, adapter=adapter, spec=SPEC, now=lambda: NOW) == 3
    assert all(path.is_file() for path in _autostart_files(tmp_path))


def test_uninstall_not_enrolled_cannot_be_unlocked(home: Path, adapter: LinuxAutostart) -> None:
    adapter.register(SPEC)
    assert uninstall(unlock_code="deadbeef", adapter=adapter, spec=SPEC, now=lambda: NOW) == 3


def test_uninstall_with_valid_code_offline_keeps_event_queued(
    home: Path, adapter: LinuxAutostart, tmp_path: Path
) -> None:
    adapter.register(SPEC)
    _set_credential(home)
    code = _code(home, (NOW - timedelta(days=1)).date())  # yesterday's code still works

    assert uninstall(unlock_code=code, adapter=adapter, spec=SPEC, now=lambda: NOW) == 0

    assert not any(path.exists() for path in _autostart_files(tmp_path))
    events = _queued(home)
    assert [e["kind"] for e in events] == ["agent.stopped"]
    assert events[0]["data"] == {"reason": "uninstall", "unlock_code_used": True, "removed": 2}


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

    assert uninstall(unlock_code=None, adapter=adapter, spec=SPEC, now=lambda: NOW) == 0

    assert not any(path.exists() for path in _autostart_files(tmp_path))
    assert _queued(home)[0]["data"]["unlock_code_used"] is False  # type: ignore[index]


def test_unlock_code_matches_runtime_rule() -> None:
    """The endpoint issues HMAC-SHA256(credential, "unlock:<UTC date>")[:8]; today's and yesterday's are valid."""
    assert check_unlock_code(b"c", unlock_code(b"c", NOW.date()), now=NOW)
    assert check_unlock_code(b"c", " " + unlock_code(b"c", NOW.date()).upper() + "\n", now=NOW)
    assert not check_unlock_code(b"other", unlock_code(b"c", NOW.date()), now=NOW)
    assert not check_unlock_code(None, unlock_code(b"c", NOW.date()), now=NOW)
    assert not check_unlock_code(b"c", unlock_code(b"c", (NOW + timedelta(days=1)).date()), now=NOW)


def _code(home: Path, day: date) -> str:
    """The code the endpoint would issue for this agent's chain key on `day`."""
    return unlock_code(load_or_create_keys(SecretStore(home)).chain_key, day)
