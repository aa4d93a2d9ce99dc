"""Fixtures for the console unit tests: a prepared runtime with a fake clock (SQLite and PostgreSQL)."""

from __future__ import annotations

from tests.pg import db_url, pg_url
from tests.unit.central.conftest import FakeClock, clock, enroll_agent, runtime, settings

__all__ = ["FakeClock", "clock", "db_url", "enroll_agent", "pg_url", "runtime", "settings"]
