"""`schema.canonical_json` (orjson fast path) is byte-identical to the stdlib canonical form."""

from __future__ import annotations

import hashlib
import json
from enum import IntEnum
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from policy_client.schema import Action, EventKind, Severity, canonical_json, event_digest
from tests.support import event_strategies


def stdlib(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


json_values = event_strategies.json_values(max_leaves=25)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_any_json_value_matches_the_stdlib(value: Any) -> None:
    assert canonical_json(value) == stdlib(value)


@settings(max_examples=200, deadline=None)
@given(event_strategies.event_data(max_leaves=25), st.integers(min_value=1, max_value=2**63 - 1))
def test_event_bodies_with_enum_members_match(data: dict[str, Any], seq: int) -> None:
    body = {
        "id": "018f0000-0000-7000-8000-000000000000",
        "seq": seq,
        "ts": "2024-05-01T10:00:00.123456Z",
        "kind": EventKind.clipboard_sensitive,
        "severity": Severity.high,
        "user": "agent01",
        "action": Action.masked,
        "rule": {"id": "r", "policy_version": 3},
        "data": data,
    }
    assert canonical_json(body) == stdlib(body)


class _Level(IntEnum):
    one = 1


def test_awkward_values_fall_back_to_the_stdlib() -> None:
    for value in (
        {1: "int key"},
        {"f": 1e-05, "g": 1e16, "n": float("nan")},
        [2**64, -(2**63) - 1],
        ("tuple", 1),
        {"level": _Level.one, "bool": True},
        "\x00\x1f\x7f\u2028\U0001f600",
    ):
        assert canonical_json(value) == stdlib(value)
    nested: Any = []
    for _ in range(400):
        nested = [nested]
    assert canonical_json(nested) == stdlib(nested)


def test_event_digest_unchanged() -> None:
    body = {"id": "x", "seq": 1, "ts": "t", "kind": "k", "severity": "info", "user": "", "action": "observed"}
    body |= {"rule": None, "data": {"b": [1, 2.5], "a": "é"}, "mac": "ignored", "device_id": "ignored"}
    canonical = {k: body.get(k) for k in ("id", "seq", "ts", "kind", "severity", "user", "action", "rule", "data")}
    assert event_digest(body) == hashlib.sha256(stdlib(canonical)).digest()


@settings(max_examples=300, deadline=None)
@given(event_strategies.event_data(max_leaves=25))
def test_the_data_size_shortcut_never_passes_oversized_data(data: dict[str, Any]) -> None:
    from policy_client.schema import _data_length_at_most

    for limit in (0, 10, 50, 200):
        if _data_length_at_most(data, limit):
            assert len(json.dumps(data, separators=(",", ":"))) <= limit


def test_data_just_over_the_limit_is_still_refused() -> None:
    import pytest
    from pydantic import ValidationError

    from policy_client.schema import MAX_DATA_BYTES, Event

    body = {"id": "018f0000-0000-7000-8000-000000000000", "device_id": "d", "seq": 1, "ts": "2024-05-01T10:00:00Z"}
    body |= {"kind": "usb.mounted", "severity": "info", "user": "", "action": "observed", "mac": "a" * 64}
    fits = "é" * ((MAX_DATA_BYTES - 8) // 6)  # {"s":"..."} with 6-char escapes: just under the limit
    assert Event.model_validate(body | {"data": {"s": fits}})
    with pytest.raises(ValidationError, match="larger than"):
        Event.model_validate(body | {"data": {"s": fits + "é"}})
