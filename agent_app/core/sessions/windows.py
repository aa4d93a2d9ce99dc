"""Windows desk sessions through Remote Desktop Services (WTS): the console and RDP sessions with a user logged on,
the session a helper process runs in, and starting a helper as that session's user on its interactive desktop.

Called on the service's main thread and on IPC connection threads. The Win32 calls sit behind `WtsApi` and
`UserProcessStarter` (`Win32Wts` over wtsapi32/kernel32/userenv/advapi32 through ctypes), so the logic is tested on
any OS with a fake.
"""

from __future__ import annotations

import ctypes
import logging
import subprocess
from collections.abc import Sequence
from ctypes import wintypes
from dataclasses import dataclass
from typing import Any, Protocol

from agent_app.core.sessions import DeskSession
from agent_app.core.win32api import Win32Functions, last_error

log = logging.getLogger(__name__)

# WTS_CONNECTSTATE_CLASS (wtsapi32.h)
WTS_ACTIVE = 0
WTS_CONNECTED = 1
WTS_CONNECT_QUERY = 2
WTS_SHADOW = 3
WTS_DISCONNECTED = 4
WTS_IDLE = 5
WTS_LISTEN = 6
WTS_RESET = 7
WTS_DOWN = 8
WTS_INIT = 9
LIVE_STATES = frozenset({WTS_ACTIVE, WTS_CONNECTED})
"""A session someone is at (or connecting to). A disconnected RDP session or a user switched away from keeps its
processes, but nobody is at it: no helper is expected there and one that stops is not tampering."""
SERVICES_SESSION = 0
"""Session 0 holds services and never a desktop user (session 0 isolation, Vista and later)."""
INTERACTIVE_DESKTOP = "winsta0\\default"

# WTS_INFO_CLASS
WTS_USER_NAME = 5
WTS_WINSTATION_NAME = 6
WTS_DOMAIN_NAME = 7
WTS_CONNECT_STATE = 8

CREATE_UNICODE_ENVIRONMENT = 0x00000400
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000
STARTF_USESHOWWINDOW = 0x1
SW_SHOWNORMAL = 1


@dataclass(frozen=True, slots=True)
class WtsSession:
    session_id: int
    station: str
    """WinStation name: "Console", "RDP-Tcp#3", "Services"."""
    state: int
    """A WTS_CONNECTSTATE_CLASS value."""


class WtsApi(Protocol):
    """The WTS calls the session source needs; `Win32Wts` is the real one."""

    def sessions(self) -> list[WtsSession]:
        """WTSEnumerateSessionsW on this server."""
        ...

    def account(self, session_id: int) -> tuple[str, str] | None:
        """(domain, user) from WTSQuerySessionInformationW(WTSDomainName, WTSUserName); None when nobody is logged on
        or the session is gone."""
        ...

    def session_of_process(self, pid: int) -> int | None:
        """ProcessIdToSessionId; None when the process is gone."""
        ...


class UserProcessStarter(Protocol):
    def start_in_session(self, session_id: int, command_line: str) -> int:
        """WTSQueryUserToken + CreateEnvironmentBlock + CreateProcessAsUserW on winsta0\\default; the new pid.
        Raises OSError."""
        ...


def qualified(domain: str, user: str) -> str:
    """DOMAIN\\user, the spelling the pipe transport's peers use (LookupAccountSid), so both sides compare equal."""
    return f"{domain}\\{user}" if domain else user


class WtsSessions:
    """`SessionSource` over WTS. The session id is the WTS session id as a string; `user` is DOMAIN\\user."""

    def __init__(self, *, api: WtsApi | None = None) -> None:
        self._api: WtsApi = api if api is not None else Win32Wts()

    def active(self) -> list[DeskSession] | None:
        try:
            listed = self._api.sessions()
        except OSError:
            log.warning("WTSEnumerateSessions failed; not expecting helpers this round", exc_info=True)
            return None
        sessions: list[DeskSession] = []
        for entry in listed:
            if entry.session_id == SERVICES_SESSION or entry.state not in LIVE_STATES:
                continue
            session = self._session(entry.session_id, entry.station)
            if session is not None:
                sessions.append(session)
        return sessions

    def session_of(self, pid: int) -> DeskSession | None:
        try:
            session_id = self._api.session_of_process(pid)
        except OSError:
            return None
        if session_id is None or session_id == SERVICES_SESSION:
            return None
        station = next((s.station for s in self._safe_sessions() if s.session_id == session_id), "")
        return self._session(session_id, station)

    def alive(self, session: DeskSession) -> bool:
        """The session still exists, somebody is at it, and it is still that user's (WTS reuses session ids)."""
        try:
            session_id = int(session.session_id)
        except ValueError:
            return False
        entry = next((s for s in self._safe_sessions() if s.session_id == session_id), None)
        if entry is None or entry.state not in LIVE_STATES:
            return False
        current = self._session(session_id, entry.station)
        return current is not None and current.user.casefold() == session.user.casefold()

    def _session(self, session_id: int, station: str) -> DeskSession | None:
        try:
            account = self._api.account(session_id)
        except OSError:
            return None
        if account is None or not account[1]:
            return None  # a login screen or a session being torn down
        domain, user = account
        env = {"SESSIONNAME": station} if station else {}
        return DeskSession(user=qualified(domain, user), uid=None, session_id=str(session_id), display=station, env=env)

    def _safe_sessions(self) -> list[WtsSession]:
        try:
            return self._api.sessions()
        except OSError:
            log.warning("WTSEnumerateSessions failed", exc_info=True)
            return []


class WtsLauncher:
    """Starts the helper as the session's user on that session's interactive desktop. Only LocalSystem holds
    SeTcbPrivilege, which WTSQueryUserToken needs: in an unprotected demo this fails and is logged."""

    def __init__(self, *, starter: UserProcessStarter | None = None) -> None:
        self._starter: UserProcessStarter = starter if starter is not None else Win32Wts()

    def launch(self, session: DeskSession, argv: Sequence[str]) -> bool:
        try:
            session_id = int(session.session_id)
        except ValueError:
            log.warning("cannot start a helper in %r: not a WTS session id", session.session_id)
            return False
        if session_id == SERVICES_SESSION or not argv:
            return False
        command_line = subprocess.list2cmdline(list(argv))
        try:
            pid = self._starter.start_in_session(session_id, command_line)
        except OSError as exc:
            log.warning("could not start a helper for %s in session %d: %s", session.user, session_id, exc)
            return False
        log.info("started a helper for %s in session %d (pid %d)", session.user, session_id, pid)
        return True


# --- the real Win32 calls ------------------------------------------------------------------------------------


class _WtsSessionInfo(ctypes.Structure):
    _fields_ = (
        ("SessionId", wintypes.DWORD),
        ("pWinStationName", ctypes.c_void_p),
        ("State", ctypes.c_int),
    )


class _StartupInfo(ctypes.Structure):
    _fields_ = (
        ("cb", wintypes.DWORD),
        ("lpReserved", wintypes.LPWSTR),
        ("lpDesktop", wintypes.LPWSTR),
        ("lpTitle", wintypes.LPWSTR),
        ("dwX", wintypes.DWORD),
        ("dwY", wintypes.DWORD),
        ("dwXSize", wintypes.DWORD),
        ("dwYSize", wintypes.DWORD),
        ("dwXCountChars", wintypes.DWORD),
        ("dwYCountChars", wintypes.DWORD),
        ("dwFillAttribute", wintypes.DWORD),
        ("dwFlags", wintypes.DWORD),
        ("wShowWindow", wintypes.WORD),
        ("cbReserved2", wintypes.WORD),
        ("lpReserved2", ctypes.c_void_p),
        ("hStdInput", wintypes.HANDLE),
        ("hStdOutput", wintypes.HANDLE),
        ("hStdError", wintypes.HANDLE),
    )


class _ProcessInformation(ctypes.Structure):
    _fields_ = (
        ("hProcess", wintypes.HANDLE),
        ("hThread", wintypes.HANDLE),
        ("dwProcessId", wintypes.DWORD),
        ("dwThreadId", wintypes.DWORD),
    )


_H = wintypes.HANDLE
_D = wintypes.DWORD
_B = wintypes.BOOL
_P = ctypes.c_void_p
_S = wintypes.LPCWSTR
_SIGNATURES: dict[str, tuple[str, Any, tuple[Any, ...]]] = {
    "WTSEnumerateSessionsW": ("wtsapi32", _B, (_H, _D, _D, _P, _P)),
    "WTSQuerySessionInformationW": ("wtsapi32", _B, (_H, _D, ctypes.c_int, _P, _P)),
    "WTSFreeMemory": ("wtsapi32", None, (_P,)),
    "WTSQueryUserToken": ("wtsapi32", _B, (wintypes.ULONG, _P)),
    "ProcessIdToSessionId": ("kernel32", _B, (_D, _P)),
    "CloseHandle": ("kernel32", _B, (_H,)),
    "CreateEnvironmentBlock": ("userenv", _B, (_P, _H, _B)),
    "DestroyEnvironmentBlock": ("userenv", _B, (_P,)),
    "GetUserProfileDirectoryW": ("userenv", _B, (_H, _P, _P)),
    "CreateProcessAsUserW": ("advapi32", _B, (_H, _S, _P, _P, _P, _B, _D, _P, _S, _P, _P)),
}
WTS_CURRENT_SERVER_HANDLE = None
ERROR_FILE_NOT_FOUND = 2
ERROR_INVALID_PARAMETER = 87


_win = Win32Functions(_SIGNATURES)
_last_error = last_error


def _error(what: str) -> OSError:
    code = _last_error()
    return OSError(None, f"{what} failed (Windows error {code})", None, code)


class Win32Wts:
    """`WtsApi` and `UserProcessStarter` over wtsapi32, kernel32, userenv and advapi32 through ctypes."""

    def sessions(self) -> list[WtsSession]:
        info, count = ctypes.c_void_p(), wintypes.DWORD()
        if not _win("WTSEnumerateSessionsW")(WTS_CURRENT_SERVER_HANDLE, 0, 1, ctypes.byref(info), ctypes.byref(count)):
            raise _error("WTSEnumerateSessions")
        try:
            entries = ctypes.cast(info, ctypes.POINTER(_WtsSessionInfo))
            found = []
            for index in range(count.value):
                entry = entries[index]
                station = ctypes.wstring_at(entry.pWinStationName) if entry.pWinStationName else ""
                found.append(WtsSession(session_id=int(entry.SessionId), station=station, state=int(entry.State)))
            return found
        finally:
            _win("WTSFreeMemory")(info)

    def account(self, session_id: int) -> tuple[str, str] | None:
        user = self._query_text(session_id, WTS_USER_NAME)
        if user is None:
            return None
        return (self._query_text(session_id, WTS_DOMAIN_NAME) or "", user)

    def session_of_process(self, pid: int) -> int | None:
        session = wintypes.DWORD()
        if not _win("ProcessIdToSessionId")(pid, ctypes.byref(session)):
            if _last_error() == ERROR_INVALID_PARAMETER:  # no such process
                return None
            raise _error(f"ProcessIdToSessionId({pid})")
        return int(session.value)

    def start_in_session(self, session_id: int, command_line: str) -> int:
        token = wintypes.HANDLE()
        if not _win("WTSQueryUserToken")(session_id, ctypes.byref(token)):
            raise _error(f"WTSQueryUserToken({session_id})")
        environment = ctypes.c_void_p()
        try:
            if not _win("CreateEnvironmentBlock")(ctypes.byref(environment), token, False):
                raise _error("CreateEnvironmentBlock")
            try:
                return self._create_process(token, command_line, environment)
            finally:
                _win("DestroyEnvironmentBlock")(environment)
        finally:
            _win("CloseHandle")(token)

    def _create_process(self, token: wintypes.HANDLE, command_line: str, environment: ctypes.c_void_p) -> int:
        startup = _StartupInfo()
        startup.cb = ctypes.sizeof(_StartupInfo)
        startup.lpDesktop = INTERACTIVE_DESKTOP
        startup.dwFlags = STARTF_USESHOWWINDOW
        startup.wShowWindow = SW_SHOWNORMAL
        process = _ProcessInformation()
        mutable_command = ctypes.create_unicode_buffer(command_line)  # CreateProcessW may write into it
        profile = self._profile_dir(token)
        created = _win("CreateProcessAsUserW")(
            token,
            None,
            mutable_command,
            None,
            None,
            False,  # no handles of the service leak into the user's process
            CREATE_UNICODE_ENVIRONMENT | CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW,
            environment,
            profile,
            ctypes.byref(startup),
            ctypes.byref(process),
        )
        if not created:
            raise _error("CreateProcessAsUser")
        _win("CloseHandle")(process.hThread)
        _win("CloseHandle")(process.hProcess)
        return int(process.dwProcessId)

    def _profile_dir(self, token: wintypes.HANDLE) -> str | None:
        size = wintypes.DWORD(0)
        _win("GetUserProfileDirectoryW")(token, None, ctypes.byref(size))
        if not size.value:
            return None
        buffer = ctypes.create_unicode_buffer(size.value)
        if not _win("GetUserProfileDirectoryW")(token, buffer, ctypes.byref(size)):
            return None
        return buffer.value or None

    def _query_text(self, session_id: int, info_class: int) -> str | None:
        buffer, size = ctypes.c_void_p(), wintypes.DWORD()
        if not _win("WTSQuerySessionInformationW")(
            WTS_CURRENT_SERVER_HANDLE, session_id, info_class, ctypes.byref(buffer), ctypes.byref(size)
        ):
            return None  # the session is gone (or never had this information)
        try:
            return ctypes.wstring_at(buffer.value) if buffer.value else ""
        finally:
            _win("WTSFreeMemory")(buffer)
