"""Agent secrets (outbox data key, chain key, device credential) in the OS credential store.

Falls back to a 0600 JSON key file under the agent home when no keyring backend works (headless
Linux). Thread-safe; used by the agent's main thread at start-up and by enrolment.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import stat
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SERVICE_PREFIX = "deskwarden:"
FILE_NAME = "secrets.json"
KEY_BYTES = 32
_PRIVATE_MODE = 0o600


def service_name(home: Path) -> str:
    """Keyring service name for one agent home, so agents and tests on one machine never share keys."""
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
    return SERVICE_PREFIX + digest


_NO_KEYRING_BACKENDS = frozenset({"keyring.backends.fail.Keyring", "keyring.backends.null.Keyring"})


class KeyringUnreachable(RuntimeError):
    """The OS keyring cannot work here; known without importing keyring."""


def _default_backend() -> Any:
    # Importing keyring and discovering its backends costs ~20 MB of resident memory (entry points,
    # importlib metadata, D-Bus bindings), a quarter of the agent's budget. When the answer is known
    # to be "no keyring", skip the import entirely.
    configured = os.environ.get("PYTHON_KEYRING_BACKEND", "")
    if configured in _NO_KEYRING_BACKENDS:
        raise KeyringUnreachable(f"no usable keyring backend ({configured})")
    if sys.platform.startswith("linux") and not configured and not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        raise KeyringUnreachable("no D-Bus session bus, so the Secret Service keyring is unreachable")
    import keyring  # lazy: backend discovery touches D-Bus / the keychain

    return keyring.get_keyring()


def _unusable_reason(backend: Any) -> str | None:
    """Why a backend cannot be used at all (keyring's fail/null backends), or None."""
    from keyring.backends import fail, null

    if isinstance(backend, fail.Keyring | null.Keyring):
        return f"no usable keyring backend ({type(backend).__module__}.{type(backend).__name__})"
    return None


class SecretStore:
    """Named string secrets for one agent home.

    `backend` is a keyring backend object (tests pass one); by default keyring's own choice.
    When it is unusable, or any get/set through it raises, secrets live in `home/secrets.json`
    (mode 0600) and `fallback_reason` says why; the agent raises a warning event from it.
    """

    def __init__(self, home: Path, *, backend: Any | None = None, machine: bool = False) -> None:
        """`machine=True` is the privileged service: secrets belong to the machine, not to a person. With a
        `backend` (DPAPI machine scope, the System keychain) they go there; without one (Linux) the 0600 key
        file in the root-only state directory IS the store, by design, so no fallback is reported."""
        self._home = home
        self._service = service_name(home)
        self._file = home / FILE_NAME
        self._lock = threading.RLock()
        self._fallback_reason: str | None = None
        self.mode_repaired = False
        """True when the key file was group/world readable and its mode was reset to 0600."""
        self._backend: Any | None = None
        if machine and backend is None:
            self._read_file()  # verifies (and repairs) the file mode now
            return
        try:
            chosen = backend if backend is not None else _default_backend()
        except KeyringUnreachable as exc:
            self._use_file(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - any failure to find a backend means "use the file"
            self._use_file(f"keyring unavailable: {type(exc).__name__}")
            return
        reason = _unusable_reason(chosen)
        if reason is not None:
            self._use_file(reason)
            return
        self._backend = chosen
        try:  # a read-only probe: a locked or broken keyring usually fails here
            chosen.get_password(self._service, "data_key")
        except Exception as exc:  # noqa: BLE001 - keyring backends raise anything (D-Bus, OS errors)
            self._use_file(f"keyring get failed: {type(exc).__name__}")

    @property
    def fallback_reason(self) -> str | None:
        """None when the OS keyring is used; otherwise why the key file is used instead."""
        return self._fallback_reason

    @property
    def file_path(self) -> Path:
        return self._file

    def get(self, name: str) -> str | None:
        with self._lock:
            if self._backend is not None:
                try:
                    value = self._backend.get_password(self._service, name)
                except Exception as exc:  # noqa: BLE001
                    self._use_file(f"keyring get failed: {type(exc).__name__}")
                else:
                    if value is not None:
                        return str(value)
            # Read through to the file even when the keyring works: keys created while the agent
            # ran without a keyring must stay readable once one appears, or the outbox is lost.
            return self._read_file().get(name)

    def set(self, name: str, value: str) -> None:
        with self._lock:
            if self._backend is not None:
                try:
                    self._backend.set_password(self._service, name, value)
                    stored = self._backend.get_password(self._service, name)
                except Exception as exc:  # noqa: BLE001
                    self._use_file(f"keyring set failed: {type(exc).__name__}")
                else:
                    if stored == value:
                        return
                    self._use_file("keyring did not keep a stored secret")
            data = self._read_file()
            data[name] = value
            self._write_file(data)

    def delete(self, name: str) -> None:
        with self._lock:
            if self._backend is not None:
                with contextlib.suppress(Exception):  # missing entries raise PasswordDeleteError
                    self._backend.delete_password(self._service, name)
            data = self._read_file()
            if name in data:
                del data[name]
                self._write_file(data)

    # --- file fallback -----------------------------------------------------------------------

    def _use_file(self, reason: str) -> None:
        if self._fallback_reason is None:
            log.warning("secrets fall back to a private key file: %s", reason)
        self._backend = None
        self._fallback_reason = reason
        self._read_file()  # verifies (and repairs) the file mode now, not at the first secret

    def _read_file(self) -> dict[str, str]:
        try:
            fd = os.open(self._file, os.O_RDONLY)
        except FileNotFoundError:
            return {}
        with os.fdopen(fd, "rb") as handle:
            self._check_mode(handle.fileno())
            raw = handle.read()
        try:
            data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"secret file {self._file} is not valid JSON; fix or remove it") from exc
        if not isinstance(data, dict):
            raise ValueError(f"secret file {self._file} must hold a JSON object")
        return {str(key): str(value) for key, value in data.items()}

    def _check_mode(self, fd: int) -> None:
        # On Windows POSIX modes do not apply; the per-user data dir carries the ACL.
        if sys.platform != "win32":
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
            if mode & 0o077:
                os.fchmod(fd, _PRIVATE_MODE)
                self.mode_repaired = True
                note = f"key file was readable by others (mode {mode:o}); reset to 600"
                log.warning("secret file %s: %s", self._file, note)
                base = self._fallback_reason or "key file in use"
                if note not in base:
                    self._fallback_reason = f"{base}; {note}"

    def _write_file(self, data: dict[str, str]) -> None:
        self._home.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".secrets-", dir=self._home)  # mkstemp creates mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                if sys.platform != "win32":
                    os.fchmod(handle.fileno(), _PRIVATE_MODE)
                json.dump(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


@dataclass(frozen=True)
class OutboxKeys:
    """The outbox's AES-256-GCM data key and HMAC chain key; `key_id` names the data key in each row."""

    key_id: str
    data_key: bytes
    chain_key: bytes

    def __repr__(self) -> str:  # never print key material
        return f"OutboxKeys(key_id={self.key_id!r})"


_KEYS_LOCK = threading.Lock()


def key_id_for(data_key: bytes) -> str:
    return hashlib.sha256(data_key).hexdigest()[:16]


def _decode_key(store: SecretStore, name: str) -> bytes:
    value = store.get(name)
    if value is None:
        key = os.urandom(KEY_BYTES)
        store.set(name, base64.b64encode(key).decode("ascii"))
        return key
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"stored secret {name!r} is not base64") from exc
    if len(key) != KEY_BYTES:
        raise ValueError(f"stored secret {name!r} is {len(key)} bytes, expected {KEY_BYTES}")
    return key


def load_or_create_keys(store: SecretStore) -> OutboxKeys:
    """The outbox keys of this agent home, created at random on first use."""
    with _KEYS_LOCK:
        data_key = _decode_key(store, "data_key")
        chain_key = _decode_key(store, "chain_key")
    return OutboxKeys(key_id=key_id_for(data_key), data_key=data_key, chain_key=chain_key)
