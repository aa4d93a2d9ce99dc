"""`Database.read(single_statement=True)`: the lookup runs outside a transaction (no BEGIN on SQLite, autocommit on
PostgreSQL), while a plain `read()` still holds one snapshot across its statements.

SQLite and (marker postgres) PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from central.runtime import Runtime
from central.store import tables


def _in_transaction(conn: Connection) -> bool:
    raw: Any = conn.connection.dbapi_connection
    if hasattr(raw, "in_transaction"):  # sqlite3
        return bool(raw.in_transaction)
    from psycopg.pq import TransactionStatus

    return bool(raw.info.transaction_status != TransactionStatus.IDLE)


def test_a_single_statement_read_opens_no_transaction(runtime: Runtime) -> None:
    count = select(func.count()).select_from(tables.policies)
    with runtime.db.read(single_statement=True) as conn:
        assert conn.execute(count).scalar_one() >= 1
        assert not _in_transaction(conn)


def test_a_plain_read_is_one_transaction(runtime: Runtime) -> None:
    count = select(func.count()).select_from(tables.policies)
    with runtime.db.read() as conn:
        assert conn.execute(count).scalar_one() >= 1
        assert _in_transaction(conn)


def test_a_connection_back_from_a_single_statement_read_is_transactional_again(runtime: Runtime) -> None:
    """The pool hands the same connection to the next caller: its transaction handling must be restored."""
    count = select(func.count()).select_from(tables.policies)
    for _ in range(3):
        with runtime.db.read(single_statement=True) as conn:
            conn.execute(count)
    with runtime.db.read() as conn:
        conn.execute(count)
        assert _in_transaction(conn)
