"""Login throttling keys on (user name, client address) with a doubling delay, and on an address over every
user name with a higher threshold; one address's failures never lock the user out elsewhere."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from central.auth import throttle
from central.auth.passwords import HashGate, HashingBusy
from central.runtime import Runtime
from tests.unit.central.conftest import FakeClock

ATTACKER = "203.0.113.9"
OFFICE = "198.51.100.7"


def _fail(runtime: Runtime, clock: FakeClock, name: str, client: str, times: int) -> None:
    for _ in range(times):
        throttle.record_failure(runtime.db, name, client, now=clock())


def test_failures_from_one_address_never_lock_the_user_out_at_another(runtime: Runtime, clock: FakeClock) -> None:
    _fail(runtime, clock, "ada", ATTACKER, 50)

    assert throttle.locked_until(runtime.db, "ada", ATTACKER, now=clock()) is not None
    assert throttle.locked_until(runtime.db, "ada", OFFICE, now=clock()) is None


def test_the_delay_doubles_after_three_free_tries_and_is_capped(runtime: Runtime, clock: FakeClock) -> None:
    waits = []
    for _ in range(16):
        throttle.record_failure(runtime.db, "ada", OFFICE, now=clock())
        until = throttle.locked_until(runtime.db, "ada", OFFICE, now=clock())
        waits.append(None if until is None else (until - clock()).total_seconds())
        if until is not None:
            clock.advance(until - clock())  # the next try comes exactly when allowed

    assert waits[:3] == [None, None, None]
    assert waits[3:8] == [1, 2, 4, 8, 16]
    assert max(w for w in waits if w is not None) <= throttle.MAX_DELAY.total_seconds()


def test_a_right_password_clears_that_pair_only(runtime: Runtime, clock: FakeClock) -> None:
    _fail(runtime, clock, "ada", OFFICE, 4)
    _fail(runtime, clock, "ada", ATTACKER, 4)

    throttle.record_success(runtime.db, "ada", OFFICE)

    assert throttle.locked_until(runtime.db, "ada", OFFICE, now=clock()) is None
    assert throttle.locked_until(runtime.db, "ada", ATTACKER, now=clock()) is not None


def test_spraying_many_names_from_one_address_is_slowed(runtime: Runtime, clock: FakeClock) -> None:
    for i in range(throttle.ADDRESS.free + 1):
        throttle.record_failure(runtime.db, f"user{i}", ATTACKER, now=clock())

    assert throttle.locked_until(runtime.db, "someone-else", ATTACKER, now=clock()) is not None
    assert throttle.locked_until(runtime.db, "someone-else", OFFICE, now=clock()) is None


def test_failures_are_forgotten_after_the_window(runtime: Runtime, clock: FakeClock) -> None:
    _fail(runtime, clock, "ada", OFFICE, 3)
    clock.advance(throttle.WINDOW + timedelta(seconds=1))
    _fail(runtime, clock, "ada", OFFICE, 3)

    assert throttle.locked_until(runtime.db, "ada", OFFICE, now=clock()) is None


def test_the_hash_gate_admits_limit_plus_queue_and_refuses_the_rest() -> None:
    gate = HashGate(2, queue=1, wait_s=5)
    inside = threading.Barrier(3)
    release = threading.Event()
    outcomes: list[str] = []

    def hash_once() -> None:
        try:
            with gate.slot():
                inside.wait(5)
                release.wait(5)
            outcomes.append("hashed")
        except HashingBusy:
            outcomes.append("busy")

    holders = [threading.Thread(target=hash_once) for _ in range(2)]
    for t in holders:
        t.start()
    inside.wait(5)  # both slots taken
    waiter = threading.Thread(target=lambda: outcomes.append(_queued(gate)))
    waiter.start()
    _wait_until_admitted(gate, 3)
    with pytest.raises(HashingBusy):  # two hashing, one admitted waiting: the fourth is refused at once
        _enter(gate)
    release.set()
    for t in [*holders, waiter]:
        t.join(5)
    assert sorted(outcomes) == ["hashed", "hashed", "queued-then-hashed"]


def _enter(gate: HashGate) -> None:
    with gate.slot():
        pass


def _queued(gate: HashGate) -> str:
    with gate.slot():
        return "queued-then-hashed"


def _wait_until_admitted(gate: HashGate, count: int) -> None:
    pause = threading.Event()
    for _ in range(500):
        if gate._admitted >= count:
            return
        pause.wait(0.01)
    raise AssertionError("the waiter was never admitted")
