"""Signed policy: verify envelopes over the exact bytes received, keep the last-known-good copy on disk.

`accept` is called from the uploader thread, `current` from any thread (it returns an immutable snapshot).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from policy_client.agent_config import write_atomic
from policy_client.schema import Action, EventDraft, EventKind, PolicyDocument, PolicyEnvelope, Severity

log = logging.getLogger(__name__)

MAX_ENVELOPE_BYTES = 4 * 1024 * 1024
KEEP_VERSIONS = 3
"""How many verified envelopes stay on disk, so a damaged newest copy falls back to the next older."""
_LKG_NAME = re.compile(r"^policy-(\d{12})\.envelope$")

RejectReason = Literal[
    "too_large",
    "invalid_json",
    "invalid_envelope",
    "unknown_key",
    "bad_signature",
    "invalid_schema",
    "rollback",
    "version_conflict",
    "tampered_cache",
]


@dataclass(frozen=True)
class PolicyVerdict:
    """What `accept` decided, the policy in force afterwards, and the events the agent should record."""

    status: Literal["updated", "unchanged", "rejected"]
    policy: PolicyDocument
    reason: RejectReason | None = None
    offered_version: int | None = None
    events: tuple[EventDraft, ...] = field(default_factory=tuple)


class PolicyRejected(Exception):
    def __init__(self, reason: RejectReason, message: str, *, offered_version: int | None = None) -> None:
        super().__init__(message)
        self.reason: RejectReason = reason
        self.offered_version = offered_version


@dataclass(frozen=True)
class _Verified:
    document: PolicyDocument
    payload: bytes
    key_id: str


def verify_envelope(envelope_bytes: bytes, trusted_keys: Mapping[str, bytes]) -> _Verified:
    """Check the signature over the exact decoded payload bytes, then parse; raise PolicyRejected."""
    if len(envelope_bytes) > MAX_ENVELOPE_BYTES:
        raise PolicyRejected("too_large", f"policy envelope is larger than {MAX_ENVELOPE_BYTES} bytes")
    try:
        raw: Any = json.loads(envelope_bytes)
    except (ValueError, RecursionError):
        raise PolicyRejected("invalid_json", "policy envelope is not JSON") from None
    try:
        envelope = PolicyEnvelope.model_validate(raw)
    except ValidationError:
        raise PolicyRejected("invalid_envelope", "policy envelope does not have key_id, payload, signature") from None
    public = trusted_keys.get(envelope.key_id)
    if public is None:
        raise PolicyRejected("unknown_key", f"policy is signed with unknown key id {envelope.key_id!r}")
    try:
        payload = base64.b64decode(envelope.payload, validate=True)
    except (binascii.Error, ValueError):
        raise PolicyRejected("invalid_envelope", "policy payload is not valid base64") from None
    try:
        signature = base64.b64decode(envelope.signature, validate=True)
        Ed25519PublicKey.from_public_bytes(public).verify(signature, payload)
    except (binascii.Error, ValueError, InvalidSignature):
        raise PolicyRejected("bad_signature", "policy signature does not verify") from None
    # Only bytes that carry a valid signature are parsed from here on.
    try:
        document_raw: Any = json.loads(payload)
    except (ValueError, RecursionError):
        raise PolicyRejected("invalid_json", "signed policy payload is not JSON") from None
    offered = document_raw.get("version") if isinstance(document_raw, dict) else None
    offered_version = offered if isinstance(offered, int) and not isinstance(offered, bool) else None
    try:
        document = PolicyDocument.model_validate(document_raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise PolicyRejected(
            "invalid_schema",
            f"signed policy fails the schema at {where}: {first['msg']}",
            offered_version=offered_version,
        ) from None
    return _Verified(document=document, payload=payload, key_id=envelope.key_id)


class PolicyStore:
    """Last-known-good policy, verified on load and on every offer. Thread-safe."""

    def __init__(
        self, policy_dir: Path, *, trusted_keys: Mapping[str, bytes], default_path: Path | None = None
    ) -> None:
        self._dir = policy_dir
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._keys = dict(trusted_keys)
        self._lock = threading.Lock()
        self._default = _load_default(default_path)
        self._lkg: _Verified | None = None
        self._startup_events: list[EventDraft] = []
        self._load()

    # --- reading ---------------------------------------------------------------------------------

    def current(self) -> PolicyDocument:
        """The last-known-good policy, or the bundled default when none was ever accepted."""
        with self._lock:
            return self._lkg.document if self._lkg is not None else self._default

    @property
    def version(self) -> int:
        return self.current().version

    @property
    def has_signed_policy(self) -> bool:
        with self._lock:
            return self._lkg is not None

    def take_startup_events(self) -> list[EventDraft]:
        """Events about damaged cached copies found while loading (reported once, then cleared)."""
        with self._lock:
            events, self._startup_events = self._startup_events, []
            return events

    # --- offers ----------------------------------------------------------------------------------

    def accept(self, envelope_bytes: bytes) -> PolicyVerdict:
        """Verify an envelope from the endpoint; store it as last-known-good when it is newer."""
        with self._lock:
            previous = self._lkg
            try:
                verified = verify_envelope(envelope_bytes, self._keys)
                self._check_order(verified, previous)
            except PolicyRejected as exc:
                current = previous.document if previous is not None else self._default
                log.warning("policy rejected (%s): %s", exc.reason, exc)
                event = _rejected_event(exc.reason, str(exc), exc.offered_version, current.version)
                return PolicyVerdict(
                    status="rejected",
                    policy=current,
                    reason=exc.reason,
                    offered_version=exc.offered_version,
                    events=(event,),
                )
            if previous is not None and previous.document.version == verified.document.version:
                return PolicyVerdict(
                    status="unchanged", policy=previous.document, offered_version=verified.document.version
                )
            self._write(verified.document.version, envelope_bytes)
            self._lkg = verified
            previous_version = previous.document.version if previous is not None else None
            log.info("policy version %s accepted (was %s)", verified.document.version, previous_version)
            event = EventDraft(
                kind=EventKind.policy_updated,
                severity=Severity.info,
                action=Action.observed,
                data={
                    "version": verified.document.version,
                    "previous_version": previous_version,
                    "key_id": verified.key_id,
                },
            )
            return PolicyVerdict(
                status="updated",
                policy=verified.document,
                offered_version=verified.document.version,
                events=(event,),
            )

    @staticmethod
    def _check_order(verified: _Verified, previous: _Verified | None) -> None:
        if previous is None:
            return
        offered, cached = verified.document.version, previous.document.version
        if offered < cached:
            raise PolicyRejected(
                "rollback", f"policy version {offered} is older than the cached {cached}", offered_version=offered
            )
        if offered == cached and not hmac.compare_digest(verified.payload, previous.payload):
            raise PolicyRejected(
                "version_conflict",
                f"policy version {offered} differs from the cached copy of the same version",
                offered_version=offered,
            )

    # --- disk ------------------------------------------------------------------------------------

    def _write(self, version: int, envelope_bytes: bytes) -> None:
        write_atomic(self._dir / f"policy-{version:012d}.envelope", envelope_bytes)
        for _, old in self._cached_files()[KEEP_VERSIONS:]:
            old.unlink(missing_ok=True)

    def _cached_files(self) -> list[tuple[int, Path]]:
        """Cached envelopes as (version in the file name, path), newest first."""
        found = [(int(m.group(1)), p) for p in self._dir.iterdir() if (m := _LKG_NAME.match(p.name))]
        return sorted(found, reverse=True)

    def _load(self) -> None:
        for named_version, path in self._cached_files():
            try:
                data = path.read_bytes()
                verified = verify_envelope(data, self._keys)
                if verified.document.version != named_version:
                    raise PolicyRejected(
                        "tampered_cache", f"file name says version {named_version}, content {verified.document.version}"
                    )
            except (OSError, PolicyRejected) as exc:
                reason = exc.reason if isinstance(exc, PolicyRejected) else "tampered_cache"
                log.error("cached policy %s failed verification (%s); falling back", path.name, reason)
                self._startup_events.append(
                    _rejected_event(
                        "tampered_cache",
                        f"cached policy {path.name} failed verification: {reason}",
                        named_version,
                        None,
                        detail_reason=reason,
                    )
                )
                _quarantine(path)
                continue
            self._lkg = verified
            log.info("loaded cached policy version %s", verified.document.version)
            return


def _quarantine(path: Path) -> None:
    """Move a damaged cached envelope aside (kept for forensics, reported once)."""
    try:
        path.replace(path.with_name(path.name + ".rejected"))
    except OSError:
        log.exception("could not move aside damaged cached policy %s", path.name)


def _rejected_event(
    reason: RejectReason,
    message: str,
    offered_version: int | None,
    current_version: int | None,
    *,
    detail_reason: str | None = None,
) -> EventDraft:
    data: dict[str, Any] = {"reason": reason, "message": message[:300]}
    if offered_version is not None:
        data["offered_version"] = offered_version
    if current_version is not None:
        data["current_version"] = current_version
    if detail_reason is not None:
        data["cause"] = detail_reason
    return EventDraft(kind=EventKind.policy_rejected, severity=Severity.high, action=Action.observed, data=data)


def _load_default(path: Path | None) -> PolicyDocument:
    """The bundled default policy (unsigned JSON shipped with the agent), or an all-defaults document."""
    if path is None:
        return PolicyDocument(version=0)
    try:
        return PolicyDocument.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        log.exception("bundled default policy %s is unusable; using built-in defaults", path)
        return PolicyDocument(version=0)
