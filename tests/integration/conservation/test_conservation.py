"""kill -9 conservation end to end: real agents and a real endpoint behind a fault proxy, killed at random points.

DESKWARDEN_LONG=1 runs the long version (hundreds of kills, three agents, bigger bursts).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tests.integration.conservation.harness import LONG, Harness, Plan

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800 if LONG else 300)]

log = logging.getLogger(__name__)


def test_every_acknowledged_event_is_stored_exactly_once_through_kills_and_network_faults(
    tmp_path: Path, db_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    seed = int(os.environ.get("DESKWARDEN_SEED", "0")) or int.from_bytes(os.urandom(4), "big")
    plan = Plan.for_ci(seed)
    with Harness(tmp_path, db_url=db_url, plan=plan) as harness:
        report = harness.storm()
        harness.calm_and_drain()
        problems = harness.judge()
    summary = (
        f"seed={seed} kills={report.kills} (agent {report.agent_kills}, endpoint {report.endpoint_kills}) "
        f"raised={report.raised} acked={report.acked} stored={report.stored} proxy={report.faults}"
    )
    log.warning("conservation run: %s", summary)
    assert report.kills >= plan.kills
    assert report.acked > 0, summary
    assert sum(n for fault, n in report.faults.items() if fault != "pass") > 0, summary
    assert not problems, f"{summary}\n" + "\n".join(problems)
