"""Admin unlock tokens: short strings the endpoint signs (Ed25519) and a device's service verifies offline.

Pure functions; any thread. The endpoint issues with its policy signing key; the agent's root service checks
with the key it pinned at enrolment. Imports neither `agent_app` nor `central`.

Wire form: `DW1-` then Crockford base32 (5-character groups joined by dashes) of an 80-byte blob:

    version (1) | token id (8, random) | scope (1) | minutes (2, big-endian) | expiry (4, unix seconds) | signature (64)

The signature covers `SIGNING_DOMAIN + device_id + b"\\x00" + the 16-byte payload`, so a token only ever
verifies for the device it names, and can never be taken for a policy signature (or the reverse).
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, get_args

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

UnlockScope = Literal["quit", "uninstall"]
"""`quit`: the tray helper may stay stopped for `minutes`; `uninstall`: the agent may be removed."""

UnlockTokenReason = Literal["malformed", "unsupported_version", "bad_signature", "expired"]

UNLOCK_SCOPES: Final[tuple[UnlockScope, ...]] = get_args(UnlockScope)
VERSION: Final = 1
PREFIX: Final = "DW1-"
SIGNING_DOMAIN: Final = b"deskwarden/unlock/v1\x00"
MAX_INPUT_CHARS: Final = 300
"""Anything longer is refused before it is decoded (a well-formed token is 157 characters)."""
MAX_MINUTES: Final = 0xFFFF
GROUP: Final = 5

_PAYLOAD = struct.Struct(">B8sBHI")
_SIGNATURE_BYTES: Final = 64
_TOKEN_BYTES: Final = _PAYLOAD.size + _SIGNATURE_BYTES  # 80 bytes = 128 base32 symbols, no padding bits
_BODY_CHARS: Final = _TOKEN_BYTES * 8 // 5
_SCOPE_CODES: Final[dict[UnlockScope, int]] = {"quit": 1, "uninstall": 2}
_SCOPES_BY_CODE: Final[dict[int, UnlockScope]] = {code: scope for scope, code in _SCOPE_CODES.items()}
_MAX_EXPIRY: Final = 0xFFFF_FFFF

_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE: Final[dict[str, int]] = {c: i for i, c in enumerate(_ALPHABET)} | {"O": 0, "I": 1, "L": 1}
_IGNORED: Final = frozenset("- \t\r\n")


class UnlockTokenError(ValueError):
    """A token that must not unlock anything; `reason` says why in one stable word."""

    def __init__(self, reason: UnlockTokenReason) -> None:
        super().__init__(reason)
        self.reason: UnlockTokenReason = reason


@dataclass(frozen=True)
class UnlockToken:
    token_id: str
    """16 lowercase hex digits; what the service reports in `agent.unlock_used` and the endpoint stores."""
    scope: UnlockScope
    minutes: int
    """For `quit`, how long the helper may stay stopped; 0 for `uninstall`."""
    expires_at: datetime
    """UTC, whole seconds; the token is refused from this instant on."""


def _encode(blob: bytes) -> str:
    bits = int.from_bytes(blob, "big")
    count = len(blob) * 8 // 5
    return "".join(_ALPHABET[(bits >> (5 * (count - 1 - i))) & 31] for i in range(count))


def _decode(symbols: str) -> bytes | None:
    bits = 0
    for char in symbols:
        value = _DECODE.get(char)
        if value is None:
            return None
        bits = (bits << 5) | value
    return bits.to_bytes(len(symbols) * 5 // 8, "big")


def _signed_message(device_id: str, payload: bytes) -> bytes:
    return SIGNING_DOMAIN + device_id.encode("utf-8") + b"\x00" + payload


def _format(blob: bytes) -> str:
    body = _encode(blob)
    return PREFIX + "-".join(body[i : i + GROUP] for i in range(0, len(body), GROUP))


def issue_unlock_token(
    private_key: Ed25519PrivateKey,
    *,
    device_id: str,
    scope: UnlockScope,
    minutes: int,
    expires_at: datetime,
) -> tuple[str, UnlockToken]:
    """A new token for `device_id` and what it says. `expires_at` (timezone-aware) is cut to whole seconds.

    Raises ValueError for an unknown scope, `minutes` outside 0..65535 (at least 1 for `quit`), a naive or
    out-of-range `expires_at`, or an empty device id.
    """
    if scope not in _SCOPE_CODES:
        raise ValueError(f"scope must be one of {', '.join(UNLOCK_SCOPES)}")
    if not 0 <= minutes <= MAX_MINUTES or (scope == "quit" and minutes < 1):
        raise ValueError(f"minutes must be 1..{MAX_MINUTES} for quit, 0..{MAX_MINUTES} for uninstall")
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    if not device_id:
        raise ValueError("device_id must not be empty")
    expiry = int(expires_at.timestamp())
    if not 0 < expiry <= _MAX_EXPIRY:
        raise ValueError("expires_at is out of range")
    token_id = secrets.token_bytes(8)
    payload = _PAYLOAD.pack(VERSION, token_id, _SCOPE_CODES[scope], minutes, expiry)
    signature = private_key.sign(_signed_message(device_id, payload))
    token = UnlockToken(
        token_id=token_id.hex(),
        scope=scope,
        minutes=minutes,
        expires_at=datetime.fromtimestamp(expiry, UTC),
    )
    return _format(payload + signature), token


def verify_unlock_token(text: str, *, device_id: str, public_key: bytes, now: datetime) -> UnlockToken:
    """What a typed or pasted token allows on `device_id`, checked against the pinned raw 32-byte `public_key`.

    Case, dashes and spaces in `text` do not matter, nor do Crockford's look-alikes (O for 0, I and L for 1).
    Raises `UnlockTokenError` for anything that must not unlock: `malformed`, `unsupported_version`,
    `bad_signature` (also a token for another device or from another key) or `expired` (at `now` or later).
    Raises ValueError only for a caller's mistake (`public_key` not a raw Ed25519 public key, a naive `now`).
    """
    verifier = Ed25519PublicKey.from_public_bytes(public_key)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if len(text) > MAX_INPUT_CHARS or not text.isascii():
        raise UnlockTokenError("malformed")
    compact = "".join(c for c in text.upper() if c not in _IGNORED)
    prefix = PREFIX.rstrip("-")
    if not compact.startswith(prefix):
        known_family = compact.startswith("DW") and compact[2:3].isdigit()
        raise UnlockTokenError("unsupported_version" if known_family else "malformed")
    body = compact[len(prefix) :]
    if len(body) != _BODY_CHARS:
        raise UnlockTokenError("malformed")
    blob = _decode(body)
    if blob is None:
        raise UnlockTokenError("malformed")
    payload, signature = blob[: _PAYLOAD.size], blob[_PAYLOAD.size :]
    version, token_id, scope_code, minutes, expiry = _PAYLOAD.unpack(payload)
    if version != VERSION:
        raise UnlockTokenError("unsupported_version")
    try:
        verifier.verify(signature, _signed_message(device_id, payload))
    except InvalidSignature:
        raise UnlockTokenError("bad_signature") from None
    scope = _SCOPES_BY_CODE.get(scope_code)
    if scope is None:
        raise UnlockTokenError("malformed")
    expires_at = datetime.fromtimestamp(expiry, UTC)
    if now >= expires_at:
        raise UnlockTokenError("expired")
    return UnlockToken(token_id=token_id.hex(), scope=scope, minutes=minutes, expires_at=expires_at)
