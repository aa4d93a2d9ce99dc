"""Opening the database: one SQLAlchemy engine per process, SQLite tuned for durable concurrent use.

`Database` is created once (app start or CLI command) and shared by all request threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from central.store.group_commit import GroupCommit
from central.store.sealing import DIALECT_ATTRIBUTE, SecretBox

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class Database:
    engine: Engine
    writer: GroupCommit | None = None
    """SQLite allows one writer: the request threads share one write connection and group their commits
    (group_commit.py), which beats both SQLite's sleeping busy handler and one fsync per request."""
    box: SecretBox | None = None
    """Seals the secrets stored in the database (console settings); None only for tools that never touch them."""

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, committed (durably) when the block exits without an exception.

        On SQLite the block is a savepoint of a group transaction that other threads' blocks may share; it must
        not commit or roll back the connection itself, and it returns only after the group's commit."""
        if self.writer is not None:
            with self.writer.write() as conn:
                yield conn
            return
        with self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """No write of this process in flight or open while the block runs (SQLite); a no-op on PostgreSQL."""
        if self.writer is None:
            yield
            return
        with self.writer.exclusive():
            yield

    @contextlib.contextmanager
    def read(self, *, single_statement: bool = False) -> Iterator[Connection]:
        """A read-only connection; its statements share one transaction (one snapshot).

        `single_statement`: the block runs one statement, which is consistent by itself and needs no transaction
        around it. SQLite then sends no BEGIN, PostgreSQL runs in autocommit (no BEGIN and ROLLBACK round trips):
        the hot path's lookups cost a statement and nothing more."""
        with self.engine.connect() as conn:
            if single_statement:
                conn.execution_options(readonly=True, single_statement=True)
                if not self.is_sqlite:
                    conn.execution_options(isolation_level="AUTOCOMMIT")
            else:
                conn.execution_options(readonly=True)
            yield conn

    def dispose(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.engine.dispose()


def open_database(url: str, *, pool_size: int = 10, box: SecretBox | None = None) -> Database:
    """Create the engine; for SQLite also the parent directory (0700), the file (0600), WAL mode and durable
    commits. SQLite gives its -wal and -shm files the database file's mode."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _private_file(Path(parsed.database))
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        _tune_sqlite(engine)
        setattr(engine.dialect, DIALECT_ATTRIBUTE, box)
        return Database(engine=engine, writer=GroupCommit(engine), box=box)
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    setattr(engine.dialect, DIALECT_ATTRIBUTE, box)  # for SealedJson columns
    return Database(engine=engine, box=box)


def scrub_free_space(db: Database, *, table: str) -> None:
    """Drop what deleted or overwritten rows of `table` left on disk (after sealing a value stored in clear):
    SQLite checkpoints and truncates its WAL and rebuilds the file; PostgreSQL rewrites the table."""
    if db.is_sqlite:
        with db.exclusive():
            raw = db.engine.raw_connection()
            try:
                cursor = raw.cursor()  # the DB-API connection is in autocommit mode (see _tune_sqlite)
                for statement in ("PRAGMA wal_checkpoint(TRUNCATE)", "VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)"):
                    cursor.execute(statement)
                cursor.close()
            finally:
                raw.close()
        return
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"VACUUM FULL {table}")


def _private_file(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.name == "nt":
        return
    # Create it 0600 before SQLite does (with the umask's mode), but never open an existing file here: closing
    # any descriptor of a file drops every POSIX lock this process holds on it, including SQLite's own
    # (a CLI command run inside a serving process would then let another process checkpoint away the WAL).
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if part.stat().st_mode & 0o077:
                part.chmod(0o600)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling defers BEGIN and fights SQLAlchemy's; take it over
        # (the recipe from SQLAlchemy's SQLite dialect documentation).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process kill; FULL also survives power loss, which is
        # what "commits before it answers" promises to an agent that then deletes its copy.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("single_statement"):
            return  # the statement runs in SQLite's own autocommit (`Database.read(single_statement=True)`)
        # IMMEDIATE takes the write lock up front, so a reader never has to upgrade to a writer
        # mid-transaction (which fails with SQLITE_BUSY instead of waiting).
        conn.exec_driver_sql("BEGIN IMMEDIATE" if not options.get("readonly") else "BEGIN")
