"""Opening the store again inside a process that serves it (a CLI command run in-process, or a test) keeps
SQLite's POSIX locks: another process closing its connection must not take the WAL away from under the server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from central.store.engine import open_database

COUNT = (
    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
    "print(c.execute('select count(*) from t').fetchone()[0]); c.close()"
)


def _count_elsewhere(path: Path) -> int:
    done = subprocess.run([sys.executable, "-c", COUNT, str(path)], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_reopening_the_database_in_process_keeps_other_processes_from_dropping_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "central.db"
    url = f"sqlite:///{path}"
    serving = open_database(url)
    try:
        with serving.write() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        # The pool keeps that connection open, as a serving process does.

        open_database(url).dispose()  # what an in-process CLI command does first
        assert _count_elsewhere(path) == 1  # another process opens and closes the file

        with serving.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (2)"))
        assert _count_elsewhere(path) == 2, "a commit of the serving process was lost"
    finally:
        serving.dispose()
