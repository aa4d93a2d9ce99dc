"""Fixtures of the conservation harness: the SQLite/PostgreSQL parameter comes from tests.pg."""

from __future__ import annotations

from tests.pg import db_url, pg_url

__all__ = ["db_url", "pg_url"]
