"""Machine-scope secret backends through their adapters: DPAPI over a locked-down folder (fake DPAPI, fake ACL) and
the System keychain (fake `security`), each also driven through SecretStore the way the service uses them."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from keyring.errors import PasswordDeleteError

from agent_app.core.machine_secrets import (
    ADMINISTRATORS_SID,
    DIRECTORY_SDDL,
    DPAPI_ENTROPY,
    KEYCHAIN_NOT_FOUND,
    SECURITY_TOOL,
    SYSTEM_SID,
    DpapiFileBackend,
    SystemKeychainBackend,
    ToolResult,
    Win32Dpapi,
    machine_backend,
)
from policy_client.secrets import SecretStore, load_or_create_keys

# --- DPAPI -------------------------------------------------------------------------------------------------------


class FakeDpapi:
    """Reversible and tamper-evident enough to tell our blobs from anything else; never the identity."""

    MAGIC = b"DPAPI-MACHINE\0"

    def protect(self, data: bytes, *, entropy: bytes) -> bytes:
        assert entropy == DPAPI_ENTROPY
        return self.MAGIC + bytes(b ^ 0x5A for b in data)

    def unprotect(self, blob: bytes, *, entropy: bytes) -> bytes:
        if not blob.startswith(self.MAGIC) or entropy != DPAPI_ENTROPY:
            raise OSError(None, "CryptUnprotectData failed (Windows error 13)", None, 13)
        return bytes(b ^ 0x5A for b in blob[len(self.MAGIC) :])


class FakeAcl:
    def __init__(self) -> None:
        self.restricted: list[Path] = []
        self.owned: list[str] = []
        self.owners: dict[Path, str] = {}
        self.default_owner = SYSTEM_SID

    def restrict(self, directory: Path) -> None:
        assert directory.is_dir()
        self.restricted.append(directory)

    def take_ownership(self, path: Path) -> None:
        assert path.parent in self.restricted, "written only inside the locked-down folder"
        self.owned.append(path.name)

    def owner_sid(self, path: Path) -> str:
        return self.owners.get(path, self.default_owner)


def dpapi_backend(tmp_path: Path, acl: FakeAcl | None = None) -> DpapiFileBackend:
    return DpapiFileBackend(tmp_path / "ProgramData" / "DeskWarden" / "secrets.dpapi", dpapi=FakeDpapi(), acl=acl)


def test_dpapi_backend_round_trips_and_keeps_no_plaintext(tmp_path: Path) -> None:
    backend = dpapi_backend(tmp_path, FakeAcl())

    backend.set_password("deskwarden:abc", "device_credential", "tok-123456")
    backend.set_password("deskwarden:abc", "data_key", "a2V5")
    backend.set_password("deskwarden:other", "data_key", "b3RoZXI=")

    assert backend.get_password("deskwarden:abc", "device_credential") == "tok-123456"
    assert backend.get_password("deskwarden:other", "data_key") == "b3RoZXI="
    assert backend.get_password("deskwarden:abc", "missing") is None
    assert backend.get_password("deskwarden:nobody", "data_key") is None
    raw = backend.path.read_bytes()
    assert b"tok-123456" not in raw
    assert raw.startswith(FakeDpapi.MAGIC)
    assert [p.name for p in backend.path.parent.iterdir()] == ["secrets.dpapi"], "no temp file left behind"
    fresh = DpapiFileBackend(backend.path, dpapi=FakeDpapi(), acl=FakeAcl())
    assert fresh.get_password("deskwarden:abc", "data_key") == "a2V5"


def test_the_folder_is_locked_down_before_anything_is_read_or_written(tmp_path: Path) -> None:
    acl = FakeAcl()
    backend = dpapi_backend(tmp_path, acl)

    assert backend.get_password("s", "n") is None
    assert acl.restricted == [backend.path.parent]
    backend.set_password("s", "n", "v")
    assert acl.restricted == [backend.path.parent], "once per backend"
    assert len(acl.owned) == 1
    assert acl.owned[0].startswith(".secrets-"), "owned before it replaced the secrets file"


def test_a_planted_secrets_file_is_refused(tmp_path: Path) -> None:
    acl = FakeAcl()
    backend = dpapi_backend(tmp_path, acl)
    backend.set_password("s", "data_key", "ours")
    acl.owners[backend.path] = "S-1-5-21-1-2-3-1001"  # a desk user replaced it with chosen keys

    with pytest.raises(PermissionError, match="S-1-5-21-1-2-3-1001"):
        DpapiFileBackend(backend.path, dpapi=FakeDpapi(), acl=acl).get_password("s", "data_key")


@pytest.mark.parametrize("owner", [SYSTEM_SID, ADMINISTRATORS_SID])
def test_files_owned_by_system_or_administrators_are_trusted(tmp_path: Path, owner: str) -> None:
    acl = FakeAcl()
    backend = dpapi_backend(tmp_path, acl)
    backend.set_password("s", "n", "v")
    acl.default_owner = owner

    assert backend.get_password("s", "n") == "v"


def test_a_blob_dpapi_rejects_is_an_error_not_an_empty_store(tmp_path: Path) -> None:
    backend = dpapi_backend(tmp_path, FakeAcl())
    backend.path.parent.mkdir(parents=True)
    backend.path.write_bytes(b"garbage")

    with pytest.raises(OSError, match="CryptUnprotectData"):
        backend.get_password("s", "n")
    with pytest.raises(OSError, match="CryptUnprotectData"):
        backend.set_password("s", "n", "v")
    assert backend.path.read_bytes() == b"garbage", "a failed read never overwrites the secrets"


def test_a_blob_that_is_not_our_document_is_refused(tmp_path: Path) -> None:
    backend = dpapi_backend(tmp_path, FakeAcl())
    backend.path.parent.mkdir(parents=True)
    backend.path.write_bytes(FakeDpapi().protect(json.dumps([1, 2]).encode(), entropy=DPAPI_ENTROPY))

    with pytest.raises(ValueError, match="does not hold"):
        backend.get_password("s", "n")


def test_delete_removes_one_secret_and_a_missing_one_raises_keyrings_error(tmp_path: Path) -> None:
    backend = dpapi_backend(tmp_path, FakeAcl())
    backend.set_password("s", "a", "1")
    backend.set_password("s", "b", "2")

    backend.delete_password("s", "a")

    assert backend.get_password("s", "a") is None
    assert backend.get_password("s", "b") == "2"
    with pytest.raises(PasswordDeleteError):
        backend.delete_password("s", "a")


def test_secret_store_keeps_the_service_keys_in_dpapi(tmp_path: Path) -> None:
    backend = dpapi_backend(tmp_path, FakeAcl())
    home = tmp_path / "state"
    home.mkdir()

    store = SecretStore(home, backend=backend)
    keys = load_or_create_keys(store)
    store.set("device_credential", "cred")

    assert store.fallback_reason is None
    assert not (home / "secrets.json").exists(), "nothing fell back to the key file"
    again = load_or_create_keys(
        SecretStore(home, backend=DpapiFileBackend(backend.path, dpapi=FakeDpapi(), acl=FakeAcl()))
    )
    assert again.data_key == keys.data_key
    assert again.chain_key == keys.chain_key


def test_directory_acl_is_protected_and_for_system_and_administrators_only() -> None:
    assert DIRECTORY_SDDL.startswith("O:BA")
    dacl = DIRECTORY_SDDL.split("D:", 1)[1]
    assert dacl.startswith("PAI"), "protected: nothing inherited from %ProgramData%"
    assert sorted(dacl[3:].strip("()").split(")(")) == ["A;OICI;FA;;;BA", "A;OICI;FA;;;SY"]


@pytest.mark.skipif(sys.platform == "win32", reason="checks the guard on other systems")
def test_real_dpapi_refuses_off_windows() -> None:
    with pytest.raises(OSError, match="Windows only"):
        Win32Dpapi().protect(b"x", entropy=b"y")


# --- the System keychain -------------------------------------------------------------------------------------


class FakeSecurity:
    """/usr/bin/security over a dict, including `security -i` reading commands from standard input."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str, str], str] = {}
        self.calls: list[tuple[list[str], str | None]] = []
        self.ignore_adds = False

    def __call__(self, argv: Sequence[str], stdin: str | None) -> ToolResult:
        argv = list(argv)
        self.calls.append((argv, stdin))
        assert argv[0] == SECURITY_TOOL
        if argv[1:] == ["-i"]:
            assert stdin is not None
            for line in stdin.splitlines():
                self._command(line.split())
            return ToolResult(0)
        return self._command(argv[1:])

    def _command(self, words: list[str]) -> ToolResult:
        verb, keychain = words[0], words[-1]
        service, account = words[words.index("-s") + 1], words[words.index("-a") + 1]
        key = (keychain, service, account)
        if verb == "add-generic-password":
            assert "-U" in words
            if not self.ignore_adds:
                self.items[key] = bytes.fromhex(words[words.index("-X") + 1]).decode()
            return ToolResult(0)
        if key not in self.items:
            return ToolResult(KEYCHAIN_NOT_FOUND, "", "security: SecKeychainSearchCopyNext: The specified item could")
        if verb == "find-generic-password":
            assert "-w" in words
            return ToolResult(0, self.items[key] + "\n")
        if verb == "delete-generic-password":
            del self.items[key]
            return ToolResult(0)
        raise AssertionError(words)


def test_keychain_round_trip_in_the_system_keychain() -> None:
    security = FakeSecurity()
    backend = SystemKeychainBackend(runner=security)

    backend.set_password("deskwarden:abc", "device_credential", "tok-123456")

    assert backend.get_password("deskwarden:abc", "device_credential") == "tok-123456"
    assert backend.get_password("deskwarden:abc", "missing") is None
    assert security.items == {
        ("/Library/Keychains/System.keychain", "deskwarden:abc", "device_credential"): "tok-123456"
    }


def test_keychain_values_never_appear_on_a_command_line() -> None:
    security = FakeSecurity()
    backend = SystemKeychainBackend(runner=security)

    secret = "c2VjcmV0IGtleQ=="
    backend.set_password("deskwarden:abc", "data_key", secret)

    command_lines = [" ".join(argv) for argv, _ in security.calls]
    assert not any(secret in line or secret.encode().hex() in line for line in command_lines)
    fed = [stdin or "" for argv, stdin in security.calls if argv[1:] == ["-i"]]
    assert len(fed) == 1
    assert secret.encode().hex() in fed[0]


def test_keychain_set_fails_when_the_item_did_not_stick() -> None:
    security = FakeSecurity()
    security.ignore_adds = True  # `security -i` exits 0 whatever its commands did

    with pytest.raises(OSError, match="could not store"):
        SystemKeychainBackend(runner=security).set_password("s", "n", "v")


def test_keychain_errors_other_than_not_found_raise() -> None:
    def locked(argv: Sequence[str], stdin: str | None) -> ToolResult:
        return ToolResult(51, "", "security: SecKeychainItemCopyContent: User interaction is not allowed.")

    with pytest.raises(OSError, match="interaction"):
        SystemKeychainBackend(runner=locked).get_password("s", "n")


def test_keychain_delete_and_missing_delete() -> None:
    security = FakeSecurity()
    backend = SystemKeychainBackend(runner=security)
    backend.set_password("s", "n", "v")

    backend.delete_password("s", "n")

    assert backend.get_password("s", "n") is None
    with pytest.raises(PasswordDeleteError):
        backend.delete_password("s", "n")


@pytest.mark.parametrize(("service", "name"), [("s -A", "n"), ("s", "n\nadd-generic-password"), ("", "n")])
def test_keychain_refuses_names_that_would_change_the_command(service: str, name: str) -> None:
    security = FakeSecurity()

    with pytest.raises(ValueError, match="unsupported"):
        SystemKeychainBackend(runner=security).set_password(service, name, "v")
    assert security.calls == []


def test_keychain_refuses_values_find_would_print_as_hex() -> None:
    with pytest.raises(ValueError, match="printable"):
        SystemKeychainBackend(runner=FakeSecurity()).set_password("s", "n", "two\nlines")


def test_secret_store_keeps_the_service_keys_in_the_system_keychain(tmp_path: Path) -> None:
    security = FakeSecurity()
    store = SecretStore(tmp_path, backend=SystemKeychainBackend(runner=security))

    keys = load_or_create_keys(store)

    assert store.fallback_reason is None
    assert not (tmp_path / "secrets.json").exists()
    again = load_or_create_keys(SecretStore(tmp_path, backend=SystemKeychainBackend(runner=security)))
    assert again.data_key == keys.data_key


# --- choosing ------------------------------------------------------------------------------------------------


def test_machine_backend_per_os_touches_nothing() -> None:
    assert isinstance(machine_backend(platform="win32"), DpapiFileBackend)
    assert isinstance(machine_backend(platform="darwin"), SystemKeychainBackend)
    assert machine_backend(platform="linux") is None
