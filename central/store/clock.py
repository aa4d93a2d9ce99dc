"""Time helpers for the store: SQLite hands timestamps back without their UTC offset.

Pure functions; any thread.
"""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: datetime) -> datetime:
    """Values are always written in UTC; put the offset back on when the driver dropped it."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def as_utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)
