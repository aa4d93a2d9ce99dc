"""The device page shows an event's data as readable pairs: findings summarised with their masked sample, long
values and many keys capped, non-mapping data still shown."""

from __future__ import annotations

from central.console.event_fields import MAX_FIELDS, MAX_VALUE, TIMES, event_fields


def test_findings_read_as_count_type_and_masked_sample() -> None:
    data = {
        "findings": [{"type": "card", "count": 2, "sample": "XXXX XXXX XXXX 4242", "confidence": "high"}],
        "length": 212,
    }
    assert event_fields(data) == [("findings", f"2 {TIMES} card (XXXX XXXX XXXX 4242), high"), ("length", "212")]


def test_large_numbers_get_separators_and_nested_values_stay_compact_json() -> None:
    pairs = dict(event_fields({"size_bytes": 32_010_928_128, "dropped": {"usb.mounted": 3}, "same_user": True}))
    assert pairs == {"size_bytes": "32,010,928,128", "dropped": '{"usb.mounted": 3}', "same_user": "true"}


def test_a_long_value_and_many_keys_are_capped() -> None:
    pairs = event_fields({f"k{i:02}": "v" * 500 for i in range(MAX_FIELDS + 5)})
    assert len(pairs) == MAX_FIELDS + 1
    assert pairs[-1] == ("…", "5 more")
    assert all(len(value) <= MAX_VALUE for _, value in pairs)


def test_data_that_is_not_an_object_is_still_shown() -> None:
    assert event_fields(None) == []
    assert event_fields([1, 2]) == [("data", "[1, 2]")]
