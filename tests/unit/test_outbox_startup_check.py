"""Outbox integrity check at start: skipped after a clean stop, in the background after an unclean one."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent_app.core import outbox as outbox_module
from agent_app.core import outbox_recovery
from agent_app.core.outbox import CLEAN_MARKER_SUFFIX, Outbox
from policy_client.schema import EventDraft, EventKind, Severity
from policy_client.secrets import OutboxKeys, key_id_for


@pytest.fixture
def keys() -> OutboxKeys:
    data_key = os.urandom(32)
    return OutboxKeys(key_id=key_id_for(data_key), data_key=data_key, chain_key=os.urandom(32))


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The quick_check flag of every open_checked call the outbox makes."""
    seen: list[bool] = []
    real = outbox_recovery.open_checked

    def spy(path: Path, *, quick_check: bool) -> Any:
        seen.append(quick_check)
        return real(path, quick_check=quick_check)

    monkeypatch.setattr(outbox_module, "open_checked", spy)
    return seen


def drafts(count: int) -> list[EventDraft]:
    return [
        EventDraft(kind=EventKind.download_detected, severity=Severity.medium, data={"n": i, "pad": "d" * 200})
        for i in range(count)
    ]


def marker(path: Path) -> Path:
    return path.with_name(path.name + CLEAN_MARKER_SUFFIX)


def damage_a_leaf_page(path: Path) -> None:
    raw = path.read_bytes()
    page_size = int.from_bytes(raw[16:18], "big")
    leaves = [n for n in range(3, len(raw) // page_size + 1) if raw[(n - 1) * page_size] == 0x0D]
    with path.open("r+b") as handle:
        handle.seek((leaves[len(leaves) // 2] - 1) * page_size)
        handle.write(b"\xff")


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        pause.wait(0.01)


def test_a_clean_stop_skips_the_check_on_the_next_start(tmp_path: Path, keys: OutboxKeys, checks: list[bool]) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, keys=keys) as box:
        box.append(drafts(10))
    assert marker(path).exists()
    with Outbox(path, keys=keys) as box:
        assert not marker(path).exists()  # consumed: a crash from here on leaves no marker
        assert box.depth() == 10
    assert checks == [True, False]


def test_a_file_changed_after_a_clean_stop_is_checked_before_open_returns(
    tmp_path: Path, keys: OutboxKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "BACKGROUND_CHECK_FROM", 0)
    path = tmp_path / "outbox.db"
    with Outbox(path, keys=keys) as box:
        for _ in range(4):
            box.append(drafts(100))
    damage_a_leaf_page(path)
    with Outbox(path, keys=keys) as box:
        assert len(box.recoveries) == 1


def test_after_an_unclean_stop_a_big_file_is_checked_in_the_background(
    tmp_path: Path, keys: OutboxKeys, monkeypatch: pytest.MonkeyPatch, checks: list[bool]
) -> None:
    monkeypatch.setattr(outbox_module, "BACKGROUND_CHECK_FROM", 0)
    path = tmp_path / "outbox.db"
    with Outbox(path, keys=keys) as box:
        for _ in range(4):
            box.append(drafts(100))
    marker(path).unlink()  # as if the agent had been killed
    damage_a_leaf_page(path)
    with Outbox(path, keys=keys) as box:
        wait_for(lambda: len(box.recoveries) == 1)
        assert box.recoveries[0].detail.startswith("quick_check")
        assert box.depth() > 300  # the rest was salvaged and stays queued
    assert checks[1] is False  # open itself did not wait for the check


def test_a_healthy_file_checked_in_the_background_earns_a_clean_marker(
    tmp_path: Path, keys: OutboxKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "BACKGROUND_CHECK_FROM", 0)
    path = tmp_path / "outbox.db"
    with Outbox(path, keys=keys) as box:
        box.append(drafts(50))
    marker(path).unlink()
    box = Outbox(path, keys=keys)
    try:
        wait_for(lambda: any(t.name == "outbox-check" for t in threading.enumerate()) is False)
        assert box.recoveries == []
    finally:
        box.close()
    assert marker(path).exists()


def test_small_files_are_still_checked_before_open_returns(
    tmp_path: Path, keys: OutboxKeys, checks: list[bool]
) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, keys=keys) as box:
        box.append(drafts(5))
    marker(path).unlink()
    Outbox(path, keys=keys).close()
    assert checks == [True, True]


def test_a_second_instance_leaves_the_marker_to_the_last_close(tmp_path: Path, keys: OutboxKeys) -> None:
    path = tmp_path / "outbox.db"
    first = Outbox(path, keys=keys)
    second = Outbox(path, keys=keys, check=False)
    first.append(drafts(3))
    first.close()
    assert not marker(path).exists()
    second.close()
    assert marker(path).exists()
