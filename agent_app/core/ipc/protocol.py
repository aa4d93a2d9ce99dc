"""The service <-> helper wire protocol: framing, message shapes, limits. Both processes import this module.

Frames are a 4-byte big-endian length and a UTF-8 JSON object. Every message names its protocol version and
type. The service treats everything a helper sends as untrusted input: the frame size is checked before the
body is read, and each request is validated against its model here. Pure functions; any thread.
"""

from __future__ import annotations

import json
import struct
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from policy_client.schema import EventDraft, EventKind

PROTOCOL_VERSION = 1
MAX_FRAME = 256 * 1024
"""Largest frame either side accepts; a longer announced length closes the connection unread."""
MAX_EVENTS_PER_RECORD = 100
MAX_HISTORY = 500
HEADER = struct.Struct(">I")

HELPER_KINDS: frozenset[EventKind] = frozenset(
    {
        EventKind.clipboard_sensitive,
        EventKind.capture_hotkey,
        EventKind.policy_acknowledged,
        EventKind.cleandesk_prompted,
        EventKind.cleandesk_attested,
        EventKind.cleandesk_missed,
        EventKind.violation_justified,
        EventKind.usb_exception_requested,
        EventKind.agent_collector_failed,
    }
)
"""What a helper may record: things only the person's session sees, or the person's own answers. Agent life
cycle, tamper, loss, unlock and enforcement events of the service's collectors come from the service alone."""


class ProtocolError(Exception):
    """A frame or message that breaks the protocol; the receiver answers with an error or hangs up."""


class _Msg(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1


# --- helper -> service requests ------------------------------------------------------------------------------


class Hello(_Msg):
    type: Literal["hello"] = "hello"
    id: int = Field(ge=0, le=2**31)
    helper_version: str = Field(default="", max_length=64)
    role: Literal["helper", "query"] = "helper"
    """`query`: a one-off client such as `deskwarden status`; only helpers are expected to stay connected."""


class Record(_Msg):
    type: Literal["record"] = "record"
    id: int = Field(ge=0, le=2**31)
    events: list[EventDraft] = Field(min_length=1, max_length=MAX_EVENTS_PER_RECORD)


class StatusRequest(_Msg):
    type: Literal["status"] = "status"
    id: int = Field(ge=0, le=2**31)


class HistoryRequest(_Msg):
    type: Literal["history"] = "history"
    id: int = Field(ge=0, le=2**31)
    limit: int = Field(default=200, ge=1, le=MAX_HISTORY)


class Attention(_Msg):
    type: Literal["attention"] = "attention"
    id: int = Field(ge=0, le=2**31)
    reasons: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=10)


class QuitRequest(_Msg):
    type: Literal["quit"] = "quit"
    id: int = Field(ge=0, le=2**31)
    token: str | None = Field(default=None, max_length=400)


Request = Annotated[
    Hello | Record | StatusRequest | HistoryRequest | Attention | QuitRequest, Field(discriminator="type")
]


class _RequestEnvelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    request: Request


# --- service -> helper --------------------------------------------------------------------------------------


class Reply(_Msg):
    type: Literal["reply"] = "reply"
    re: int
    ok: bool = True
    result: dict[str, Any] = Field(default_factory=dict)
    error: str = ""
    """A short code on failure: `bad_request`, `forbidden_kind`, `rate_limited`, `unavailable`, `internal`."""


class Push(_Msg):
    """Unsolicited: `notice` (show the person), `policy` (new snapshot in force), `status` (tray refresh)."""

    type: Literal["push"] = "push"
    topic: Literal["notice", "policy", "status"]
    body: dict[str, Any]


# --- framing -----------------------------------------------------------------------------------------------


def encode(message: BaseModel) -> bytes:
    body = message.model_dump_json(exclude_none=False).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"message of {len(body)} bytes exceeds the {MAX_FRAME}-byte frame limit")
    return HEADER.pack(len(body)) + body


def frame_length(header: bytes) -> int:
    """The announced body length; ProtocolError when it is zero or over the limit (checked before reading)."""
    (length,) = HEADER.unpack(header)
    if length == 0 or length > MAX_FRAME:
        raise ProtocolError(f"frame length {length} outside 1..{MAX_FRAME}")
    return int(length)


def parse_request(body: bytes) -> Hello | Record | StatusRequest | HistoryRequest | Attention | QuitRequest:
    """Validate one helper request; ProtocolError (with a reason safe to log) when it is not one."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("frame is not JSON") from None
    if not isinstance(raw, dict):
        raise ProtocolError("frame is not a JSON object")
    if raw.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {str(raw.get('v'))[:10]!r}")
    try:
        return _RequestEnvelope.model_validate({"request": raw}).request
    except ValidationError as exc:
        raise ProtocolError(f"invalid {str(raw.get('type'))[:20]!r} request: {exc.error_count()} error(s)") from None


def parse_server_message(body: bytes) -> Reply | Push:
    try:
        raw = json.loads(body)
        if isinstance(raw, dict) and raw.get("type") == "push":
            return Push.model_validate(raw)
        return Reply.model_validate(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"bad message from the service: {type(exc).__name__}") from None


def request_id(body: bytes) -> int:
    """Best-effort id of a request that failed validation, so the error reply can name it (0 when unknown)."""
    try:
        raw = json.loads(body)
        value = raw.get("id") if isinstance(raw, dict) else None
    except (UnicodeDecodeError, ValueError):
        return 0
    return value if isinstance(value, int) and 0 <= value <= 2**31 else 0
