"""The wire contract shared by agent and endpoint: event envelope, policy document, API bodies.

Pure data and pure functions; safe to call from any thread. `central` imports this module and
nothing else from the agent side, so it must stay free of agent imports.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

try:  # optional accelerator; the stdlib encoder below defines the canonical form
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only where orjson is not installed
    _orjson = None  # type: ignore[assignment]

SCHEMA_VERSION = 1
"""Version of this wire contract; sent by agents as the `X-DeskWarden-Schema` header."""

MAX_BATCH_EVENTS = 500
MAX_BATCH_BYTES = 1_000_000
MAX_DATA_BYTES = 16_384
"""Upper bound of one event's `data` when serialised; bigger events are a client bug."""


class Severity(StrEnum):
    info = "info"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.info: 0, Severity.low: 1, Severity.medium: 2, Severity.high: 3, Severity.critical: 4}


class EventKind(StrEnum):
    usb_mounted = "usb.mounted"
    usb_blocked = "usb.blocked"
    usb_removed = "usb.removed"
    usb_exception_requested = "usb.exception_requested"
    download_detected = "download.detected"
    download_quarantined = "download.quarantined"
    download_released = "download.released"
    """The service released a quarantined download on an admin's signed command (`data.command_id`); action
    `allowed`, or `failed` with `data.error`."""
    download_deleted = "download.deleted"
    """The service deleted a quarantined download on an admin's signed command; action `allowed` or `failed`."""
    clipboard_sensitive = "clipboard.sensitive"
    capture_tool_started = "capture.tool_started"
    capture_tool_terminated = "capture.tool_terminated"
    capture_hotkey = "capture.hotkey"
    policy_updated = "policy.updated"
    policy_rejected = "policy.rejected"
    policy_acknowledged = "policy.acknowledged"
    cleandesk_prompted = "cleandesk.prompted"
    cleandesk_attested = "cleandesk.attested"
    cleandesk_missed = "cleandesk.missed"
    violation_justified = "violation.justified"
    agent_started = "agent.started"
    agent_stopped = "agent.stopped"
    agent_heartbeat = "agent.heartbeat"
    agent_collector_failed = "agent.collector_failed"
    agent_tamper = "agent.tamper"
    agent_loss = "agent.loss"
    agent_dead_letter = "agent.dead_letter"
    """A batch the endpoint refused with a non-retryable 4xx; the refused seqs are in `data`."""
    agent_unlock_used = "agent.unlock_used"
    """The service accepted an unlock token (quit the helper for a while, or uninstall); `data.token_id` names it."""


class Action(StrEnum):
    observed = "observed"
    warned = "warned"
    blocked = "blocked"
    masked = "masked"
    cleared = "cleared"
    quarantined = "quarantined"
    deleted = "deleted"
    terminated = "terminated"
    allowed = "allowed"
    failed = "failed"
    """Enforcement was attempted and did not succeed; the event says why in `data.error`."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RuleRef(_Frozen):
    id: str = Field(max_length=128)
    policy_version: int = Field(ge=0)


def utc_now() -> datetime:
    return datetime.now(UTC)


class EventDraft(_Frozen):
    """What a collector or the agent raises: an event before the outbox gives it seq, id and mac."""

    kind: EventKind
    ts: datetime = Field(default_factory=utc_now)
    severity: Severity = Severity.info
    user: str = Field(default="", max_length=256)
    action: Action = Action.observed
    rule: RuleRef | None = None
    data: dict[str, JsonValue] = Field(default_factory=dict)


class Event(_Frozen):
    """The envelope that leaves the device (ARCHITECTURE.md section 4)."""

    id: uuid.UUID
    device_id: str = Field(max_length=64)
    seq: int = Field(ge=1)
    ts: datetime
    kind: EventKind
    severity: Severity
    user: str = Field(max_length=256)
    action: Action
    rule: RuleRef | None = None
    data: dict[str, JsonValue]
    mac: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("ts")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("ts must carry a UTC offset (RFC 3339)")
        return _utc_representable(value)

    @field_validator("data")
    @classmethod
    def _bounded(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        if _data_length_at_most(value, MAX_DATA_BYTES):
            return value
        if len(json.dumps(value, separators=(",", ":"))) > MAX_DATA_BYTES:
            raise ValueError(f"data is larger than {MAX_DATA_BYTES} bytes")
        return value


def _utc_representable(value: datetime) -> datetime:
    """`value` unchanged (its offset is part of the chained bytes) when it has a UTC equivalent; a time such as
    0001-01-01T00:00:00+14:00 lies before year 1 in UTC and cannot be stored or compared."""
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("ts is out of range (its UTC time is outside years 1-9999)") from None
    return value


def _data_length_at_most(value: object, limit: int) -> bool:
    """Cheap sufficient test for `len(json.dumps(value, separators=(",", ":"))) <= limit`.

    That ASCII-escaped text is at most 3x the UTF-8 bytes orjson writes (a 2-4 byte character
    becomes one or two 6-character escapes; float spellings differ by a character or two at most).
    False means "unknown": the caller measures exactly.
    """
    if _orjson is not None:
        try:
            return 3 * len(_orjson.dumps(value)) <= limit
        except (TypeError, RecursionError):
            pass
    return False


# --- tamper-evident chain (ARCHITECTURE.md section 6) -------------------------------------------

GENESIS_MAC = "0" * 64
_CHAINED_FIELDS = ("id", "seq", "ts", "kind", "severity", "user", "action", "rule", "data")


def event_digest(body: dict[str, Any]) -> bytes:
    """SHA-256 over the canonical JSON of an event's chained fields (everything but device_id and mac).

    `body` is the JSON-mode dump of an event; device_id is left out because events raised before
    enrolment are chained before the device has an id.
    """
    canonical = {name: body.get(name) for name in _CHAINED_FIELDS}
    return hashlib.sha256(canonical_json(canonical)).digest()


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_PLAIN_TYPES = frozenset({str, int, bool, type(None)})


def orjson_exact(value: object) -> bool:
    """True when orjson writes `value` exactly as the stdlib json does: no floats (orjson writes 1e-05
    as 0.00001). Dict keys and int ranges are checked by orjson itself, which raises for the rest."""
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return True
    if kind is dict:
        return all(map(orjson_exact, value.values()))  # type: ignore[attr-defined]
    if kind is list:
        return all(map(orjson_exact, value))  # type: ignore[call-overload]
    return isinstance(value, str | int)  # enum members are str/int subclasses


def canonical_json(value: object) -> bytes:
    """UTF-8 of `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`.

    The chain's canonical form. orjson produces the same bytes for float-free values with string
    keys and 64-bit ints, at a fraction of the cost; anything else takes the stdlib path.
    """
    if _orjson is not None:
        try:
            if orjson_exact(value):
                return _orjson.dumps(value, option=_orjson.OPT_SORT_KEYS)
        except (_orjson.JSONEncodeError, RecursionError):
            pass
    return _CANONICAL.encode(value).encode()


_FLAT_TYPES = frozenset({str, int, bool, type(None)})


def data_orjson_exact(data: dict[str, Any]) -> bool:
    """`orjson_exact(data)`, without recursion for flat data (the common case: strings, ints, bools, nulls)."""
    for value in data.values():
        if type(value) not in _FLAT_TYPES:
            return orjson_exact(data)
    return True


def chained_json(body: dict[str, Any], *, data_exact: bool | None = None) -> bytes:
    """`canonical_json(body)` for a body of exactly the chained fields, typed as `Event` and `EventDraft` type
    them: only `data` can hold a float, so only it is checked (`data_exact` when the caller already knows)."""
    if _orjson is not None and (data_orjson_exact(body["data"]) if data_exact is None else data_exact):
        try:
            return _orjson.dumps(body, option=_orjson.OPT_SORT_KEYS)
        except (_orjson.JSONEncodeError, RecursionError):
            pass
    return _CANONICAL.encode(body).encode()


_TIME_ADAPTER: Any = None


def json_time(ts: datetime) -> str:
    """The exact string pydantic's JSON mode gives an aware time (UTC as a trailing "Z"), so digests match."""
    text = ts.isoformat()
    if text.endswith("+00:00"):
        return text[:-6] + "Z"
    global _TIME_ADAPTER
    if _TIME_ADAPTER is None:
        from pydantic import TypeAdapter

        _TIME_ADAPTER = TypeAdapter(datetime)
    return str(_TIME_ADAPTER.dump_python(ts, mode="json"))


def chain_link(key: bytes, prev_mac: str, seq: int, digest: bytes) -> str:
    """mac = HMAC-SHA256(key, prev_mac || seq || digest), hex encoded."""
    return hmac.new(key, bytes.fromhex(prev_mac) + seq.to_bytes(8, "big") + digest, hashlib.sha256).hexdigest()


class ChainHmac:
    """`chain_link` under one key, with the key's two HMAC-SHA256 states computed once (RFC 2104): copying
    them costs less than OpenSSL setting up an HMAC context per link. For checking or making many links."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = (key if len(key) <= 64 else hashlib.sha256(key).digest()).ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def link_bytes(self, prev_mac: bytes, seq: int, digest: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(prev_mac + seq.to_bytes(8, "big") + digest)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def link(self, prev_mac: str, seq: int, digest: bytes) -> str:
        """`chain_link(key, prev_mac, seq, digest)`."""
        return self.link_bytes(bytes.fromhex(prev_mac), seq, digest).hex()


def verify_link(key: bytes, prev_mac: str, event: Event) -> bool:
    body = event.model_dump(mode="json")
    expected = chain_link(key, prev_mac, event.seq, event_digest(body))
    return hmac.compare_digest(expected, event.mac)


UNLOCK_CODE_LENGTH = 8


def unlock_code(chain_key: bytes, day: date) -> str:
    """The admin unlock code for one device and one UTC day: HMAC-SHA256(chain key, "deskwarden/unlock/v1:" +
    date), first 8 hex characters. Both the agent and the endpoint hold the chain key, so the endpoint can issue
    it and the agent can check it offline."""
    message = f"deskwarden/unlock/v1:{day.isoformat()}".encode()
    return hmac.new(chain_key, message, hashlib.sha256).hexdigest()[:UNLOCK_CODE_LENGTH]


def new_event_id() -> uuid.UUID:
    """A time-ordered UUID (version 7 layout) so ids sort by creation time."""
    ms = int(utc_now().timestamp() * 1000)
    rand = uuid.uuid4().int & ((1 << 74) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62 | (rand & ((1 << 62) - 1))
    return uuid.UUID(int=value)


# --- policy (ARCHITECTURE.md section 5) ---------------------------------------------------------

HexId = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{4}$")]
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class UsbDeviceId(_Frozen):
    vendor_id: HexId
    product_id: HexId
    serial: str | None = Field(default=None, max_length=128)

    def matches(self, vendor_id: str | None, product_id: str | None, serial: str | None) -> bool:
        if vendor_id is None or product_id is None:
            return False
        if (self.vendor_id.lower(), self.product_id.lower()) != (vendor_id.lower(), product_id.lower()):
            return False
        return self.serial is None or self.serial == serial


class UsbException(UsbDeviceId):
    """A time-boxed exception approved in the console; travels with policy."""

    expires_at: datetime
    device_id: str | None = None
    """The agent device it applies to; None means every device the policy reaches."""
    reviewed_at: datetime | None = None


class UsbControl(_Frozen):
    mode: Literal["off", "audit", "warn", "block", "read_only"] = "audit"
    allow: list[UsbDeviceId] = Field(default_factory=list)
    exceptions: list[UsbException] = Field(default_factory=list)
    exceptions_allowed: bool = True
    media_roots: list[str] = Field(default_factory=lambda: ["/media", "/run/media"])


Confidence = Literal["low", "medium", "high"]
"""How sure a PII finding is, from its checksum, format and nearby keywords (collectors/pii/confidence.py)."""


class DownloadsControl(_Frozen):
    mode: Literal["off", "audit", "warn", "quarantine", "delete"] = "audit"
    paths: list[str] = Field(default_factory=lambda: ["~/Downloads"])
    blocked_extensions: list[str] = Field(default_factory=list)
    max_size_mb: float | None = Field(default=None, gt=0)
    scan_content: bool = True
    quarantine_on: Literal["any", "blocked", "sensitive"] = "blocked"
    """Which downloads quarantine/delete mode acts on: every file, blocked extension/size only, or
    blocked plus files with sensitive content."""
    min_confidence: Confidence = "medium"
    """Findings below this confidence do not make a file sensitive (docs/pii-detectors.md)."""
    encrypted_archives: Literal["audit", "warn", "quarantine"] = "audit"
    """What to do with a download whose content could not be checked because it is encrypted (a ZIP with encrypted
    members, a password-protected office file or PDF): record it (the default, as before this setting existed),
    warn the person, or quarantine it. Applies unless `mode` is off; the stronger of this and `mode` wins."""

    @field_validator("blocked_extensions")
    @classmethod
    def _dotted(cls, value: list[str]) -> list[str]:
        return [ext.lower() if ext.startswith(".") else "." + ext.lower() for ext in value]


Detector = Literal["card", "aadhaar", "pan", "iban", "ssn", "email", "phone"]
ALL_DETECTORS: tuple[Detector, ...] = ("card", "aadhaar", "pan", "iban", "ssn", "email", "phone")


class ClipboardControl(_Frozen):
    mode: Literal["off", "audit", "warn", "clear", "mask"] = "audit"
    detectors: list[Detector] = Field(default_factory=lambda: list(ALL_DETECTORS))
    min_confidence: Confidence = "medium"
    """Copies whose findings are all below this confidence are not acted on or recorded."""


class ScreenCaptureControl(_Frozen):
    mode: Literal["off", "audit", "warn", "block"] = "audit"
    process_names: list[str] = Field(default_factory=list)
    """Added to the built-in list for the OS."""
    executable_paths: list[str] = Field(default_factory=list)
    hotkeys: bool = True


class CleanDeskControl(_Frozen):
    times: list[str] = Field(default_factory=list)
    after_idle_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    shift_end: str | None = None
    checklist: list[str] = Field(
        default_factory=lambda: [
            "No customer documents or notes left on the desk",
            "Screen locked when you step away",
            "No phones or cameras pointed at the screen",
        ]
    )
    grace_minutes: int = Field(default=15, ge=1, le=240)
    snooze_minutes: int = Field(default=5, ge=1, le=60)
    max_snoozes: int = Field(default=2, ge=0, le=10)

    @field_validator("times")
    @classmethod
    def _times(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _HHMM.match(item):
                raise ValueError(f"clean-desk time {item!r} is not HH:MM")
        return value

    @field_validator("shift_end")
    @classmethod
    def _shift_end(cls, value: str | None) -> str | None:
        if value is not None and not _HHMM.match(value):
            raise ValueError(f"shift_end {value!r} is not HH:MM")
        return value


DEFAULT_ACK_TEXT = (
    "# Acceptable use of customer data\n\n"
    "You handle customer data on behalf of our clients. DeskWarden records when removable storage, "
    "downloads, the clipboard or screen-capture tools touch that data, and tells you when it acts.\n"
)


class AcknowledgementControl(_Frozen):
    required: bool = True
    text_markdown: str = Field(default=DEFAULT_ACK_TEXT, max_length=200_000)
    reack_days: int = Field(default=90, ge=1, le=3650)


class JustificationControl(_Frozen):
    min_length: int = Field(default=15, ge=0, le=1000)
    reasons: list[str] = Field(
        default_factory=lambda: ["Customer requested it", "Supervisor approved it", "Business need"]
    )
    timeout_seconds: int = Field(default=120, ge=10, le=3600)
    default_on_timeout: str = Field(default="No justification given", max_length=200)


class ReportingControl(_Frozen):
    heartbeat_seconds: int = Field(default=60, ge=5, le=3600)
    queue_quota_mb: int = Field(default=512, ge=1, le=100_000)
    retention_days: int = Field(default=30, ge=1, le=3650)
    """How long the agent keeps already-sent events for the 'what was reported' view."""


class AgentControl(_Frozen):
    allow_quit: bool = False


class Controls(_Frozen):
    usb: UsbControl = Field(default_factory=UsbControl)
    downloads: DownloadsControl = Field(default_factory=DownloadsControl)
    clipboard: ClipboardControl = Field(default_factory=ClipboardControl)
    screen_capture: ScreenCaptureControl = Field(default_factory=ScreenCaptureControl)
    clean_desk: CleanDeskControl = Field(default_factory=CleanDeskControl)
    acknowledgement: AcknowledgementControl = Field(default_factory=AcknowledgementControl)
    justification: JustificationControl = Field(default_factory=JustificationControl)
    reporting: ReportingControl = Field(default_factory=ReportingControl)
    agent: AgentControl = Field(default_factory=AgentControl)


class PolicyDocument(_Frozen):
    """What admins write and the endpoint signs. Unknown fields are an error, not ignored."""

    version: int = Field(ge=0)
    issued_at: datetime = Field(default_factory=utc_now)
    org: str = Field(default="", max_length=200)
    controls: Controls = Field(default_factory=Controls)


class PolicyEnvelope(_Frozen):
    """Signed policy as served by `GET /v1/policy`; the signature covers the base64-decoded payload bytes."""

    key_id: str = Field(max_length=64)
    payload: str
    signature: str


# --- API bodies (ARCHITECTURE.md section 7) -----------------------------------------------------


class EnrollRequest(_Frozen):
    token: str = Field(min_length=8, max_length=256)
    hostname: str = Field(max_length=255)
    os: str = Field(max_length=64)
    user: str = Field(default="", max_length=256)
    agent_version: str = Field(default="", max_length=64)
    chain_key: str = Field(min_length=40, max_length=128)
    """Base64 of the agent's HMAC chain key, so the endpoint can verify the event chain."""


class EnrollResponse(_Frozen):
    device_id: str
    credential: str
    team: str
    policy_key_id: str
    policy_public_key: str
    """Base64 of the raw 32-byte Ed25519 public key."""


class EventBatch(_Frozen):
    device_id: str = Field(max_length=64)
    events: list[Event] = Field(max_length=MAX_BATCH_EVENTS)


class IngestResult(_Frozen):
    accepted: int
    duplicates: int


AgentMode = Literal["protected", "unprotected"]


class Heartbeat(_Frozen):
    ts: datetime = Field(default_factory=utc_now)
    user: str = Field(default="", max_length=256)
    agent_version: str = Field(default="", max_length=64)
    policy_version: int = Field(default=0, ge=0)
    queue_depth: int = Field(default=0, ge=0)
    oldest_unsent_age_s: float | None = Field(default=None, ge=0)
    collectors: dict[str, str] = Field(default_factory=dict)
    rss_bytes: int | None = Field(default=None, ge=0)
    cpu_percent: float | None = Field(default=None, ge=0)
    attention: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=10)
    """What the person at the desk must act on (e.g. an overdue policy acknowledgement), in plain words."""
    mode: AgentMode = "unprotected"
    """`protected`: a privileged service enforces and a desk user cannot stop it; `unprotected`: service and
    helper run as the desk user (demo/developer mode, or an agent older than the split)."""

    @field_validator("ts")
    @classmethod
    def _in_range(cls, value: datetime) -> datetime:
        return _utc_representable(value)


SEQ_RESYNC_HEADER = "X-DeskWarden-Seq-Resync"
"""Sent as `1` on a heartbeat by agents that resynchronise their seqs: only then does the answer carry
`last_seq` and `last_mac` (an agent older than these fields would refuse an answer that has them)."""


class HeartbeatResponse(BaseModel):
    # Not `_Frozen`'s extra="forbid": a field a newer endpoint adds must not make this agent drop the answer.
    model_config = ConfigDict(frozen=True, extra="ignore")

    policy_version: int
    """The newest policy version the endpoint serves; the agent fetches policy when it is newer."""
    last_seq: int | None = Field(default=None, ge=0)
    """The highest seq the endpoint has stored for this device (answers to `SEQ_RESYNC_HEADER` only). An agent
    whose outbox head is below it lost its outbox: it continues its seqs after this one."""
    last_mac: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """The mac of the event at `last_seq` (`GENESIS_MAC` when none): the link the next seq must chain from."""


class ErrorBody(_Frozen):
    detail: str
