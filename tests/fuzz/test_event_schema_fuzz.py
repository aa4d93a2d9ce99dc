"""Hypothesis against the event schema: junk is a ValidationError, and a chained event survives the wire intact."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from policy_client.schema import (
    GENESIS_MAC,
    Action,
    Event,
    EventBatch,
    EventKind,
    RuleRef,
    Severity,
    chain_link,
    event_digest,
    verify_link,
)
from tests.fuzz.budget import budget

KEY = b"k" * 32
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
TIMES = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)


@st.composite
def chained_events(draw: st.DrawFn) -> Event:
    body = {
        "id": str(uuid.UUID(int=draw(st.integers(min_value=0, max_value=2**128 - 1)))),
        "device_id": draw(st.text(alphabet="0123456789abcdef", min_size=1, max_size=32)),
        "seq": draw(st.integers(min_value=1, max_value=2**63 - 1)),
        "ts": draw(TIMES).isoformat(),
        "kind": draw(st.sampled_from(list(EventKind))).value,
        "severity": draw(st.sampled_from(list(Severity))).value,
        "user": draw(st.text(max_size=20)),
        "action": draw(st.sampled_from(list(Action))).value,
        "rule": draw(
            st.none()
            | st.builds(lambda i, v: {"id": i, "policy_version": v}, st.text(max_size=10), st.integers(0, 10**6))
        ),
        "data": draw(st.dictionaries(st.text(max_size=10), JSON, max_size=6)),
    }
    draft = Event.model_validate({**body, "mac": "0" * 64})
    digest = event_digest(draft.model_dump(mode="json"))
    return draft.model_copy(update={"mac": chain_link(KEY, GENESIS_MAC, draft.seq, digest)})


@budget(300)
@given(event=chained_events())
def test_a_chained_event_verifies_after_a_round_trip_through_json(event: Event) -> None:
    assert verify_link(KEY, GENESIS_MAC, event)
    wire = EventBatch(device_id=event.device_id, events=[event]).model_dump_json()
    received = EventBatch.model_validate_json(wire).events[0]
    assert received == event
    assert event_digest(received.model_dump(mode="json")) == event_digest(event.model_dump(mode="json"))
    assert verify_link(KEY, GENESIS_MAC, received)
    # The same through the standard library's JSON, as another client would send it.
    again = Event.model_validate(json.loads(event.model_dump_json()))
    assert verify_link(KEY, GENESIS_MAC, again)


@budget(300)
@given(body=JSON)
def test_junk_is_a_validation_error(body: object) -> None:
    try:
        Event.model_validate(body)
    except ValidationError:
        return
    pytest.fail(f"junk accepted as an event: {body!r}")


@budget(200)
@given(event=chained_events(), field=st.sampled_from(["seq", "data", "kind", "user", "ts"]))
def test_changing_a_chained_field_breaks_the_link(event: Event, field: str) -> None:
    options: dict[str, dict[str, Any]] = {
        "seq": {"seq": event.seq + 1 if event.seq < 2**63 - 1 else event.seq - 1},
        "data": {"data": {**event.data, "tampered": True}},
        "kind": {"kind": EventKind.agent_loss if event.kind is not EventKind.agent_loss else EventKind.agent_tamper},
        "user": {"user": event.user + "x"},
        "ts": {"ts": event.ts + timedelta(seconds=1)},
    }
    assert not verify_link(KEY, GENESIS_MAC, event.model_copy(update=options[field]))


@budget(100)
@given(rule=st.builds(RuleRef, id=st.text(max_size=128), policy_version=st.integers(0, 2**31)))
def test_rule_refs_round_trip(rule: RuleRef) -> None:
    assert RuleRef.model_validate_json(rule.model_dump_json()) == rule
