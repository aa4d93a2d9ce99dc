"""PostgreSQL for tests: a fresh, uniquely named database per test on the server in DESKWARDEN_TEST_PG.

Import the fixtures from a conftest (`from tests.pg import pg_url, db_url`); runs in the pytest main thread.
Without DESKWARDEN_TEST_PG the PostgreSQL cases are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

PG_ENV = "DESKWARDEN_TEST_PG"
SKIP_REASON = (
    f"{PG_ENV} is not set; export {PG_ENV}=postgresql+psycopg://postgres:postgres@127.0.0.1:5432/postgres "
    "to run the PostgreSQL cases (.ci/run starts a server and sets it)"
)


def _libpq_url(sqlalchemy_url: str) -> str:
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def fresh_pg_database(base_url: str, *, prefix: str = "dw_test") -> Iterator[str]:
    """Create a new empty database on the server of `base_url`; yield its SQLAlchemy URL; drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    admin = _libpq_url(base_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_url() -> Iterator[str]:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(SKIP_REASON)
    with fresh_pg_database(base) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """None (the embedded SQLite file in the data dir) or the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url
