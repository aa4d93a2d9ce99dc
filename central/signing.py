"""The endpoint's Ed25519 policy signing key: created on first start, loaded on every start.

Loaded once per process (app start or CLI command); `PolicySigner` is immutable and thread-safe.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger(__name__)


def key_id_of(public_raw: bytes) -> str:
    """First 16 hex digits of SHA-256 over the raw 32-byte public key."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


@dataclass(frozen=True)
class PolicySigner:
    private_key: Ed25519PrivateKey
    public_raw: bytes
    key_id: str

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_raw).decode("ascii")

    def sign(self, payload: bytes) -> str:
        """Base64 of the Ed25519 signature over `payload`."""
        return base64.b64encode(self.private_key.sign(payload)).decode("ascii")

    @classmethod
    def from_private_key(cls, private_key: Ed25519PrivateKey) -> PolicySigner:
        raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(private_key=private_key, public_raw=raw, key_id=key_id_of(raw))


def load_or_create_signer(path: Path) -> PolicySigner:
    """Read the PEM key at `path`, or create one there (mode 0600) when the file does not exist."""
    if path.exists():
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        signer = PolicySigner.from_private_key(loaded)
        log.debug("loaded policy signing key %s", signer.key_id)
        return signer
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() fails if another process created the key meanwhile; then theirs wins.
        os.link(tmp, path)
    except FileExistsError:
        tmp.unlink()
        return load_or_create_signer(path)
    tmp.unlink()
    signer = PolicySigner.from_private_key(key)
    log.info("created policy signing key %s at %s", signer.key_id, path)
    return signer
