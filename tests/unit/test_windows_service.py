"""The Windows SCM protocol around the service body, through a fake advapi32: RUNNING is reported before the body
works, a stop control sets the body's stop event and reports STOP_PENDING, the end reports STOPPED with an exit
code the SCM's restart actions act on, and a console start (no SCM) says so instead of failing."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from agent_app.core.windows_service import (
    ERROR_CALL_NOT_IMPLEMENTED,
    ERROR_FAILED_SERVICE_CONTROLLER_CONNECT,
    ERROR_SERVICE_SPECIFIC_ERROR,
    NO_ERROR,
    SERVICE_CONTROL_INTERROGATE,
    SERVICE_CONTROL_SHUTDOWN,
    SERVICE_CONTROL_STOP,
    SERVICE_RUNNING,
    SERVICE_STOP_PENDING,
    SERVICE_STOPPED,
    run_under_scm,
)


class FakeScm:
    """Runs ServiceMain on a thread as the real dispatcher does, and sends `controls` once the service runs."""

    def __init__(self, *, controls: tuple[int, ...] = (), dispatcher_error: int = 0) -> None:
        self.controls = controls
        self.dispatcher_error = dispatcher_error
        self.statuses: list[tuple[int, int, int]] = []
        self.answers: list[int] = []
        self.handler: Callable[[int], int] | None = None
        self.running = threading.Event()

    def start_dispatcher(self, name: str, service_main: Callable[[], None]) -> int:
        if self.dispatcher_error:
            return self.dispatcher_error
        worker = threading.Thread(target=service_main)
        worker.start()
        assert self.running.wait(5)
        assert self.handler is not None
        self.answers = [self.handler(control) for control in self.controls]
        worker.join(5)
        return 0

    def register_handler(self, name: str, handler: Callable[[int], int]) -> object:
        assert name == "DeskWarden"
        self.handler = handler
        return "handle-1"

    def set_status(self, handle: object, state: int, *, accepted: int, exit_code: int, wait_hint_ms: int) -> None:
        assert handle == "handle-1"
        self.statuses.append((state, accepted, exit_code))
        if state == SERVICE_RUNNING:
            self.running.set()


def _waits_for_stop(stop: threading.Event) -> int:
    assert stop.wait(5), "the SCM's stop never reached the service body"
    return 0


@pytest.mark.parametrize("control", [SERVICE_CONTROL_STOP, SERVICE_CONTROL_SHUTDOWN])
def test_a_stop_or_shutdown_from_the_scm_ends_the_body_and_reports_stopped(control: int) -> None:
    scm = FakeScm(controls=(SERVICE_CONTROL_INTERROGATE, 0x80, control))
    assert run_under_scm(_waits_for_stop, api=scm) == 0
    assert scm.answers == [NO_ERROR, ERROR_CALL_NOT_IMPLEMENTED, NO_ERROR]
    states = [state for state, _, _ in scm.statuses]
    assert states == [SERVICE_RUNNING, SERVICE_STOP_PENDING, SERVICE_STOPPED]
    assert scm.statuses[0][1] != 0, "a running service must accept stop and shutdown"
    assert scm.statuses[-1][2] == NO_ERROR


def test_a_failing_body_reports_an_error_exit_so_the_scm_restarts_it() -> None:
    def crash(stop: threading.Event) -> int:
        raise RuntimeError("outbox unreadable")

    scm = FakeScm()
    assert run_under_scm(crash, api=scm) == 1
    assert scm.statuses[-1] == (SERVICE_STOPPED, 0, ERROR_SERVICE_SPECIFIC_ERROR)


def test_a_console_start_is_not_an_error() -> None:
    scm = FakeScm(dispatcher_error=ERROR_FAILED_SERVICE_CONTROLLER_CONNECT)
    assert run_under_scm(_waits_for_stop, api=scm) is None
    with pytest.raises(OSError, match="1056"):
        run_under_scm(_waits_for_stop, api=FakeScm(dispatcher_error=1056))
