"""Backoff bounds, Retry-After parsing, and the uploader's pure parts (batch encoding, error details)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_app.core.backoff import MAX_RETRY_AFTER_S, Backoff, parse_retry_after
from agent_app.core.outbox_crypto import WireRow
from agent_app.core.uploader import Uploader, _detail
from policy_client.schema import EventBatch, canonical_json

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def test_full_jitter_stays_within_zero_and_the_growing_ceiling() -> None:
    backoff = Backoff(base=1.0, cap=300.0, rand=random.Random(7).random)
    for attempt in range(40):
        ceiling = min(300.0, 2.0**attempt)
        delay = backoff.next_delay()
        assert 0.0 <= delay <= ceiling
    assert backoff.attempts == 40


def test_ceiling_doubles_from_base_to_cap() -> None:
    backoff = Backoff(base=1.0, cap=300.0)
    assert [backoff.ceiling(n) for n in range(10)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert backoff.ceiling(10_000) == 300.0


def test_extremes_of_the_random_source_hit_the_bounds() -> None:
    top = Backoff(base=1.0, cap=300.0, rand=lambda: 1.0)
    assert [top.next_delay() for _ in range(12)][-3:] == [300.0, 300.0, 300.0]
    bottom = Backoff(base=1.0, cap=300.0, rand=lambda: 0.0)
    assert {bottom.next_delay() for _ in range(5)} == {0.0}


def test_reset_starts_again_from_base() -> None:
    backoff = Backoff(base=0.5, cap=10.0, rand=lambda: 1.0)
    for _ in range(8):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


@given(st.floats(min_value=1e-3, max_value=10), st.floats(min_value=10, max_value=600), st.integers(0, 200))
def test_delay_never_exceeds_cap(base: float, cap: float, attempts: int) -> None:
    backoff = Backoff(base=base, cap=cap, rand=lambda: 1.0)
    for _ in range(attempts):
        assert 0 <= backoff.next_delay() <= cap


def test_invalid_backoff_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="base"):
        Backoff(base=0, cap=1)
    with pytest.raises(ValueError, match="base"):
        Backoff(base=10, cap=1)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("0.25", 0.25),
        ("-5", 0.0),
        ("999999999", MAX_RETRY_AFTER_S),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        ("Wed, 01 May 2024 12:00:30 GMT", 30.0),
        ("Wednesday, 01-May-24 12:00:30 GMT", 30.0),  # RFC 850, still allowed by RFC 9110
        (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("1e400", None),
        ("12 monkeys", None),
    ],
)
def test_retry_after_parsing(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@given(st.text(max_size=40))
def test_retry_after_never_raises(header: str) -> None:
    value = parse_retry_after(header, now=NOW)
    assert value is None or 0.0 <= value <= MAX_RETRY_AFTER_S


def _uploader() -> Uploader:
    def no_outbox() -> object:
        raise AssertionError("not used")

    return Uploader(outbox_factory=no_outbox, transport=None, device_id="dev-9", record=lambda d: None)  # type: ignore[arg-type]


def test_without_enrolment_the_state_is_not_enrolled() -> None:
    assert _uploader().state == "not_enrolled"


def test_batch_body_is_a_valid_event_batch_built_from_wire_rows() -> None:
    bodies = [
        {
            "id": "01890a5d-ac96-774b-bcce-b302099a8057",
            "seq": seq,
            "ts": "2024-05-01T12:00:00Z",
            "kind": "usb.mounted",
            "severity": "info",
            "user": "asha",
            "action": "observed",
            "rule": None,
            "data": {"label": "ÜSB"},
        }
        for seq in (1, 2)
    ]
    rows = [WireRow(b["seq"], "usb.mounted", "ab" * 32, canonical_json(b)) for b in bodies]  # type: ignore[arg-type]
    body = _uploader()._encode(rows)
    batch = EventBatch.model_validate_json(body)
    assert batch.device_id == "dev-9"
    assert [e.seq for e in batch.events] == [1, 2]
    assert {e.device_id for e in batch.events} == {"dev-9"}
    assert {e.mac for e in batch.events} == {"ab" * 32}
    assert [e.model_dump(mode="json", exclude={"device_id", "mac"}) for e in batch.events] == bodies
    assert "ÜSB".encode() in body


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b'{"detail": "batch device differs"}', "batch device differs"),
        (json.dumps({"detail": [{"msg": "field required", "loc": ["body"]}]}).encode(), "field required"),
        (b"<html>bad gateway</html>", ""),
        (b"[]", ""),
        (json.dumps({"detail": "x" * 1000}).encode(), "x" * 200),
    ],
)
def test_error_detail_is_short_and_safe(content: bytes, detail: str) -> None:
    assert _detail(content) == detail
