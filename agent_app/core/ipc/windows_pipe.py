"""Windows named-pipe transport with the peer's identity taken from the OS (the client's token, not its words).

The service's accept thread calls `PipeListener.accept`; each channel is then used by its connection thread and,
for pushes, any thread. The helper's threads call `connect_pipe`. Every Win32 call sits behind `PipeApi`
(`Win32Pipes` over kernel32/advapi32 through ctypes), so the logic here is tested on any OS with a fake.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Collection
from ctypes import wintypes
from dataclasses import dataclass
from typing import Any, Protocol

from agent_app.core.ipc.channel import Peer
from agent_app.core.win32api import Win32Functions, last_error

log = logging.getLogger(__name__)

PIPE_NAME = r"\\.\pipe\deskwarden"
BUFFER_BYTES = 64 * 1024

SYSTEM_SID = "S-1-5-18"
ADMINISTRATORS_SID = "S-1-5-32-544"
PRIVILEGED_SIDS = frozenset({SYSTEM_SID, ADMINISTRATORS_SID})
"""Who may own the pipe a helper talks to: the service creates it as LocalSystem (owner SYSTEM or Administrators)."""

# What a desk user's handle may do with the pipe: FILE_READ_DATA 0x1 | FILE_WRITE_DATA 0x2 | FILE_READ_EA 0x8 |
# FILE_READ_ATTRIBUTES 0x80 | READ_CONTROL 0x20000 | SYNCHRONIZE 0x100000. Deliberately without FILE_APPEND_DATA
# (0x4), which on a pipe is FILE_CREATE_PIPE_INSTANCE: GENERIC_WRITE would include it and let any user add a
# server instance of our pipe and receive other helpers' connections.
CLIENT_ACCESS = 0x0012008B
PIPE_SDDL = f"D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;OW)(A;;0x{CLIENT_ACCESS:08x};;;AU)"
"""Protected DACL: SYSTEM, Administrators and the creating account (OWNER RIGHTS; the service itself, or the
user running an unprotected demo) have full access, creating instances included; Authenticated Users may only
connect, read and write."""
OWNED_PIPE_SDDL = "O:BA" + PIPE_SDDL
"""The same DACL with the owner named: Administrators. LocalSystem's and an elevated administrator's tokens may
name it (its group carries SE_GROUP_OWNER); any other token gets ERROR_INVALID_OWNER and the service falls back to
PIPE_SDDL, whose owner is the token's default (the unprotected demo's own account, which that demo's helper trusts).
Naming it keeps the owner the helper checks independent of the token's default owner; Wine 8 gives a pipe the
token's primary group (Domain Users) by default, but keeps an owner that is asked for."""

# Win32 constants (winbase.h, winnt.h, winerror.h).
GENERIC_READ = 0x80000000
OPEN_EXISTING = 3
PIPE_ACCESS_DUPLEX = 0x00000003
FILE_FLAG_OVERLAPPED = 0x40000000
FILE_FLAG_FIRST_PIPE_INSTANCE = 0x00080000
PIPE_TYPE_BYTE = 0x0
PIPE_READMODE_BYTE = 0x0
PIPE_WAIT = 0x0
PIPE_REJECT_REMOTE_CLIENTS = 0x8
PIPE_UNLIMITED_INSTANCES = 255
SECURITY_SQOS_PRESENT = 0x00100000
SECURITY_IDENTIFICATION = 0x00010000
TOKEN_QUERY = 0x0008
TOKEN_USER_CLASS = 1
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
SE_KERNEL_OBJECT = 6
OWNER_SECURITY_INFORMATION = 0x1
SDDL_REVISION_1 = 1
INFINITE = 0xFFFFFFFF
WAIT_OBJECT_0 = 0x0
WAIT_TIMEOUT = 0x102
WAIT_FAILED = 0xFFFFFFFF

ERROR_FILE_NOT_FOUND = 2
ERROR_ACCESS_DENIED = 5
ERROR_BROKEN_PIPE = 109
ERROR_SEM_TIMEOUT = 121
ERROR_INSUFFICIENT_BUFFER = 122
ERROR_INVALID_OWNER = 1307
ERROR_PIPE_BUSY = 231
ERROR_NO_DATA = 232
ERROR_PIPE_NOT_CONNECTED = 233
ERROR_PIPE_CONNECTED = 535
ERROR_OPERATION_ABORTED = 995
ERROR_IO_PENDING = 997


class WaitInterrupted(OSError):
    """A blocking pipe call gave up because its waker was set (the channel or listener is closing)."""


class PipeBusy(OSError):
    """Every server instance is connected (ERROR_PIPE_BUSY); wait and try again."""


@dataclass(frozen=True, slots=True)
class Account:
    sid: str
    """String SID, e.g. S-1-5-21-...-1001."""
    user: str
    """DOMAIN\\user from LookupAccountSid, or the SID when the account has no name."""


class PipeApi(Protocol):
    """The Win32 calls the transport needs; `Win32Pipes` is the real one, tests pass a fake.

    Handles are ints. Blocking calls take a `waker` (from `new_waker`) and raise `WaitInterrupted` once it is
    set; they raise BrokenPipeError when the other end is gone and TimeoutError when `timeout` runs out.
    """

    def create_server(self, name: str, *, first: bool) -> int:
        """CreateNamedPipeW with OWNED_PIPE_SDDL, else PIPE_SDDL when this account may not name Administrators as
        owner (and FILE_FLAG_FIRST_PIPE_INSTANCE when `first`)."""
        ...

    def wait_client(self, pipe: int, waker: int) -> None:
        """ConnectNamedPipe: returns once a client is connected (BrokenPipeError if it already left)."""
        ...

    def open_client(self, name: str) -> int:
        """CreateFileW for CLIENT_ACCESS at identification level; PipeBusy, FileNotFoundError."""
        ...

    def wait_available(self, name: str, timeout: float) -> bool:
        """WaitNamedPipeW: True when an instance may be free, False on timeout; FileNotFoundError."""
        ...

    def read(self, pipe: int, size: int, timeout: float | None, waker: int) -> bytes:
        """ReadFile, overlapped; at least one byte, or BrokenPipeError at the end."""
        ...

    def write(self, pipe: int, data: bytes, timeout: float | None, waker: int) -> int:
        """WriteFile, overlapped; the number of bytes written."""
        ...

    def client_pid(self, pipe: int) -> int:
        """GetNamedPipeClientProcessId."""
        ...

    def server_pid(self, pipe: int) -> int:
        """GetNamedPipeServerProcessId."""
        ...

    def client_account(self, pipe: int) -> Account:
        """ImpersonateNamedPipeClient + OpenThreadToken + RevertToSelf: the connected client's token user."""
        ...

    def process_account(self, pid: int) -> Account:
        """OpenProcess + OpenProcessToken: a process's token user."""
        ...

    def owner_account(self, pipe: int) -> Account:
        """GetSecurityInfo(OWNER): who created the pipe."""
        ...

    def current_account(self) -> Account:
        """This process's token user."""
        ...

    def new_waker(self) -> int:
        """CreateEventW (manual reset)."""
        ...

    def wake(self, waker: int) -> None:
        """SetEvent."""
        ...

    def close(self, handle: int) -> None:
        """CloseHandle (a pipe end or a waker)."""
        ...


# --- the transport ---------------------------------------------------------------------------------------------


class PipeChannel:
    """One connected pipe end, with UnixChannel's semantics: `recv` returns b"" at the end of the stream (or once
    another thread closed the channel), a timeout raises TimeoutError, `close` is safe from any thread.

    The handle is overlapped, so the connection thread's blocking read and another thread's push may run at the
    same time (synchronous I/O on one file object would serialise them: the push would wait for the next
    request). The handle is closed only once no call is using it, so a closed handle value is never reused
    under a pending read."""

    def __init__(self, api: PipeApi, pipe: int, peer: Peer, *, on_release: Callable[[], None] | None = None) -> None:
        self.peer = peer
        self._api = api
        self._pipe = pipe
        self._waker = api.new_waker()
        self._on_release = on_release
        self._timeout: float | None = None
        self._lock = threading.Lock()
        self._busy = 0
        self._closed = False
        self._released = False

    def recv(self, size: int) -> bytes:
        if size <= 0:
            return b""
        self._enter()
        try:
            return self._api.read(self._pipe, size, self._timeout, self._waker)
        except (BrokenPipeError, WaitInterrupted):
            return b""
        finally:
            self._leave()

    def sendall(self, data: bytes) -> None:
        self._enter()
        try:
            # As socket.sendall since Python 3.5: the timeout bounds the whole call, not each write.
            deadline = None if self._timeout is None else time.monotonic() + self._timeout
            view = memoryview(data)
            while view:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                written = self._api.write(self._pipe, bytes(view[:BUFFER_BYTES]), remaining, self._waker)
                view = view[written:]
        except WaitInterrupted as exc:
            raise BrokenPipeError(errno.EPIPE, "channel closed while sending") from exc
        finally:
            self._leave()

    def settimeout(self, seconds: float | None) -> None:
        if seconds is not None and seconds < 0:
            raise ValueError("timeout must be non-negative")
        self._timeout = seconds

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            release = self._busy == 0
        self._api.wake(self._waker)
        if release:
            self._release()

    def _enter(self) -> None:
        with self._lock:
            if self._closed:
                raise OSError(errno.EBADF, "channel is closed")
            self._busy += 1

    def _leave(self) -> None:
        with self._lock:
            self._busy -= 1
            release = self._closed and self._busy == 0
        if release:
            self._release()

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._api.close(self._pipe)
        self._api.close(self._waker)
        if self._on_release is not None:
            self._on_release()


class PipeListener:
    """Serves `name` (`\\\\.\\pipe\\deskwarden`) to local clients, one pipe instance per connection.

    The first instance is created with FILE_FLAG_FIRST_PIPE_INSTANCE, so if a desk user created the name first
    the service fails loudly (PermissionError) instead of sharing a pipe with a squatter. After that the listener
    always holds an instance (the next one is created before a connected one is handed out), so the name never
    lapses while the service runs. Peers are identified by their token; one that cannot be identified is dropped.
    One thread calls `accept`; `close` may be called from any thread and makes a blocked `accept` raise OSError.
    """

    def __init__(self, name: str = PIPE_NAME, *, api: PipeApi | None = None) -> None:
        self.name = name
        self._api: PipeApi = api if api is not None else Win32Pipes()
        self._lock = threading.Lock()
        self._held = 0
        """Instances of the pipe this listener created that are still open (pending or handed out)."""
        self._closed = False
        self._accepting = False
        self._released = False
        self._waker = self._api.new_waker()
        try:
            self._pending: int | None = self._create()
        except OSError:
            self._api.close(self._waker)
            raise

    def accept(self) -> PipeChannel:
        with self._lock:
            if self._closed:
                raise OSError(errno.EBADF, "listener is closed")
            self._accepting = True
        try:
            while True:
                pipe = self._pending_instance()
                try:
                    self._api.wait_client(pipe, self._waker)
                except BrokenPipeError:  # a client connected and left before we looked
                    self._renew(pipe)
                    continue
                except OSError as exc:
                    if self._closed:
                        raise OSError(errno.EBADF, "listener is closed") from exc
                    raise
                channel = self._hand_out(pipe)
                if channel is not None:
                    return channel
        finally:
            self._stop_accepting()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            accepting = self._accepting
        self._api.wake(self._waker)
        if not accepting:  # otherwise the accepting thread releases on its way out
            self._release()

    # --- internals (the accept thread) -------------------------------------------------------------------------

    def _create(self) -> int:
        """A new server instance; FIRST_PIPE_INSTANCE whenever this listener holds none, because then the name may
        have lapsed and a squatter's pipe must make this fail rather than be joined. Called under the lock (or
        from __init__)."""
        first = self._held == 0
        try:
            pipe = self._api.create_server(self.name, first=first)
        except PermissionError as exc:
            if first:
                raise PermissionError(
                    errno.EACCES,
                    f"{self.name} already exists: another DeskWarden service runs, or another account created "
                    "the pipe name first",
                ) from exc
            raise
        self._held += 1
        return pipe

    def _stop_accepting(self) -> None:
        with self._lock:
            self._accepting = False
            closed = self._closed
        if closed:  # `close` left the releasing to this thread
            self._release()

    def _pending_instance(self) -> int:
        with self._lock:
            if self._closed:
                raise OSError(errno.EBADF, "listener is closed")
            if self._pending is None:
                self._pending = self._create()
            return self._pending

    def _renew(self, spent: int) -> None:
        """Replace the pending instance, creating the new one before closing the spent one so the name stays
        held. A failure to create leaves no pending instance; the next round tries again."""
        with self._lock:
            self._pending = None
            if not self._closed:
                try:
                    self._pending = self._create()
                except OSError:
                    log.exception("could not create the next instance of %s", self.name)
        self._close_instance(spent)

    def _hand_out(self, pipe: int) -> PipeChannel | None:
        """The connected `pipe` as a channel (after the next instance exists), or None when its peer is unknown."""
        with self._lock:
            self._pending = None
            closed = self._closed
            if not closed:
                try:
                    self._pending = self._create()
                except OSError:
                    # Serve this client anyway: its instance holds the name until the next round creates one.
                    log.exception("could not create the next instance of %s", self.name)
        if closed:
            self._close_instance(pipe)
            raise OSError(errno.EBADF, "listener is closed")
        try:
            peer = self._peer(pipe)
            return PipeChannel(self._api, pipe, peer, on_release=self._forget_instance)
        except OSError as exc:
            log.warning("dropping a pipe client whose identity the OS would not tell: %s", exc)
            self._close_instance(pipe)
            return None

    def _peer(self, pipe: int) -> Peer:
        pid = self._api.client_pid(pipe)
        try:
            # The token the client connected with; its process token is the fallback.
            account = self._api.client_account(pipe)
        except OSError as exc:
            log.debug("impersonating pipe client %d failed (%s); reading its process token", pid, exc)
            account = self._api.process_account(pid)
        return Peer(user=account.user, sid=account.sid, pid=pid)

    def _close_instance(self, pipe: int) -> None:
        self._api.close(pipe)
        self._forget_instance()

    def _forget_instance(self) -> None:
        with self._lock:
            self._held -= 1

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
            pending, self._pending = self._pending, None
        if pending is not None:
            self._close_instance(pending)
        self._api.close(self._waker)


def connect_pipe(
    name: str = PIPE_NAME,
    *,
    timeout: float = 5.0,
    api: PipeApi | None = None,
    trusted_sids: Collection[str] = PRIVILEGED_SIDS,
    trust_own_account: bool = True,
) -> PipeChannel:
    """Connect to the service's pipe within `timeout` seconds (TimeoutError; FileNotFoundError when no service
    listens) and check who created it: SYSTEM or Administrators, or (`trust_own_account`, for the unprotected
    demo where the service runs as this user) this process's own account. A pipe owned by anyone else is a
    squatter, perhaps another desk user, and is refused with PermissionError.

    The handle is opened at identification level, so even a squatter cannot impersonate this helper's user."""
    api = api if api is not None else Win32Pipes()
    deadline = time.monotonic() + timeout
    while True:
        try:
            pipe = api.open_client(name)
            break
        except PipeBusy:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not api.wait_available(name, remaining):
                raise TimeoutError(errno.ETIMEDOUT, f"every instance of {name} stayed busy for {timeout} s") from None
    try:
        owner = api.owner_account(pipe)
        trusted = set(trusted_sids)
        if trust_own_account:
            trusted.add(api.current_account().sid)
        if owner.sid not in trusted:
            raise PermissionError(errno.EACCES, f"{name} belongs to {owner.user} ({owner.sid}), not the service")
        server_pid: int | None = None
        with contextlib.suppress(OSError):
            server_pid = api.server_pid(pipe)
        return PipeChannel(api, pipe, Peer(user=owner.user, sid=owner.sid, pid=server_pid))
    except BaseException:
        api.close(pipe)
        raise


# --- the real Win32 calls ------------------------------------------------------------------------------------


class _Overlapped(ctypes.Structure):
    _fields_ = (
        ("Internal", ctypes.c_void_p),
        ("InternalHigh", ctypes.c_void_p),
        ("Offset", wintypes.DWORD),
        ("OffsetHigh", wintypes.DWORD),
        ("hEvent", wintypes.HANDLE),
    )


class _SecurityAttributes(ctypes.Structure):
    _fields_ = (
        ("nLength", wintypes.DWORD),
        ("lpSecurityDescriptor", ctypes.c_void_p),
        ("bInheritHandle", wintypes.BOOL),
    )


_H = wintypes.HANDLE
_D = wintypes.DWORD
_B = wintypes.BOOL
_P = ctypes.c_void_p
_S = wintypes.LPCWSTR
_SIGNATURES: dict[str, tuple[str, Any, tuple[Any, ...]]] = {
    "CreateNamedPipeW": ("kernel32", _H, (_S, _D, _D, _D, _D, _D, _D, _P)),
    "ConnectNamedPipe": ("kernel32", _B, (_H, _P)),
    "CreateFileW": ("kernel32", _H, (_S, _D, _D, _P, _D, _D, _H)),
    "WaitNamedPipeW": ("kernel32", _B, (_S, _D)),
    "ReadFile": ("kernel32", _B, (_H, _P, _D, _P, _P)),
    "WriteFile": ("kernel32", _B, (_H, _P, _D, _P, _P)),
    "GetOverlappedResult": ("kernel32", _B, (_H, _P, _P, _B)),
    "CancelIoEx": ("kernel32", _B, (_H, _P)),
    "CreateEventW": ("kernel32", _H, (_P, _B, _B, _S)),
    "SetEvent": ("kernel32", _B, (_H,)),
    "WaitForMultipleObjects": ("kernel32", _D, (_D, _P, _B, _D)),
    "CloseHandle": ("kernel32", _B, (_H,)),
    "LocalFree": ("kernel32", _P, (_P,)),
    "GetNamedPipeClientProcessId": ("kernel32", _B, (_H, _P)),
    "GetNamedPipeServerProcessId": ("kernel32", _B, (_H, _P)),
    "GetCurrentThread": ("kernel32", _H, ()),
    "GetCurrentProcess": ("kernel32", _H, ()),
    "OpenProcess": ("kernel32", _H, (_D, _B, _D)),
    "ImpersonateNamedPipeClient": ("advapi32", _B, (_H,)),
    "RevertToSelf": ("advapi32", _B, ()),
    "OpenThreadToken": ("advapi32", _B, (_H, _D, _B, _P)),
    "OpenProcessToken": ("advapi32", _B, (_H, _D, _P)),
    "GetTokenInformation": ("advapi32", _B, (_H, ctypes.c_int, _P, _D, _P)),
    "ConvertSidToStringSidW": ("advapi32", _B, (_P, _P)),
    "LookupAccountSidW": ("advapi32", _B, (_S, _P, _P, _P, _P, _P, _P)),
    "ConvertStringSecurityDescriptorToSecurityDescriptorW": ("advapi32", _B, (_S, _D, _P, _P)),
    "GetSecurityInfo": ("advapi32", _D, (_H, ctypes.c_int, _D, _P, _P, _P, _P, _P)),
}
_INVALID_HANDLE = ctypes.c_void_p(-1).value


_win = Win32Functions(_SIGNATURES)
_last_error = last_error


def _error(code: int, what: str) -> OSError:
    """The OSError subclass Python code expects for a Win32 error code."""
    message = f"{what} failed (Windows error {code})"
    if code in (ERROR_BROKEN_PIPE, ERROR_NO_DATA, ERROR_PIPE_NOT_CONNECTED):
        return BrokenPipeError(errno.EPIPE, message)
    if code == ERROR_FILE_NOT_FOUND:
        return FileNotFoundError(errno.ENOENT, message)
    if code == ERROR_ACCESS_DENIED:
        return PermissionError(errno.EACCES, message)
    if code == ERROR_SEM_TIMEOUT:
        return TimeoutError(errno.ETIMEDOUT, message)
    if code == ERROR_PIPE_BUSY:
        return PipeBusy(errno.EBUSY, message)
    return OSError(None, message, None, code)


def _check(ok: object, what: str) -> None:
    if not ok:
        raise _error(_last_error(), what)


def _millis(timeout: float | None) -> int:
    if timeout is None:
        return INFINITE
    return min(max(0, int(timeout * 1000)), INFINITE - 1)


def _sid_text(psid: int | None) -> str:
    text = ctypes.c_void_p()
    _check(_win("ConvertSidToStringSidW")(psid, ctypes.byref(text)), "ConvertSidToStringSid")
    try:
        return ctypes.wstring_at(text.value) if text.value else ""
    finally:
        _win("LocalFree")(text)


def account_of_sid(psid: int | None) -> Account:
    """The string SID and DOMAIN\\user of a SID pointer (LookupAccountSidW; the SID when it has no name)."""
    sid = _sid_text(psid)
    name = ctypes.create_unicode_buffer(256)
    domain = ctypes.create_unicode_buffer(256)
    name_len, domain_len, use = wintypes.DWORD(256), wintypes.DWORD(256), wintypes.DWORD()
    found = _win("LookupAccountSidW")(
        None, psid, name, ctypes.byref(name_len), domain, ctypes.byref(domain_len), ctypes.byref(use)
    )
    if not found or not name.value:
        return Account(sid=sid, user=sid)
    return Account(sid=sid, user=f"{domain.value}\\{name.value}" if domain.value else name.value)


def token_account(token: int | None) -> Account:
    """The user of an access token (GetTokenInformation(TokenUser))."""
    size = wintypes.DWORD(0)
    _win("GetTokenInformation")(token, TOKEN_USER_CLASS, None, 0, ctypes.byref(size))
    if not size.value:
        raise _error(_last_error(), "GetTokenInformation(size)")
    buffer = ctypes.create_string_buffer(size.value)
    _check(
        _win("GetTokenInformation")(token, TOKEN_USER_CLASS, buffer, size, ctypes.byref(size)), "GetTokenInformation"
    )
    # TOKEN_USER is {SID_AND_ATTRIBUTES User}; its first field is the PSID, pointing into the same buffer.
    psid = ctypes.cast(buffer, ctypes.POINTER(ctypes.c_void_p))[0]
    return account_of_sid(psid)


class Win32Pipes:
    """`PipeApi` over kernel32 and advapi32 through ctypes (no pywin32: it is not a dependency)."""

    def create_server(self, name: str, *, first: bool) -> int:
        try:
            return self._create_server(name, first=first, sddl=OWNED_PIPE_SDDL)
        except OSError as exc:
            if getattr(exc, "winerror", None) != ERROR_INVALID_OWNER:
                raise
        return self._create_server(name, first=first, sddl=PIPE_SDDL)

    def _create_server(self, name: str, *, first: bool, sddl: str) -> int:
        descriptor = ctypes.c_void_p()
        _check(
            _win("ConvertStringSecurityDescriptorToSecurityDescriptorW")(
                sddl, SDDL_REVISION_1, ctypes.byref(descriptor), None
            ),
            "ConvertStringSecurityDescriptorToSecurityDescriptor",
        )
        try:
            attributes = _SecurityAttributes(ctypes.sizeof(_SecurityAttributes), descriptor.value, False)
            open_mode = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | (FILE_FLAG_FIRST_PIPE_INSTANCE if first else 0)
            pipe_mode = PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS
            handle = _win("CreateNamedPipeW")(
                name,
                open_mode,
                pipe_mode,
                PIPE_UNLIMITED_INSTANCES,
                BUFFER_BYTES,
                BUFFER_BYTES,
                0,
                ctypes.byref(attributes),
            )
            if handle in (None, _INVALID_HANDLE):
                raise _error(_last_error(), f"CreateNamedPipe({name})")
            return int(handle)
        finally:
            _win("LocalFree")(descriptor)

    def wait_client(self, pipe: int, waker: int) -> None:
        self._overlapped(pipe, lambda ov: _win("ConnectNamedPipe")(pipe, ov), None, waker, "ConnectNamedPipe")

    def open_client(self, name: str) -> int:
        handle = _win("CreateFileW")(
            name,
            CLIENT_ACCESS,
            0,
            None,
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
            None,
        )
        if handle in (None, _INVALID_HANDLE):
            raise _error(_last_error(), f"CreateFile({name})")
        return int(handle)

    def wait_available(self, name: str, timeout: float) -> bool:
        if _win("WaitNamedPipeW")(name, max(1, _millis(timeout))):
            return True
        code = _last_error()
        if code == ERROR_SEM_TIMEOUT:
            return False
        raise _error(code, f"WaitNamedPipe({name})")

    def read(self, pipe: int, size: int, timeout: float | None, waker: int) -> bytes:
        buffer = ctypes.create_string_buffer(size)
        count = self._overlapped(
            pipe, lambda ov: _win("ReadFile")(pipe, buffer, size, None, ov), timeout, waker, "ReadFile"
        )
        if count == 0:
            # A zero-byte message is not end of stream on a pipe, but this byte-mode protocol never sends one.
            raise BrokenPipeError(errno.EPIPE, "pipe closed")
        return buffer.raw[:count]

    def write(self, pipe: int, data: bytes, timeout: float | None, waker: int) -> int:
        buffer = ctypes.create_string_buffer(data, len(data))
        return self._overlapped(
            pipe, lambda ov: _win("WriteFile")(pipe, buffer, len(data), None, ov), timeout, waker, "WriteFile"
        )

    def client_pid(self, pipe: int) -> int:
        pid = wintypes.ULONG()
        _check(_win("GetNamedPipeClientProcessId")(pipe, ctypes.byref(pid)), "GetNamedPipeClientProcessId")
        return int(pid.value)

    def server_pid(self, pipe: int) -> int:
        pid = wintypes.ULONG()
        _check(_win("GetNamedPipeServerProcessId")(pipe, ctypes.byref(pid)), "GetNamedPipeServerProcessId")
        return int(pid.value)

    def client_account(self, pipe: int) -> Account:
        _check(_win("ImpersonateNamedPipeClient")(pipe), "ImpersonateNamedPipeClient")
        token = wintypes.HANDLE()
        try:
            # OpenAsSelf: the access check uses the service's own token; an identification-level token (what
            # helpers connect with) could not open itself.
            opened = _win("OpenThreadToken")(_win("GetCurrentThread")(), TOKEN_QUERY, True, ctypes.byref(token))
            code = _last_error()
        finally:
            if not _win("RevertToSelf")():
                # The accept thread would go on as the desk user: no safe way to continue.
                log.critical("RevertToSelf failed (Windows error %d); stopping the service", _last_error())
                os._exit(70)
        if not opened:
            raise _error(code, "OpenThreadToken")
        try:
            return token_account(token.value)
        finally:
            _win("CloseHandle")(token)

    def process_account(self, pid: int) -> Account:
        process = _win("OpenProcess")(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
        if not process:
            raise _error(_last_error(), f"OpenProcess({pid})")
        try:
            return self._process_token_account(process)
        finally:
            _win("CloseHandle")(process)

    def owner_account(self, pipe: int) -> Account:
        owner, descriptor = ctypes.c_void_p(), ctypes.c_void_p()
        code = _win("GetSecurityInfo")(
            pipe,
            SE_KERNEL_OBJECT,
            OWNER_SECURITY_INFORMATION,
            ctypes.byref(owner),
            None,
            None,
            None,
            ctypes.byref(descriptor),
        )
        if code:
            raise _error(int(code), "GetSecurityInfo(owner)")
        try:
            return account_of_sid(owner.value)
        finally:
            _win("LocalFree")(descriptor)

    def current_account(self) -> Account:
        return self._process_token_account(_win("GetCurrentProcess")())

    def new_waker(self) -> int:
        event = _win("CreateEventW")(None, True, False, None)
        if not event:
            raise _error(_last_error(), "CreateEvent")
        return int(event)

    def wake(self, waker: int) -> None:
        _check(_win("SetEvent")(waker), "SetEvent")

    def close(self, handle: int) -> None:
        _win("CloseHandle")(handle)

    def _process_token_account(self, process: int | None) -> Account:
        token = wintypes.HANDLE()
        _check(_win("OpenProcessToken")(process, TOKEN_QUERY, ctypes.byref(token)), "OpenProcessToken")
        try:
            return token_account(token.value)
        finally:
            _win("CloseHandle")(token)

    def _overlapped(
        self, pipe: int, start: Callable[[Any], object], timeout: float | None, waker: int, what: str
    ) -> int:
        """Run one overlapped call to completion: the bytes transferred. The OVERLAPPED and the caller's buffer
        stay alive until the I/O has finished, also when it is cancelled (timeout, waker)."""
        event = _win("CreateEventW")(None, True, False, None)
        if not event:
            raise _error(_last_error(), "CreateEvent")
        overlapped = _Overlapped()
        overlapped.hEvent = event
        done = wintypes.DWORD(0)
        try:
            if not start(ctypes.byref(overlapped)):
                code = _last_error()
                if code == ERROR_PIPE_CONNECTED:  # ConnectNamedPipe: the client came before we waited
                    return 0
                if code != ERROR_IO_PENDING:
                    raise _error(code, what)
                handles = (wintypes.HANDLE * 2)(event, waker)
                waited = _win("WaitForMultipleObjects")(2, handles, False, _millis(timeout))
                if waited != WAIT_OBJECT_0:
                    wait_error = _last_error() if waited == WAIT_FAILED else 0
                    _win("CancelIoEx")(pipe, ctypes.byref(overlapped))
                    if _win("GetOverlappedResult")(pipe, ctypes.byref(overlapped), ctypes.byref(done), True):
                        return int(done.value)  # it completed before the cancel took hold
                    code = _last_error()
                    if code != ERROR_OPERATION_ABORTED:
                        raise _error(code, what)
                    if waited == WAIT_TIMEOUT:
                        raise TimeoutError(errno.ETIMEDOUT, f"{what} timed out")
                    if waited == WAIT_OBJECT_0 + 1:
                        raise WaitInterrupted(errno.EINTR, f"{what} interrupted: closing")
                    raise _error(wait_error, "WaitForMultipleObjects")
            if not _win("GetOverlappedResult")(pipe, ctypes.byref(overlapped), ctypes.byref(done), True):
                raise _error(_last_error(), what)
            return int(done.value)
        finally:
            _win("CloseHandle")(event)
