"""Unix-domain socket transport (Linux, macOS) with the peer's identity taken from the kernel.

Linux answers SO_PEERCRED (pid, uid, gid); macOS answers LOCAL_PEERCRED (uid, groups) and LOCAL_PEERPID.
The service's accept thread calls `UnixListener.accept`; the helper's thread calls `connect_unix`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import stat
import struct
import sys
from pathlib import Path

from agent_app.core.ipc.channel import Peer

if sys.platform == "win32":  # pragma: no cover - Windows uses agent_app.core.ipc.windows_pipe
    raise ImportError("Unix-domain sockets with peer credentials are not available on Windows")

# macOS <sys/un.h>: SOL_LOCAL = 0, LOCAL_PEERCRED = 1, LOCAL_PEERPID = 2; struct xucred is
# {u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16]}.
_SOL_LOCAL = 0
_LOCAL_PEERCRED = 1
_LOCAL_PEERPID = 2
_XUCRED = struct.Struct("=IIh2x16I")
_SO_PEERCRED: int = getattr(socket, "SO_PEERCRED", 17)  # Linux <asm-generic/socket.h>


def login_of(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def peer_of(sock: socket.socket) -> Peer:
    """The connected peer's identity from the kernel; OSError when the OS cannot say."""
    platform: str = sys.platform  # a plain str, so mypy --platform checks every branch
    if platform == "darwin":
        raw = sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERCRED, _XUCRED.size)
        fields = _XUCRED.unpack(raw[: _XUCRED.size].ljust(_XUCRED.size, b"\0"))
        uid, ngroups = int(fields[1]), int(fields[2])
        gid = int(fields[3]) if ngroups > 0 else None
        pid: int | None = None
        with contextlib.suppress(OSError):
            pid = struct.unpack("i", sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERPID, 4))[0]
        return Peer(user=login_of(uid), uid=uid, gid=gid, pid=pid)
    raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(user=login_of(uid), uid=uid, gid=gid, pid=pid)


class UnixChannel:
    def __init__(self, sock: socket.socket, peer: Peer) -> None:
        self._sock = sock
        self.peer = peer

    def recv(self, size: int) -> bytes:
        return self._sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data)

    def settimeout(self, seconds: float | None) -> None:
        self._sock.settimeout(seconds)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


class UnixListener:
    """Listens on `path`. The socket's directory is made by the listener's user (root in production) with mode
    0755, so only that user can create, replace or remove the socket; the socket itself is 0666 because every
    desk user's helper must connect, and the kernel, not the path, tells who connected.

    `allow_uid` (unprotected mode) refuses every peer but that uid before a single byte is read."""

    def __init__(self, path: Path, *, allow_uid: int | None = None, backlog: int = 16) -> None:
        self.path = path
        self._allow_uid = allow_uid
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        info = path.parent.stat()
        if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise PermissionError(f"{path.parent} must belong to uid {os.geteuid()} and not be group/world-writable")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket from a killed service
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        os.chmod(path, 0o600 if allow_uid is not None else 0o666)
        self._sock.listen(backlog)

    def accept(self) -> UnixChannel:
        while True:
            conn, _ = self._sock.accept()
            try:
                peer = peer_of(conn)
            except OSError:
                conn.close()
                continue
            if self._allow_uid is not None and peer.uid != self._allow_uid:
                conn.close()
                continue
            return UnixChannel(conn, peer)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


def connect_unix(path: Path, *, timeout: float = 5.0) -> UnixChannel:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
        peer = peer_of(sock)
    except OSError:
        sock.close()
        raise
    sock.settimeout(None)
    return UnixChannel(sock, peer)
