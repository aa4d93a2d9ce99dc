"""`deskwarden service` under the Windows Service Control Manager: the SCM protocol (dispatcher, ServiceMain,
control handler, status reports) around the same service body that runs in the foreground elsewhere.

Windows starts a service process and expects it to call StartServiceCtrlDispatcherW within 30 s; otherwise it
kills the process (error 1053). The dispatcher blocks the main thread and runs ServiceMain on a thread of its own;
that thread runs the body until the SCM's stop or shutdown control sets the stop event. Run from a console, the
dispatcher fails with ERROR_FAILED_SERVICE_CONTROLLER_CONNECT and the caller runs the body in the foreground.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

SERVICE_NAME = "DeskWarden"
ERROR_FAILED_SERVICE_CONTROLLER_CONNECT = 1063
SERVICE_WIN32_OWN_PROCESS = 0x10
SERVICE_STOPPED, SERVICE_START_PENDING, SERVICE_STOP_PENDING, SERVICE_RUNNING = 1, 2, 3, 4
SERVICE_ACCEPT_STOP, SERVICE_ACCEPT_SHUTDOWN = 0x1, 0x4
SERVICE_CONTROL_STOP, SERVICE_CONTROL_INTERROGATE, SERVICE_CONTROL_SHUTDOWN = 0x1, 0x4, 0x5
NO_ERROR = 0
ERROR_CALL_NOT_IMPLEMENTED = 120
ERROR_SERVICE_SPECIFIC_ERROR = 1066

Body = Callable[[threading.Event], int]
"""The service's work: runs until the event is set, returns an exit code."""


class ScmApi(Protocol):
    """The three advapi32 calls the protocol needs (a fake in tests)."""

    def start_dispatcher(self, name: str, service_main: Callable[[], None]) -> int:
        """Blocks until every service of the process stopped; 0 on success, else the Win32 error code."""
        ...

    def register_handler(self, name: str, handler: Callable[[int], int]) -> object:
        """RegisterServiceCtrlHandlerExW; returns the status handle."""
        ...

    def set_status(self, handle: object, state: int, *, accepted: int, exit_code: int, wait_hint_ms: int) -> None: ...


class ServiceControl:
    """The state a running service reports, and the stop event its body watches."""

    def __init__(self, api: ScmApi) -> None:
        self._api = api
        self.handle: object = None
        """The status handle, set once the control handler is registered."""
        self.stop = threading.Event()
        self.state = SERVICE_START_PENDING

    def report(self, state: int, *, exit_code: int = 0, wait_hint_ms: int = 0) -> None:
        self.state = state
        accepted = SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN if state == SERVICE_RUNNING else 0
        self._api.set_status(self.handle, state, accepted=accepted, exit_code=exit_code, wait_hint_ms=wait_hint_ms)

    def on_control(self, control: int) -> int:
        """The SCM's handler thread: stop and shutdown set the event; the body then winds down."""
        if control in (SERVICE_CONTROL_STOP, SERVICE_CONTROL_SHUTDOWN):
            self.report(SERVICE_STOP_PENDING, wait_hint_ms=30_000)
            self.stop.set()
            return NO_ERROR
        if control == SERVICE_CONTROL_INTERROGATE:
            return NO_ERROR
        return ERROR_CALL_NOT_IMPLEMENTED


def run_under_scm(body: Body, *, api: ScmApi | None = None, name: str = SERVICE_NAME) -> int | None:
    """Run `body` as the SCM's service `name`; None when this process was not started by the SCM (a console)."""
    scm = api or Win32Scm()
    result: dict[str, int] = {}

    def service_main() -> None:
        control = ServiceControl(scm)
        control.handle = scm.register_handler(name, control.on_control)
        control.report(SERVICE_RUNNING)
        code = 1
        try:
            code = body(control.stop)
        except Exception:
            log.exception("the service body failed")
        finally:
            result["code"] = code
            # A non-zero exit makes the SCM apply the restart actions `sc failure` configured.
            control.report(SERVICE_STOPPED, exit_code=ERROR_SERVICE_SPECIFIC_ERROR if code else NO_ERROR)

    error = scm.start_dispatcher(name, service_main)
    if error == ERROR_FAILED_SERVICE_CONTROLLER_CONNECT:
        return None
    if error:
        raise OSError(error, f"StartServiceCtrlDispatcherW failed with Win32 error {error}")
    return result.get("code", 1)


def _winfunctype(*types: Any) -> Any:
    """ctypes.WINFUNCTYPE (stdcall callbacks), which exists on Windows only."""
    return getattr(ctypes, "WINFUNCTYPE")(*types)  # noqa: B009 - absent off Windows


def _last_error() -> int:
    return int(getattr(ctypes, "GetLastError")())  # noqa: B009 - absent off Windows


class _ServiceStatus(ctypes.Structure):
    _fields_ = [
        ("dwServiceType", ctypes.c_uint32),
        ("dwCurrentState", ctypes.c_uint32),
        ("dwControlsAccepted", ctypes.c_uint32),
        ("dwWin32ExitCode", ctypes.c_uint32),
        ("dwServiceSpecificExitCode", ctypes.c_uint32),
        ("dwCheckPoint", ctypes.c_uint32),
        ("dwWaitHint", ctypes.c_uint32),
    ]


class Win32Scm:
    """advapi32 through ctypes (pywin32 is not a dependency). Loaded on first use; Windows only."""

    def __init__(self) -> None:
        self._keep: list[Any] = []  # callbacks must outlive the dispatcher, or Windows calls freed memory
        self._checkpoint = 0

    def _advapi(self) -> Any:
        windll = getattr(ctypes, "windll", None)
        if windll is None:
            raise OSError("the Service Control Manager exists on Windows only")
        return windll.advapi32

    def start_dispatcher(self, name: str, service_main: Callable[[], None]) -> int:
        advapi = self._advapi()
        main_type = _winfunctype(None, ctypes.c_uint32, ctypes.c_void_p)
        main = main_type(lambda argc, argv: service_main())
        self._keep.append(main)

        class Entry(ctypes.Structure):
            _fields_ = [("name", ctypes.c_wchar_p), ("proc", main_type)]

        table = (Entry * 2)(Entry(name, main), Entry(None, main_type()))
        if advapi.StartServiceCtrlDispatcherW(table):
            return 0
        return _last_error()

    def register_handler(self, name: str, handler: Callable[[int], int]) -> object:
        advapi = self._advapi()
        handler_type = _winfunctype(ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p)
        callback = handler_type(lambda control, event_type, data, context: handler(control))
        self._keep.append(callback)
        advapi.RegisterServiceCtrlHandlerExW.restype = ctypes.c_void_p
        handle = advapi.RegisterServiceCtrlHandlerExW(name, callback, None)
        if not handle:
            raise OSError(_last_error(), "RegisterServiceCtrlHandlerExW failed")
        return handle

    def set_status(self, handle: object, state: int, *, accepted: int, exit_code: int, wait_hint_ms: int) -> None:
        self._checkpoint = 0 if state in (SERVICE_RUNNING, SERVICE_STOPPED) else self._checkpoint + 1
        status = _ServiceStatus(
            SERVICE_WIN32_OWN_PROCESS, state, accepted, exit_code, 0, self._checkpoint, wait_hint_ms
        )
        if not self._advapi().SetServiceStatus(ctypes.c_void_p(handle), ctypes.byref(status)):  # type: ignore[arg-type]
            log.warning("SetServiceStatus(%d) failed with %d", state, _last_error())
