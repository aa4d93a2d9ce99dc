"""`seal_draft` lets orjson write the event time: orjson's `OPT_UTC_Z` output must be exactly `json_time`'s string
(pydantic's JSON mode) for every aware UTC time, or the chained bytes would change."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from policy_client.schema import json_time


@settings(max_examples=2000, deadline=None)
@given(st.datetimes(timezones=st.just(UTC)))
def test_orjson_writes_a_utc_time_as_json_time_does(moment: datetime) -> None:
    assert orjson.dumps(moment, option=orjson.OPT_UTC_Z) == b'"' + json_time(moment).encode() + b'"'


def test_whole_seconds_and_the_first_and_last_years_too() -> None:
    for moment in (datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)):
        assert orjson.dumps(moment, option=orjson.OPT_UTC_Z) == b'"' + json_time(moment).encode() + b'"'
