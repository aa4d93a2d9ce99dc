"""Corrupted outbox files end to end: a real agent process killed with SIGKILL, its files damaged, restarted twice.

The agent must come back (no crash loop), deliver every event that survived exactly once, and report what it could
not recover as agent.loss with counts.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from agent_app.core import paths
from agent_app.core.enrol import enrol_here
from agent_app.core.outbox import read_depth
from tests.support.agent_process import TEST_KIND, AgentProcess, payload
from tests.support.endpoint import EndpointProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FAST_RETRY = {"backoff_base": 0.02, "backoff_cap": 0.3}
EVENTS = 300


def _truncate_wal(outbox: Path) -> None:
    wal = outbox.with_name(outbox.name + "-wal")
    assert wal.exists(), "the kill should leave a WAL behind"
    assert wal.stat().st_size > 0
    with wal.open("r+b") as fh:
        fh.truncate(wal.stat().st_size // 2)


def _delete_shm(outbox: Path) -> None:
    shm = outbox.with_name(outbox.name + "-shm")
    assert shm.exists()
    shm.unlink()


def _flip_page_bytes(outbox: Path) -> None:
    """Fold the WAL into the main file, then flip bytes in the middle of a data page."""
    import sqlite3

    conn = sqlite3.connect(outbox)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = outbox.stat().st_size
    assert size > 8 * 4096
    with outbox.open("r+b") as fh:
        for offset in (size // 2, size // 2 + 4096 + 100):
            fh.seek(offset)
            fh.write(os.urandom(64))


@pytest.mark.parametrize(
    ("damage", "may_lose"),
    [
        (_truncate_wal, True),
        (_delete_shm, False),
        (_flip_page_bytes, True),
    ],
    ids=["truncated-wal", "deleted-shm", "flipped-page-bytes"],
)
def test_agent_recovers_what_is_valid_and_reports_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: Callable[[Path], None], may_lose: bool
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    endpoint = EndpointProcess(tmp_path / "server")
    endpoint.start()
    home = tmp_path / "agent"
    home.mkdir()
    agent = AgentProcess(home, uploader_options=FAST_RETRY)
    try:
        enrol_here(endpoint.url, endpoint.enroll_token(), home=home)
        api = endpoint.api_token()
        endpoint.kill()  # everything stays queued in the outbox
        agent.start()
        for start in range(1, EVENTS + 1, 50):
            agent.raise_events(start, 50)
        agent.kill()
        damage(paths.outbox_path(home))

        agent.start()  # first start after the damage
        agent.stop()
        agent.start()  # and again: recovery must not leave a file that fails the next start
        endpoint.start()
        assert agent.device_id is not None
        wait_for(lambda: read_depth(paths.outbox_path(home)) == 0, timeout=60, what="the outbox to drain")
        agent.raise_events(EVENTS + 1, 1)
        wait_for(
            lambda: any(e["data"].get("n") == EVENTS + 1 for e in endpoint.events(api, kind=TEST_KIND)),
            timeout=60,
            what="a fresh event after recovery",
        )
        stored = endpoint.events(api, device_id=agent.device_id)
    finally:
        agent.stop()
        endpoint.stop()

    seqs = Counter(e["seq"] for e in stored)
    assert all(n == 1 for n in seqs.values()), "an event was stored twice"
    tests = [e for e in stored if e["kind"] == TEST_KIND]
    numbers = Counter(e["data"]["n"] for e in tests)
    assert all(n == 1 for n in numbers.values()), "an event was stored twice"
    assert all(e["data"] == payload(e["data"]["n"]) for e in tests), "a recovered payload differs"
    missing = agent.acked - set(numbers)
    losses = [e for e in stored if e["kind"] == "agent.loss"]
    if missing:
        assert may_lose, f"{len(missing)} events lost although this damage loses nothing"
        assert losses, f"{len(missing)} acknowledged events vanished without an agent.loss record"
        assert any(isinstance(e["data"].get("count"), int) and e["data"]["count"] > 0 for e in losses), losses
