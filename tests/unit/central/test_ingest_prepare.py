"""The ingest path builds each event's chained body and columns directly; they must equal what the pydantic
JSON-mode dump gives (the digest the agent chained, and the column values stored before the shortcut)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from central.store.ingest import _encode_data, _prepare, _sqlite_time
from policy_client.schema import (
    GENESIS_MAC,
    Action,
    ChainHmac,
    Event,
    EventBatch,
    EventKind,
    RuleRef,
    Severity,
    chain_link,
    event_digest,
)

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=16)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_json = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3), max_leaves=15
)
_offsets = st.sampled_from([timedelta(0), timedelta(0), timedelta(hours=5, minutes=30), timedelta(hours=-8)])


@st.composite
def _events(draw: st.DrawFn) -> Event:
    moment = draw(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)))
    offset = draw(_offsets)
    tz = UTC if offset == timedelta(0) and draw(st.booleans()) else timezone(offset)
    rule = draw(st.none() | st.builds(RuleRef, id=_text, policy_version=st.integers(0, 2**62)))
    return Event(
        id=uuid.UUID(int=draw(st.integers(0, 2**128 - 1))),
        device_id="dev-1",
        seq=draw(st.integers(1, 2**62)),
        ts=moment.replace(tzinfo=tz),
        kind=draw(st.sampled_from(list(EventKind))),
        severity=draw(st.sampled_from(list(Severity))),
        user=draw(_text),
        action=draw(st.sampled_from(list(Action))),
        rule=rule,
        data=draw(st.dictionaries(_text, _json, max_size=5)),
        mac="a" * 64,
    )


class _Dialect:
    def __init__(self, sqlite: bool) -> None:
        self.is_sqlite = sqlite


@settings(max_examples=300, deadline=None)
@given(event=_events(), sqlite=st.booleans())
def test_prepared_digest_and_columns_match_the_pydantic_dump(event: Event, sqlite: bool) -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    db: Any = _Dialect(sqlite)
    unique, clashes = _prepare(db, "dev-1", EventBatch(device_id="dev-1", events=[event]), now)
    prepared = unique[event.seq]
    body: dict[str, Any] = event.model_dump(mode="json")
    assert clashes == set()
    assert prepared.digest == event_digest(body)
    rule = event.rule
    assert prepared.row == (
        "dev-1",
        event.seq,
        body["id"],
        _sqlite_time(event.ts) if sqlite else event.ts,
        body["kind"],
        body["severity"],
        event.user,
        body["action"],
        rule.id if rule else None,
        rule.policy_version if rule else None,
        _encode_data(body["data"]),
        event.mac,
        _sqlite_time(now) if sqlite else now,
    )
    assert all(type(value) is not EventKind for value in prepared.row)


@settings(max_examples=100, deadline=None)
@given(
    key=st.binary(min_size=1, max_size=100), seq=st.integers(0, 2**64 - 1), digest=st.binary(min_size=32, max_size=32)
)
def test_chain_hmac_equals_chain_link(key: bytes, seq: int, digest: bytes) -> None:
    prev = chain_link(key, GENESIS_MAC, 1, digest)
    assert ChainHmac(key).link(prev, seq, digest) == chain_link(key, prev, seq, digest)
