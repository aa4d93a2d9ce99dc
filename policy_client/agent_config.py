"""The agent's enrolment configuration (endpoint, device id, policy key), saved atomically as JSON.

Written by enrolment (CLI thread) and read at agent start-up; the caller passes the file path.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from policy_client.transport import InsecureUrlError, validate_base_url

log = logging.getLogger(__name__)

CONFIG_FILENAME = "agent.json"
"""Same name as agent_app.core.paths.config_path (policy_client must not import agent_app)."""
MAX_CONFIG_BYTES = 64 * 1024


class ConfigError(Exception):
    """The configuration file is unreadable, not JSON, or does not match AgentConfig."""


class AgentConfig(BaseModel):
    """What enrolment produced. The device credential is NOT here: it lives in the secret store."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server_url: str
    device_id: str = Field(min_length=1, max_length=64)
    team: str = Field(max_length=200)
    ca_bundle: str | None = None
    policy_key_id: str = Field(min_length=1, max_length=64)
    policy_public_key: str
    """Base64 of the raw 32-byte Ed25519 public key."""

    @field_validator("server_url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            return validate_base_url(value)
        except InsecureUrlError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("policy_public_key")
    @classmethod
    def _key(cls, value: str) -> str:
        decode_public_key(value)
        return value

    def public_key_bytes(self) -> bytes:
        return decode_public_key(self.policy_public_key)

    def trusted_keys(self) -> dict[str, bytes]:
        """The policy verification keys, in the shape PolicyStore takes."""
        return {self.policy_key_id: self.public_key_bytes()}


def decode_public_key(value: str) -> bytes:
    """Raw Ed25519 public key bytes from base64; ValueError when it is not 32 bytes of valid base64."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("policy public key is not valid base64") from None
    if len(raw) != 32:
        raise ValueError(f"policy public key must be 32 bytes (Ed25519), got {len(raw)}")
    return raw


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


def load_config(path: Path, *, use_backup: bool = False) -> AgentConfig | None:
    """The saved config, or None when the agent was never enrolled (no file).

    A corrupt file raises ConfigError naming the backup of the previous good file; with
    `use_backup=True` the backup is loaded instead (and a warning is logged).
    """
    if not path.exists():
        return None
    try:
        return _read(path)
    except ConfigError as exc:
        error = exc
    backup = backup_path(path)
    if not backup.exists():
        raise error
    if not use_backup:
        raise ConfigError(
            f"{error}; the previous good configuration is kept at {backup} "
            "(re-enrol, or restore it by copying it over the broken file)"
        )
    log.warning("agent configuration %s is corrupt; using the backup %s", path, backup)
    return _read(backup)


def _read(path: Path) -> AgentConfig:
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read agent configuration {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"agent configuration {path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"agent configuration {path} is not valid JSON: {exc}") from None
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"agent configuration {path} is invalid: {problems}") from None


def save_config(path: Path, config: AgentConfig) -> None:
    """Write the config atomically; the file it replaces is kept as <name>.bak when it was valid."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        try:
            _read(path)
        except ConfigError:
            log.warning("replacing corrupt agent configuration %s; keeping the older backup", path)
        else:
            write_atomic(backup_path(path), path.read_bytes())
    body = json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=True).encode() + b"\n"
    write_atomic(path, body)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Temp file in the same directory, fsync, os.replace, fsync the directory."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename durable. Directories cannot be opened for fsync on Windows; NTFS journals renames."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
