"""Hypothesis strategies for event content: JSON data, timestamps with offsets, rule refs and whole events.

One home for what the property tests of canonical JSON, the agent's row sealing and the endpoint's ingest
shortcut all draw from. Called from the test thread while Hypothesis generates examples.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from hypothesis import strategies as st

from policy_client.schema import Action, Event, EventKind, RuleRef, Severity


def json_text(*, max_size: int = 20) -> st.SearchStrategy[str]:
    """Any text UTF-8 can carry, NUL and astral characters included."""
    return st.text(alphabet=st.characters(codec="utf-8"), max_size=max_size)


def json_values(*, max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Any JSON value, with integers past 64 bits (which orjson refuses) and nested lists and objects."""
    text = json_text()
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | text
    )
    containers = lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4)  # noqa: E731
    return st.recursive(scalars, containers, max_leaves=max_leaves)


def event_data(*, max_leaves: int = 20) -> st.SearchStrategy[dict[str, Any]]:
    """An event's `data` object."""
    return st.dictionaries(json_text(), json_values(max_leaves=max_leaves), max_size=6)


_OFFSETS = [
    timedelta(0),
    timedelta(0),
    timedelta(hours=5, minutes=30),
    timedelta(minutes=90),
    timedelta(hours=-5),
    timedelta(hours=-8),
]


@st.composite
def timezones(draw: st.DrawFn) -> tzinfo:
    """UTC, a zero offset that is not `UTC`, or a whole or half-hour offset either side of it."""
    offset = draw(st.sampled_from(_OFFSETS))
    return UTC if offset == timedelta(0) and draw(st.booleans()) else timezone(offset)


def rule_refs() -> st.SearchStrategy[RuleRef | None]:
    """No rule, or a rule ref whose policy version may pass 64 bits."""
    return st.none() | st.builds(RuleRef, id=json_text(), policy_version=st.integers(0, 2**70))


@st.composite
def events(draw: st.DrawFn, *, device_id: str = "dev-1", mac: str = "a" * 64) -> Event:
    """An event as an agent of `device_id` sends it, with any field value the schema accepts (`mac` unchecked)."""
    moment = draw(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)))
    return Event(
        id=uuid.UUID(int=draw(st.integers(0, 2**128 - 1))),
        device_id=device_id,
        seq=draw(st.integers(1, 2**63 - 1)),
        ts=moment.replace(tzinfo=draw(timezones())),
        kind=draw(st.sampled_from(list(EventKind))),
        severity=draw(st.sampled_from(list(Severity))),
        user=draw(json_text()),
        action=draw(st.sampled_from(list(Action))),
        rule=draw(rule_refs()),
        data=draw(event_data()),
        mac=mac,
    )
