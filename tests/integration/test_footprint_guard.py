"""CI guard on the agent's idle memory: `deskwarden agent --headless` with every collector that can run here must stay
within the ARCHITECTURE.md section 9 budget (75 MB RSS) plus 10 %. bench/footprint.py gives the full picture.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "footprint", Path(__file__).resolve().parents[2] / "bench" / "footprint.py"
)
assert _SPEC is not None
assert _SPEC.loader is not None
footprint = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("footprint", footprint)  # dataclasses look their module up here
_SPEC.loader.exec_module(footprint)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUDGET_BYTES = 75 * 2**20
TOLERANCE = 1.10
IDLE_SECONDS = 20.0


def test_idle_agent_rss_stays_within_the_budget(tmp_path: Path) -> None:
    proc = footprint.start_agent(tmp_path, headless=True)
    try:
        collectors = footprint.wait_started(tmp_path, proc)
        assert collectors, "the agent should report its collectors"
        agent = psutil.Process(proc.pid)
        pause = threading.Event()
        peak = 0
        deadline = time.monotonic() + IDLE_SECONDS
        while time.monotonic() < deadline:
            peak = max(peak, agent.memory_info().rss)
            pause.wait(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    limit = BUDGET_BYTES * TOLERANCE
    assert peak <= limit, f"idle RSS {peak / 2**20:.1f} MB exceeds {limit / 2**20:.1f} MB (collectors: {collectors})"
