"""CI guard on the idle footprint of both agent processes: `deskwarden service` and `deskwarden agent --headless`
(no display), started as bench/footprint.py starts them. Limits are a measurement on the reference VM plus 10 %;
the service must never load Qt. bench/footprint.py gives the full picture (tray under Xvfb, burst, budgets).
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

MB = 2**20
TOLERANCE = 1.10
# Peak idle RSS measured headless on the reference VM (2 vCPU x86_64, Debian 12, Python 3.11.7; see
# docs/bench/footprint.md): service 57.8 MB, helper 42.5 MB since the headless helper stopped loading Qt and both
# processes hand start-up memory back (was 57.9 and 61.1). The section 9 service budget (50 MB) is not met yet; the
# headless helper meets its 65 MB. These limits catch a regression from today's figures.
RSS_LIMITS = {"service": 57.8 * MB * TOLERANCE, "helper": 42.5 * MB * TOLERANCE}
NEVER_IN_HELPER = {"requests", "urllib3", "charset_normalizer", "cryptography", "keyring", "pypdf"}
CPU_LIMIT_PERCENT = 3.0
"""Idle CPU measured 0.0-0.2 % of one core; 3 % over the window only catches a process that polls or spins."""
IDLE_SECONDS = 10.0
START_TIMEOUT = 20.0


@dataclass(frozen=True)
class IdleRun:
    windows: dict[str, Any]
    probes: dict[str, dict[str, Any]]
    service_qt_files: list[str]
    helper_qt_files: list[str]


@pytest.fixture(scope="module")
def idle_run(tmp_path_factory: pytest.TempPathFactory) -> IdleRun:
    split = footprint.start_split(
        tmp_path_factory.mktemp("footprint"), display=None, headless=True, timeout=START_TIMEOUT
    )
    try:
        windows = footprint.watch(split.processes(), seconds=IDLE_SECONDS, every=0.5)
        probes = {name: split.probe(name) for name in ("service", "helper")}
        qt_files = footprint.qt_mappings(split.service.pid)
        assert split.helper is not None
        helper_qt_files = footprint.qt_mappings(split.helper.pid)
    finally:
        split.stop()
    return IdleRun(windows, probes, qt_files, helper_qt_files)


@pytest.mark.parametrize("process", ["service", "helper"])
def test_idle_rss_stays_within_the_measured_limit(idle_run: IdleRun, process: str) -> None:
    peak = idle_run.windows[process].peak_rss
    limit = RSS_LIMITS[process]
    assert peak <= limit, (
        f"idle {process} RSS {peak / MB:.1f} MB exceeds {limit / MB:.1f} MB; "
        f"heavy imports: {idle_run.probes[process]['heavy']}"
    )


@pytest.mark.parametrize("process", ["service", "helper"])
def test_idle_process_does_not_spin(idle_run: IdleRun, process: str) -> None:
    cpu = idle_run.windows[process].cpu_percent
    assert cpu <= CPU_LIMIT_PERCENT, f"idle {process} used {cpu:.2f} % of a core over {IDLE_SECONDS:g} s"


def test_service_never_loads_qt(idle_run: IdleRun) -> None:
    assert idle_run.service_qt_files == [], "Qt libraries are mapped into the service"
    probe = idle_run.probes["service"]
    assert "PySide6" not in probe["heavy"]
    assert "shiboken6" not in probe["heavy"]


def test_service_runs_its_collectors_and_the_helper_its_own(idle_run: IdleRun) -> None:
    """The figures above mean something only if each process built the collectors of its role."""
    service = idle_run.probes["service"]["collectors"]
    helper = idle_run.probes["helper"]["collectors"]
    assert {"usb", "downloads"} <= set(service)
    assert "clipboard" not in service
    assert not {"usb", "downloads"} & set(helper)


def test_headless_helper_loads_no_qt_and_none_of_the_services_stacks(idle_run: IdleRun) -> None:
    """Without a display there is no Qt application, so nothing may map Qt; and the helper holds no secret, so it
    has no use for HTTP, crypto or the keyring (nor for the PDF reader of the downloads scan)."""
    assert idle_run.helper_qt_files == [], "Qt libraries are mapped into the headless helper"
    heavy = set(idle_run.probes["helper"]["heavy"])
    assert not heavy & {"PySide6", "shiboken6"}
    assert not heavy & NEVER_IN_HELPER, sorted(heavy & NEVER_IN_HELPER)
