"""SQLite group commit (central/store/group_commit.py): concurrent `Database.write` blocks share commits, each
returns only once its writes are committed, and a failing block loses nothing of the others'."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text

from central.store.engine import Database, open_database


def _db(tmp_path: Path) -> Database:
    db = open_database(f"sqlite:///{tmp_path / 'group.db'}")
    with db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    return db


def _other_process_view(tmp_path: Path) -> set[str]:
    """What a separate connection (not the engine's pool) sees: only committed rows."""
    engine = create_engine(f"sqlite:///{tmp_path / 'group.db'}")
    try:
        with engine.connect() as conn:
            return {str(row[0]) for row in conn.execute(text("SELECT k FROM t"))}
    finally:
        engine.dispose()


def test_concurrent_writers_share_commits_and_each_returns_committed(tmp_path: Path) -> None:
    db = _db(tmp_path)
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda conn: commits.append(1))
    seen_after_return: list[bool] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for i in range(40):
            key = f"{n}-{i}"
            with db.write() as conn:
                conn.execute(text("INSERT INTO t (k, v) VALUES (:k, :v)"), {"k": key, "v": i})
            visible = key in _other_process_view(tmp_path) if i % 10 == 0 else True
            with lock:
                seen_after_return.append(visible)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(_other_process_view(tmp_path)) == 320
        assert all(seen_after_return)
        assert len(commits) < 320, "no two blocks ever shared a commit"
    finally:
        db.dispose()


def test_a_failing_block_rolls_back_alone(tmp_path: Path) -> None:
    db = _db(tmp_path)
    inside = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def failing() -> None:
        try:
            with db.write() as conn:
                conn.execute(text("INSERT INTO t (k, v) VALUES ('bad', 1)"))
                inside.set()
                release.wait(10)
                raise ValueError("refused")
        except ValueError as exc:
            errors.append(exc)

    def good() -> None:
        with db.write() as conn:
            conn.execute(text("INSERT INTO t (k, v) VALUES ('good', 2)"))

    first = threading.Thread(target=failing)
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=good)
    second.start()  # queues behind the failing block, joins the same group or the next
    release.set()
    first.join(10)
    second.join(10)
    try:
        assert [str(e) for e in errors] == ["refused"]
        assert _other_process_view(tmp_path) == {"good"}
    finally:
        db.dispose()


def test_an_error_inside_a_block_keeps_the_blocks_before_it(tmp_path: Path) -> None:
    db = _db(tmp_path)
    try:
        with db.write() as conn:
            conn.execute(text("INSERT INTO t (k, v) VALUES ('a', 1)"))

        def clash() -> None:
            with db.write() as conn:
                conn.execute(text("INSERT INTO t (k, v) VALUES ('b', 1)"))
                conn.execute(text("INSERT INTO t (k, v) VALUES ('a', 2)"))

        with pytest.raises(Exception, match="UNIQUE"):
            clash()
        with db.write() as conn:
            conn.execute(text("INSERT INTO t (k, v) VALUES ('c', 3)"))
        assert _other_process_view(tmp_path) == {"a", "c"}
    finally:
        db.dispose()


def test_exclusive_runs_with_no_group_open(tmp_path: Path) -> None:
    db = _db(tmp_path)
    try:
        with db.write() as conn:
            conn.execute(text("INSERT INTO t (k, v) VALUES ('a', 1)"))
        with db.exclusive():
            raw: Any = db.engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute("BEGIN IMMEDIATE")  # would wait out the busy timeout if a group held the lock
                cursor.execute("INSERT INTO t (k, v) VALUES ('raw', 9)")
                cursor.execute("COMMIT")
            finally:
                raw.close()
        assert _other_process_view(tmp_path) == {"a", "raw"}
    finally:
        db.dispose()
