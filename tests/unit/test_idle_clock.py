"""IdleClock and its per-OS backends through fakes (no input hooks, no OS calls)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collectors.idle import IdleClock
from collectors.idle.linux import PynputActivitySource
from collectors.idle.macos import ANY_INPUT_EVENT, COMBINED_SESSION_STATE, QuartzIdleSource
from collectors.idle.windows import LastInputInfoSource

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class FakeSource:
    def __init__(self, seconds: float | None = 0.0, *, fail: bool = False) -> None:
        self.seconds = seconds
        self.fail = fail
        self.started = 0
        self.stopped = 0

    def start(self) -> None:
        if self.fail:
            raise OSError("no display")
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1

    def seconds_since_input(self) -> float | None:
        return self.seconds


def test_idle_seconds_and_last_input_from_source() -> None:
    source = FakeSource(42.5)
    clock = IdleClock(source=source, monotonic=lambda: 100.0, now=lambda: NOW)
    clock.start()
    assert clock.available
    assert clock.idle_seconds() == 42.5
    assert clock.last_input() == NOW - timedelta(seconds=42.5)
    clock.start()
    assert source.started == 1
    clock.stop()
    assert source.stopped == 1
    assert not clock.available


def test_unknown_or_unavailable_falls_back_to_time_since_start() -> None:
    mono = [10.0]
    clock = IdleClock(source=FakeSource(None), monotonic=lambda: mono[0], now=lambda: NOW)
    clock.start()
    mono[0] = 25.0
    assert clock.idle_seconds() == 15.0
    broken = IdleClock(source=FakeSource(1.0, fail=True), monotonic=lambda: mono[0], now=lambda: NOW)
    broken.start()
    assert not broken.available
    assert broken.error == "no display"
    mono[0] = 30.0
    assert broken.idle_seconds() == 5.0


def test_wall_clock_jump_does_not_change_idle_time() -> None:
    wall = [NOW]
    clock = IdleClock(source=FakeSource(60.0), monotonic=lambda: 0.0, now=lambda: wall[0])
    clock.start()
    assert clock.idle_seconds() == 60.0
    wall[0] = NOW - timedelta(hours=3)  # NTP step or manual change
    assert clock.idle_seconds() == 60.0
    assert clock.last_input() == wall[0] - timedelta(seconds=60)


def test_pynput_source_keeps_only_a_timestamp() -> None:
    mono = [5.0]
    source = PynputActivitySource(monotonic=lambda: mono[0])
    assert source.seconds_since_input() is None
    source.touch("any", "callback", "args")
    mono[0] = 9.0
    assert source.seconds_since_input() == 4.0
    assert set(vars(source)) <= {"_monotonic", "_last", "_listeners"}


@pytest.mark.parametrize(
    ("ticks", "expected"),
    [((10_000, 7_500), 2.5), ((1_000, 0xFFFFFFFF - 999), 2.0)],  # second case: GetTickCount wrapped
)
def test_windows_last_input_info(ticks: tuple[int, int], expected: float) -> None:
    source = LastInputInfoSource(ticks=lambda: ticks)
    source.start()
    assert source.seconds_since_input() == expected


def test_windows_source_unavailable_elsewhere() -> None:
    def failing() -> tuple[int, int]:
        raise OSError("GetLastInputInfo exists on Windows only")

    clock = IdleClock(source=LastInputInfoSource(ticks=failing))
    clock.start()
    assert not clock.available


def test_quartz_source_calls_the_combined_session_any_input_query() -> None:
    calls: list[tuple[int, int]] = []

    def seconds(state: int, event_type: int) -> float:
        calls.append((state, event_type))
        return 12.0

    source = QuartzIdleSource(loader=lambda: seconds)
    assert source.seconds_since_input() is None
    source.start()
    assert source.seconds_since_input() == 12.0
    assert calls == [(COMBINED_SESSION_STATE, ANY_INPUT_EVENT)]
    source.stop()
    assert source.seconds_since_input() is None
