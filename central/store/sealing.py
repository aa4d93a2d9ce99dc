"""Secrets the endpoint must read back (SMTP password, webhook signing secret) sealed with AES-256-GCM under a
key kept outside the database, and the data directory's permissions (0700, files 0600).

A copy of the database alone then yields no channel secret. The key is `secrets.key` in the data directory
(mode 0600), made on first start; several API hosts on one PostgreSQL need the same file, like the policy
signing key. `SecretBox` is immutable and used from any thread.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import JSON
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

log = logging.getLogger(__name__)

KEY_FILE = "secrets.key"
SEALED_PREFIX = "sealed:v1:"
_NONCE_BYTES = 12

PRIVATE_FILES = ("central.db", "central.db-wal", "central.db-shm", "policy_signing.key", KEY_FILE)
"""What the data directory holds that nobody but the endpoint's account may read."""


class SealedSecretError(ValueError):
    """A sealed value cannot be opened: another data directory's key, or a damaged value."""


@dataclass(frozen=True, repr=False)
class SecretBox:
    key: bytes

    def seal(self, plaintext: str, *, context: str) -> str:
        """`sealed:v1:` + base64(nonce + AES-GCM ciphertext); `context` (the field's name) is bound to it."""
        if not plaintext:
            return ""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.key).encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return SEALED_PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, value: str, *, context: str) -> str:
        """The plaintext of a sealed value; a value written before sealing existed is returned as it is."""
        if not is_sealed(value):
            return value
        try:
            raw = base64.b64decode(value[len(SEALED_PREFIX) :], validate=True)
            plain = AESGCM(self.key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode("utf-8"))
        except (ValueError, InvalidTag):
            raise SealedSecretError(
                f"cannot open the sealed {context}: was {KEY_FILE} replaced or copied from another endpoint?"
            ) from None
        return plain.decode("utf-8")


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


DIALECT_ATTRIBUTE = "deskwarden_secret_box"
"""`open_database` hangs the database's SecretBox on its engine's dialect (one per engine), where column types
find it."""


def box_of(dialect: Dialect) -> SecretBox | None:
    box = getattr(dialect, DIALECT_ATTRIBUTE, None)
    return box if isinstance(box, SecretBox) else None


class SealedJson(TypeDecorator[Any]):
    """A JSON column stored sealed when the engine has a secrets key (webhook URLs carry their receiver's secret:
    Slack and Teams URLs are bearer credentials). Values written before sealing existed read as they are;
    `seal_stored_rows` seals them. Queries cannot look inside a sealed value."""

    impl = JSON
    cache_ok = True

    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(JSONB() if dialect.name == "postgresql" else JSON())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        box = box_of(dialect)
        if box is None or value is None:
            return value
        return box.seal(json.dumps(value, sort_keys=True, separators=(",", ":")), context=self.context)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if not is_sealed(value):
            return value
        box = box_of(dialect)
        if box is None:
            raise SealedSecretError(f"{self.context} is sealed and this process has no secrets key")
        return json.loads(box.open(value, context=self.context))


def load_or_create_box(path: Path) -> SecretBox:
    """Read the 32-byte key at `path`, or create it there (mode 0600; the first of racing processes wins)."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, AESGCM.generate_key(bit_length=256))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
            log.info("created the secrets key at %s", path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        key = path.read_bytes()
    if len(key) != 32:
        raise ValueError(f"{path} must hold a 32-byte key")
    return SecretBox(key=key)


def secure_data_dir(data_dir: Path) -> None:
    """Create the data directory as 0700 and tighten an existing one and its private files (0600).

    Only the owner's permission bits are touched; on Windows (no POSIX modes) this only creates the directory.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.name == "nt":
        return
    _tighten(data_dir, 0o700)
    for name in PRIVATE_FILES:
        _tighten(data_dir / name, 0o600)


def _tighten(path: Path, mode: int) -> None:
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if current & ~mode:
        try:
            path.chmod(mode)
        except PermissionError:
            log.warning("cannot restrict %s to %o (not its owner); other accounts may read it", path, mode)
