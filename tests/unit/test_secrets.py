"""SecretStore: keyring use, per-home service names, the 0600 file fallback, and outbox key creation."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail, null

from policy_client.secrets import OutboxKeys, SecretStore, load_or_create_keys, service_name

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")


class MemoryKeyring(KeyringBackend):
    """A working in-memory keyring backend (stands in for the OS store)."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.entries.pop((service, username), None)


class SetRaisesKeyring(MemoryKeyring):
    def set_password(self, service: str, username: str, password: str) -> None:
        raise RuntimeError("locked collection")


class GetRaisesKeyring(MemoryKeyring):
    def get_password(self, service: str, username: str) -> str | None:
        raise OSError("dbus went away")


def _fail() -> Any:
    return fail.Keyring()  # type: ignore[no-untyped-call]


def _null() -> Any:
    return null.Keyring()  # type: ignore[no-untyped-call]


def _reason(store: SecretStore) -> str | None:
    return store.fallback_reason


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keyring_backend_is_used_and_nothing_touches_disk(tmp_path: Path) -> None:
    backend = MemoryKeyring()
    store = SecretStore(tmp_path, backend=backend)
    store.set("device_credential", "s3cret")
    assert store.fallback_reason is None
    assert store.get("device_credential") == "s3cret"
    assert backend.entries == {(service_name(tmp_path), "device_credential"): "s3cret"}
    assert not (tmp_path / "secrets.json").exists()
    store.delete("device_credential")
    assert store.get("device_credential") is None
    store.delete("never-set")  # deleting a missing name is not an error


def test_service_name_differs_per_home(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert service_name(a) != service_name(b)
    assert service_name(a).startswith("deskwarden:")
    backend = MemoryKeyring()
    SecretStore(a, backend=backend).set("x", "1")
    assert SecretStore(b, backend=backend).get("x") is None


@pytest.mark.parametrize("backend", [_fail(), _null()], ids=["fail", "null"])
def test_unusable_backend_falls_back_to_private_file(tmp_path: Path, backend: Any) -> None:
    store = SecretStore(tmp_path, backend=backend)
    assert store.fallback_reason is not None
    assert "no usable keyring backend" in store.fallback_reason
    store.set("data_key", "abc")
    assert _mode(tmp_path / "secrets.json") == 0o600
    assert SecretStore(tmp_path, backend=backend).get("data_key") == "abc"


def test_env_selected_fail_backend_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    import keyring.core

    monkeypatch.setattr(keyring.core, "_keyring_backend", None)
    store = SecretStore(tmp_path)
    assert store.fallback_reason is not None


def test_backend_whose_set_raises_falls_back(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, backend=SetRaisesKeyring())
    assert store.fallback_reason is None  # the read probe worked
    store.set("chain_key", "v")
    assert _reason(store) == "keyring set failed: RuntimeError"
    assert store.get("chain_key") == "v"
    assert _mode(tmp_path / "secrets.json") == 0o600


def test_backend_whose_get_raises_falls_back(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, backend=GetRaisesKeyring())
    assert store.fallback_reason == "keyring get failed: OSError"
    store.set("k", "v")
    assert store.get("k") == "v"


def test_world_readable_file_is_repaired_and_recorded(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text('{"data_key": "x"}')
    path.chmod(0o644)
    store = SecretStore(tmp_path, backend=_fail())
    assert _mode(path) == 0o600
    assert store.mode_repaired
    assert store.fallback_reason is not None
    assert "reset to 600" in store.fallback_reason
    assert store.get("data_key") == "x"


def test_file_written_while_keyring_was_missing_stays_readable(tmp_path: Path) -> None:
    SecretStore(tmp_path, backend=_fail()).set("data_key", "old")
    store = SecretStore(tmp_path, backend=MemoryKeyring())
    assert store.fallback_reason is None
    assert store.get("data_key") == "old"


def test_corrupt_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "secrets.json").write_text("{nope")
    (tmp_path / "secrets.json").chmod(0o600)
    with pytest.raises(ValueError, match="not valid JSON"):
        SecretStore(tmp_path, backend=_fail())


def test_keys_are_created_once_and_stable(tmp_path: Path) -> None:
    backend = MemoryKeyring()
    keys = load_or_create_keys(SecretStore(tmp_path, backend=backend))
    assert isinstance(keys, OutboxKeys)
    assert len(keys.data_key) == 32
    assert len(keys.chain_key) == 32
    assert keys.data_key != keys.chain_key
    assert keys.key_id == hashlib.sha256(keys.data_key).hexdigest()[:16]
    again = load_or_create_keys(SecretStore(tmp_path, backend=backend))
    assert again == keys
    stored = backend.entries[(service_name(tmp_path), "data_key")]
    assert base64.b64decode(stored) == keys.data_key
    assert keys.data_key.hex() not in repr(keys)


def test_keys_in_file_fallback(tmp_path: Path) -> None:
    keys = load_or_create_keys(SecretStore(tmp_path, backend=_fail()))
    assert load_or_create_keys(SecretStore(tmp_path, backend=_fail())) == keys
    assert _mode(tmp_path / "secrets.json") == 0o600


def test_wrong_length_key_is_refused(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, backend=MemoryKeyring())
    store.set("data_key", base64.b64encode(b"short").decode())
    with pytest.raises(ValueError, match="expected 32"):
        load_or_create_keys(store)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the D-Bus shortcut is Linux only")
def test_without_a_session_bus_keyring_is_never_imported(tmp_path: Path) -> None:
    """Importing keyring costs ~20 MB; a headless Linux desk must not pay it for a keyring it cannot reach."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON_KEYRING_BACKEND", "DBUS_SESSION_BUS_ADDRESS")}
    script = (
        "import sys, pathlib; from policy_client.secrets import SecretStore; "
        f"s = SecretStore(pathlib.Path({str(tmp_path)!r})); "
        "print(s.fallback_reason); print('keyring' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    reason, imported = result.stdout.splitlines()
    assert "D-Bus" in reason
    assert imported == "False"
