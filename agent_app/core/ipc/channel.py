"""What the IPC server and client need from an OS transport: a listener that yields authenticated channels.

Unix sockets (`agent_app.core.ipc.unix`) and Windows named pipes (`agent_app.core.ipc.windows_pipe`) implement
these protocols; `default_listener`/`connect` pick one per OS. Reading and writing whole frames is here.
Called on the server's accept and connection threads and on the helper's client threads.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent_app.core.ipc.protocol import HEADER, frame_length


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the other end, as the OS says (never as the peer says)."""

    user: str
    """Login name (Windows: DOMAIN\\user)."""
    uid: int | None = None
    """POSIX uid; None on Windows."""
    gid: int | None = None
    pid: int | None = None
    sid: str | None = None
    """Windows security identifier; None elsewhere."""

    @property
    def key(self) -> str:
        """A stable identity for per-user bookkeeping (uid or SID)."""
        return self.sid if self.sid is not None else str(self.uid)


class Channel(Protocol):
    """One connected peer. `recv` returns b"" at end of stream; both raise OSError (TimeoutError on timeout)."""

    peer: Peer

    def recv(self, size: int) -> bytes: ...

    def sendall(self, data: bytes) -> None: ...

    def settimeout(self, seconds: float | None) -> None: ...

    def close(self) -> None: ...


class Listener(Protocol):
    def accept(self) -> Channel:
        """Block until a peer connects; OSError once `close` was called."""
        ...

    def close(self) -> None: ...


class PeerClosed(ConnectionError):
    """The other side hung up (possibly mid-frame)."""


def recv_exact(channel: Channel, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = channel.recv(min(remaining, 65536))
        if not chunk:
            raise PeerClosed("peer closed the connection")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(channel: Channel) -> bytes:
    """One frame body. The length is checked against MAX_FRAME before any of the body is read."""
    header = recv_exact(channel, HEADER.size)
    return recv_exact(channel, frame_length(header))


def default_socket_path() -> Path:
    """Where the service listens: a root-owned directory on Unix, a pipe name on Windows."""
    platform: str = sys.platform  # a plain str, so mypy --platform checks every branch
    if platform == "win32":
        return Path(r"\\.\pipe\deskwarden")
    return (
        Path("/run/deskwarden/service.sock") if sys.platform.startswith("linux") else Path("/var/run/deskwarden.sock")
    )


def default_listener(path: Path, *, allow_uid: int | None = None) -> Listener:
    platform: str = sys.platform
    if platform == "win32":
        from agent_app.core.ipc.windows_pipe import PipeListener

        return PipeListener(str(path))
    from agent_app.core.ipc.unix import UnixListener

    return UnixListener(path, allow_uid=allow_uid)


def connect(path: Path, *, timeout: float = 5.0) -> Channel:
    platform: str = sys.platform
    if platform == "win32":
        from agent_app.core.ipc.windows_pipe import connect_pipe

        return connect_pipe(str(path), timeout=timeout)
    from agent_app.core.ipc.unix import connect_unix

    return connect_unix(path, timeout=timeout)
