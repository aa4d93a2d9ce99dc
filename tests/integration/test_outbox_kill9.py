"""kill -9 conservation: every seq the outbox acknowledged survives SIGKILL, once, with the chain intact."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent_app.core.outbox import Outbox
from policy_client.schema import GENESIS_MAC, verify_link
from policy_client.schema import Event as WireEvent
from policy_client.secrets import OutboxKeys, key_id_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL"),
]

CHILD = Path(__file__).with_name("outbox_kill9_child.py")
KILLS = 20


def test_acknowledged_events_survive_sigkill(tmp_path: Path) -> None:
    data_key, chain_key = os.urandom(32), os.urandom(32)
    keys = OutboxKeys(key_id=key_id_for(data_key), data_key=data_key, chain_key=chain_key)
    env = {**os.environ, "DW_TEST_KEYS": f"{data_key.hex()},{chain_key.hex()}", "PYTHONUNBUFFERED": "1"}
    path = tmp_path / "outbox.db"
    rng = random.Random()
    acknowledged: list[int] = []
    for round_no in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(path), str(round_no)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        assert proc.stdout is not None
        try:
            assert proc.stdout.readline() == "ready\n"
            wanted = rng.randint(1, 400)
            for _ in range(wanted):
                line = proc.stdout.readline()
                assert line.endswith("\n"), f"child died early: {proc.poll()}"
                acknowledged.append(int(line))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL

    assert len(acknowledged) == len(set(acknowledged))
    with Outbox(path, keys=keys) as outbox:
        assert outbox.recoveries == []
        events = list(reversed(outbox.history(limit=10_000_000)))
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), "seqs are not gap-free"
    assert set(acknowledged) <= set(seqs), "an acknowledged event was lost"
    prev = GENESIS_MAC
    for body in events:
        clean = {k: v for k, v in body.items() if k != "sent"}
        event = WireEvent.model_validate({**clean, "device_id": "dev"})
        assert verify_link(keys.chain_key, prev, event), f"chain broken at {event.seq}"
        prev = event.mac
