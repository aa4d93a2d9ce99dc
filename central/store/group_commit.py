"""Group commit for SQLite: the write transactions of concurrent request threads share one durable commit.

SQLite has one writer, and with `synchronous=FULL` every commit waits for an fsync. Committing each request on
its own made the fsync the endpoint's limit (a fleet of thousands of agents queued behind it). Here the request
threads take turns on one write connection: each `write()` block runs in a SAVEPOINT of the open group's
transaction, and once no block is running, one of the waiting callers commits the group (one fsync) for all of
them. A caller returns only after the commit that holds its writes, so "committed before it answers" still holds;
a block that raises is rolled back to its savepoint and leaves the others' writes alone; a failed commit fails
every caller of its group (nothing of it was answered yet, so agents send again).

Used by `central.store.engine.Database.write` from any thread; blocks on the connection are serialised by a lock.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

from sqlalchemy import Connection, Engine, NestedTransaction, RootTransaction

log = logging.getLogger(__name__)


class GroupCommitFailed(RuntimeError):
    """The commit of the group holding this caller's writes failed; none of them were stored."""


class GroupCommit:
    """One write connection and its open group; see the module docstring."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._mutex = threading.Lock()
        """Held by the block or the commit using the connection."""
        self._state = threading.Condition(threading.Lock())
        self._conn: Connection | None = None
        self._txn: RootTransaction | None = None
        self._group = 0
        """Number of the group blocks join now (the open transaction's), counted from 1."""
        self._done = 0
        """Highest group whose commit has finished (stored or failed)."""
        self._failed: dict[int, str] = {}
        self._leader = False

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A block of the open group's transaction; returns once the group is committed."""
        error: BaseException | None = None
        with self._mutex:
            conn = self._connection()
            if self._txn is None:
                self._txn = conn.begin()
                self._group += 1
            group = self._group
            savepoint = conn.begin_nested()
            try:
                yield conn
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the group is closed
                self._undo(savepoint)
                error = exc
            else:
                try:
                    savepoint.commit()
                except Exception:
                    self._abandon("a block's savepoint could not be released")
                    raise
        if error is not None:
            # This block's writes are gone, but the group may hold nothing else: see that it is closed.
            with contextlib.suppress(GroupCommitFailed):
                self._wait_committed(group)
            raise error
        self._wait_committed(group)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Sole use of the database file from this process (no open group), for work outside `write()`."""
        while True:
            with self._mutex:
                if self._txn is None:
                    yield
                    return
                group = self._group
            with contextlib.suppress(GroupCommitFailed):
                self._wait_committed(group)

    def close(self) -> None:
        with self._mutex:
            if self._txn is not None:
                self._txn.rollback()
                self._txn = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
            self._conn = self._engine.connect()
        return self._conn

    def _undo(self, savepoint: NestedTransaction) -> None:
        """Roll the failed block back to its savepoint; if even that fails, the whole group goes."""
        try:
            savepoint.rollback()
        except Exception:
            log.exception("rolling back to a savepoint failed; rolling back the group")
            self._abandon("a block's savepoint could not be rolled back")

    def _abandon(self, reason: str) -> None:
        """Inside the mutex: roll back the open group and fail its callers."""
        txn, self._txn = self._txn, None
        if txn is not None:
            with contextlib.suppress(Exception):
                txn.rollback()
        with self._state:
            self._failed[self._group] = reason
            self._done = self._group
            self._state.notify_all()

    def _wait_committed(self, group: int) -> None:
        lead = False
        with self._state:
            while self._done < group and self._leader:
                self._state.wait()
            if self._done < group:
                self._leader = lead = True
        if lead:
            self._lead()  # clears `_leader` whatever happened meanwhile (an abandoned group moves `_done` too)
        with self._state:
            reason = self._failed.get(group)
        if reason is not None:
            raise GroupCommitFailed(f"the group commit failed: {reason}")

    def _lead(self) -> None:
        """Commit the open group for everyone in it (waits for the block running now to finish)."""
        target, reason = 0, None
        try:
            with self._mutex:
                target = self._group
                txn, self._txn = self._txn, None
                if txn is not None:
                    try:
                        txn.commit()
                    except Exception as exc:
                        log.exception("group commit failed")
                        reason = f"{type(exc).__name__}: {exc}"[:300]
                        with contextlib.suppress(Exception):
                            txn.rollback()
        finally:
            with self._state:
                if reason is not None:
                    self._failed[target] = reason
                    for old in [g for g in self._failed if g < target - 1000]:
                        del self._failed[old]
                self._done = max(self._done, target)
                self._leader = False
                self._state.notify_all()
