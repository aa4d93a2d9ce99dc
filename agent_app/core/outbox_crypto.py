"""Sealing outbox rows: canonical event JSON, AES-GCM per row, and the HMAC chain link.

Pure functions over an `OutboxKeys`; called from the thread that owns an `Outbox`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from datetime import UTC, datetime
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidTag

try:  # optional accelerator for parsing rows
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only where orjson is not installed
    _orjson = None  # type: ignore[assignment]
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from policy_client.schema import (
    MAX_DATA_BYTES,
    ChainHmac,
    EventDraft,
    canonical_json,
    chained_json,
    data_orjson_exact,
    json_time,
)
from policy_client.secrets import OutboxKeys

NONCE_BYTES = 12
_SIZE_CHECK_FROM = MAX_DATA_BYTES // 8  # below this, data cannot exceed MAX_DATA_BYTES even fully escaped
_sha256 = hashlib.sha256
_SEAL_OPTIONS = 0 if _orjson is None else _orjson.OPT_SORT_KEYS | _orjson.OPT_UTC_Z


class RowUnreadable(Exception):
    """A row that does not decrypt with this agent's key (damaged, tampered or another key)."""


def utc(ts: datetime) -> datetime:
    """Aware UTC time; a naive draft time is taken as UTC (the envelope requires an offset)."""
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts if ts.tzinfo is UTC else ts.astimezone(UTC)


ts_json = json_time
"""The exact string pydantic's JSON mode gives an aware time (trailing "Z" for UTC), so digests match."""


def event_ids(count: int) -> list[str]:
    """`count` time-ordered UUIDs in the layout of `schema.new_event_id` (version 7), made in one go.

    The per-event cost of building `uuid.UUID` objects dominated group commits; this keeps the
    layout (48-bit ms time, version 7, RFC 4122 variant, 74 random bits) and returns strings, cut
    from one hex string of random bytes: 3 + 15 hex digits and 2 bits of a variant digit per id.
    """
    ms = "%012x" % (int(time.time() * 1000) & ((1 << 48) - 1))
    prefix = f"{ms[:8]}-{ms[8:]}-7"
    raw = os.urandom(10 * count).hex()
    variant = _VARIANT_DIGIT
    return [
        f"{prefix}{raw[i : i + 3]}-{variant[raw[i + 3]]}{raw[i + 4 : i + 7]}-{raw[i + 7 : i + 19]}"
        for i in range(0, 20 * count, 20)
    ]


_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
"""A random hex digit -> the digit holding the RFC 4122 variant bits (10) and two of its random bits."""


def draft_body(draft: EventDraft, event_id: str, seq: int, ts: datetime) -> dict[str, Any]:
    """The event's chained fields in JSON mode (everything but device_id and mac).

    Enum members are str subclasses and serialise as their values; `.value` is avoided on the
    hot path because enum attribute access is slow.
    """
    rule = draft.rule
    return {
        "id": event_id,
        "seq": seq,
        "ts": ts_json(ts),
        "kind": draft.kind,
        "severity": draft.severity,
        "user": draft.user,
        "action": draft.action,
        "rule": None if rule is None else {"id": rule.id, "policy_version": rule.policy_version},
        "data": draft.data,
    }


def chain_mac(chain_key: bytes, prev_mac: bytes, seq: int, plaintext: bytes) -> bytes:
    """`schema.chain_link` over raw bytes: HMAC-SHA256(key, prev_mac || seq || sha256(plaintext))."""
    return hmac.digest(chain_key, prev_mac + seq.to_bytes(8, "big") + hashlib.sha256(plaintext).digest(), "sha256")


def canonical(body: dict[str, Any]) -> bytes:
    """Canonical JSON of a body: both the row plaintext and the input of `schema.event_digest`."""
    return canonical_json(body)


def data_size(data: dict[str, Any]) -> int:
    """Size of `data` measured the way `Event` checks it against MAX_DATA_BYTES."""
    return len(json.dumps(data, separators=(",", ":")))


class RowCipher:
    """AES-256-GCM with associated data binding key id, seq, kind and mac of the row."""

    def __init__(self, keys: OutboxKeys) -> None:
        self.key_id = keys.key_id
        self.chain_key = keys.chain_key
        self._aead = AESGCM(keys.data_key)
        self._prefix = keys.key_id.encode() + b"|"
        self._chain = ChainHmac(keys.chain_key)
        self._encrypt = self._aead.encrypt
        block = (keys.chain_key if len(keys.chain_key) <= 64 else _sha256(keys.chain_key).digest()).ljust(64, b"\0")
        self._inner = _sha256(bytes(b ^ 0x36 for b in block))
        """HMAC-SHA256 (RFC 2104) inner and outer states of the chain key, as in `schema.ChainHmac`, inlined
        into `seal_draft` to save two calls per event."""
        self._outer = _sha256(bytes(b ^ 0x5C for b in block))

    def chain_mac(self, prev_mac: bytes, seq: int, plaintext: bytes) -> bytes:
        """`chain_mac(self.chain_key, prev_mac, seq, plaintext)`, from the precomputed HMAC states."""
        return self._chain.link_bytes(prev_mac, seq, _sha256(plaintext).digest())

    def seal_draft(
        self, draft: EventDraft, rank: int, seq: int, prev_mac: bytes, event_id: str, nonce: bytes
    ) -> tuple[Any, ...] | None:
        """One outbox row for `draft` at `seq`: (seq, kind, rank, ts, size, key_id, nonce, mac, ct).

        None when its data exceeds MAX_DATA_BYTES. The same bytes as `draft_body`, `canonical`, `chain_mac`
        and `seal` in turn, written out in one function: this runs once per event on the enqueue path, where
        the calls between those steps cost as much as the steps (tests/unit/test_outbox_seal.py compares them).
        """
        ts = draft.ts
        if ts.tzinfo is not UTC:
            ts = utc(ts)
        rule = draft.rule
        data = draft.data
        body = {
            "id": event_id,
            "seq": seq,
            "ts": ts,  # orjson writes an aware UTC time exactly as `json_time` does (OPT_UTC_Z)
            "kind": draft.kind,
            "severity": draft.severity,
            "user": draft.user,
            "action": draft.action,
            "rule": None if rule is None else {"id": rule.id, "policy_version": rule.policy_version},
            "data": data,
        }
        plaintext = None
        if _orjson is not None and data_orjson_exact(data):
            try:
                plaintext = _orjson.dumps(body, option=_SEAL_OPTIONS)
            except (_orjson.JSONEncodeError, RecursionError):
                plaintext = None  # ints beyond 64 bits, non-string keys, deep nesting or a datetime subclass
        if plaintext is None:
            body["ts"] = json_time(ts)
            plaintext = chained_json(body, data_exact=False)
        size = len(plaintext)
        if size > _SIZE_CHECK_FROM and data_size(data) > MAX_DATA_BYTES:
            return None
        inner = self._inner.copy()
        inner.update(b"%s%s%s" % (prev_mac, seq.to_bytes(8, "big"), _sha256(plaintext).digest()))
        outer = self._outer.copy()
        outer.update(inner.digest())
        mac = outer.digest()
        kind: str = draft.kind._value_  # a plain str: sqlite3 binds an enum member through its slow adapter path
        ct = self._encrypt(nonce, plaintext, b"%s%d|%s|%s" % (self._prefix, seq, kind.encode(), mac))
        return (seq, kind, rank, ts.timestamp(), size, self.key_id, nonce, mac, ct)

    def aad(self, seq: int, kind: str, mac: bytes) -> bytes:
        return b"%s%d|%s|%s" % (self._prefix, seq, kind.encode(), mac)

    def seal(self, seq: int, kind: str, mac: bytes, nonce: bytes, plaintext: bytes) -> bytes:
        return self._aead.encrypt(nonce, plaintext, self.aad(seq, kind, mac))

    def open(self, *, key_id: str, seq: int, kind: str, mac: bytes, nonce: bytes, ct: bytes) -> bytes:
        if key_id != self.key_id or len(nonce) != NONCE_BYTES:
            raise RowUnreadable(f"row {seq} sealed with another key or a bad nonce")
        try:
            return self._aead.decrypt(nonce, ct, self.aad(seq, kind, mac))
        except InvalidTag as exc:
            raise RowUnreadable(f"row {seq} fails authentication") from exc

    def open_body(self, *, key_id: str, seq: int, kind: str, mac: bytes, nonce: bytes, ct: bytes) -> dict[str, Any]:
        """Decrypt and parse a row into its JSON-mode body with `mac` added."""
        plaintext = self.open(key_id=key_id, seq=seq, kind=kind, mac=mac, nonce=nonce, ct=ct)
        try:
            parsed = _loads(plaintext)
        except ValueError as exc:
            raise RowUnreadable(f"row {seq} is not JSON") from exc
        if not isinstance(parsed, dict) or parsed.get("seq") != seq:
            raise RowUnreadable(f"row {seq} holds another event")
        parsed["mac"] = mac.hex()
        return parsed


class WireRow(NamedTuple):
    """A queued row as the uploader sends it: the canonical plaintext that was chained, not parsed into a dict.

    A named tuple: made once per queued event on the drain path, where a frozen dataclass costs 2 us more."""

    seq: int
    kind: str
    mac: str
    """Chain link, 64 lowercase hex digits."""
    plaintext: bytes
    """Canonical JSON of exactly the chained fields (no mac, no device_id), starting with `{"`."""


_NOT_SPLICEABLE = frozenset({"mac", "device_id"})


def wire_plaintext(plaintext: bytes, seq: int) -> bytes:
    """`plaintext` when it is the canonical body of event `seq` (a dict without mac or device_id); otherwise
    the canonical JSON of its chained fields, re-encoded from an exact parse. Raises RowUnreadable when the
    bytes are not a JSON object of that seq."""
    if _orjson is not None:
        try:
            parsed = _orjson.loads(plaintext)
        except _orjson.JSONDecodeError:
            parsed = None
        if type(parsed) is dict and parsed.get("seq") == seq and "mac" not in parsed and "device_id" not in parsed:
            return plaintext if plaintext[:2] == b'{"' else canonical_json(_loads(plaintext))
    try:
        parsed = _loads(plaintext)
    except ValueError as exc:
        raise RowUnreadable(f"row {seq} is not JSON") from exc
    if not isinstance(parsed, dict) or parsed.get("seq") != seq:
        raise RowUnreadable(f"row {seq} holds another event")
    return canonical_json({key: value for key, value in parsed.items() if key not in _NOT_SPLICEABLE})


def _loads(plaintext: bytes) -> Any:
    """json.loads, through orjson when the result is float-free.

    orjson refuses NaN and reads ints beyond 64 bits as floats; any float sends the row to json.loads.
    """
    if _orjson is not None:
        try:
            value = _orjson.loads(plaintext)
        except _orjson.JSONDecodeError:
            return json.loads(plaintext)
        try:
            if _float_free(value):
                return value
        except RecursionError:
            pass
    return json.loads(plaintext)


def _float_free(value: object) -> bool:
    if type(value) is dict:
        return all(_float_free(item) for item in value.values())
    if type(value) is list:
        return all(_float_free(item) for item in value)
    return type(value) is not float
