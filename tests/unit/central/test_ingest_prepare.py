"""The ingest path builds each event's chained body and columns directly; they must equal what the pydantic
JSON-mode dump gives (the digest the agent chained, and the column values stored before the shortcut)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from central.store.ingest import _encode_data, _prepare, _sqlite_time
from policy_client.schema import GENESIS_MAC, ChainHmac, Event, EventBatch, EventKind, chain_link, event_digest
from tests.support.event_strategies import events


class _Dialect:
    def __init__(self, sqlite: bool) -> None:
        self.is_sqlite = sqlite


@settings(max_examples=300, deadline=None)
@given(event=events(), sqlite=st.booleans())
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
