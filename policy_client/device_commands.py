"""Signed commands from the endpoint to one device's service (today: release or delete a quarantined download).

Wire contract shared by agent and endpoint; pure functions, any thread. The endpoint signs with its Ed25519 policy
key; the service verifies against the key it pinned at enrolment, so neither the desk user nor anyone between the
endpoint and the device can make one up. The signature covers `SIGNING_DOMAIN + device_id + NUL + payload`, so a
command verifies only for the device it names and can never pass for a policy or an unlock token (or the reverse).
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SIGNING_DOMAIN: Final = b"deskwarden/command/v1\x00"
MAX_COMMANDS: Final = 50
"""The most commands one answer of `GET /v1/commands` carries."""
MAX_PAYLOAD_BYTES: Final = 4096

QuarantineAction = Literal["release", "delete"]
QUARANTINE_ID_RE: Final = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}$")
"""What `collectors.downloads.quarantine` names a quarantined file: its UTC time and 12 random hex digits."""


class CommandError(ValueError):
    """A command that must not be carried out; `reason` is one stable word (`malformed`, `bad_signature`,
    `wrong_device`, `expired`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class QuarantineCommand(BaseModel):
    """Release a quarantined download back to where it came from, or delete it for good."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    device_id: str = Field(min_length=1, max_length=64)
    action: QuarantineAction
    quarantine_id: str = Field(pattern=QUARANTINE_ID_RE.pattern)
    issued_by: str = Field(max_length=128)
    issued_at: datetime
    expires_at: datetime


class SignedCommand(BaseModel):
    """As it travels: the exact payload bytes (base64) and the signature over them (base64)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    payload: str = Field(max_length=MAX_PAYLOAD_BYTES * 2)
    signature: str = Field(max_length=200)


class CommandList(BaseModel):
    """The answer of `GET /v1/commands`: what the device should do, oldest first."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    commands: list[SignedCommand] = Field(default_factory=list, max_length=MAX_COMMANDS)


def _message(device_id: str, payload: bytes) -> bytes:
    return SIGNING_DOMAIN + device_id.encode("utf-8") + b"\x00" + payload


def sign_command(private_key: Ed25519PrivateKey, command: QuarantineCommand) -> SignedCommand:
    payload = command.model_dump_json().encode("utf-8")
    signature = private_key.sign(_message(command.device_id, payload))
    return SignedCommand(
        payload=base64.b64encode(payload).decode("ascii"), signature=base64.b64encode(signature).decode("ascii")
    )


def verify_command(signed: SignedCommand, *, device_id: str, public_key: bytes, now: datetime) -> QuarantineCommand:
    """The command when it was signed by `public_key` for `device_id` and has not expired at `now`; else
    `CommandError`. ValueError only for a caller's mistake (a key that is not a raw Ed25519 key, a naive `now`)."""
    verifier = Ed25519PublicKey.from_public_bytes(public_key)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    try:
        payload = base64.b64decode(signed.payload, validate=True)
        signature = base64.b64decode(signed.signature, validate=True)
    except (binascii.Error, ValueError):
        raise CommandError("malformed") from None
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CommandError("malformed")
    try:
        verifier.verify(signature, _message(device_id, payload))
    except InvalidSignature:
        raise CommandError("bad_signature") from None
    try:
        command = QuarantineCommand.model_validate_json(payload)
    except ValidationError:
        raise CommandError("malformed") from None
    if command.device_id != device_id:
        raise CommandError("wrong_device")
    expires = command.expires_at if command.expires_at.tzinfo else command.expires_at.replace(tzinfo=UTC)
    if now >= expires:
        raise CommandError("expired")
    return command
