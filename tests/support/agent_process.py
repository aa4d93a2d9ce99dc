"""A real agent (AgentRuntime, headless, no collectors) in its own process, so tests can SIGKILL it.

As a script (`python -m tests.support.agent_process HOME`) it reads commands on stdin and answers on stdout:
`raise START COUNT` records COUNT events numbered START.. and answers `ack START COUNT` once the outbox commit has
returned; `quit` stops cleanly. `AgentProcess` drives it from the test's thread; a reader thread collects answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
TEST_KIND = "download.detected"


def payload(n: int) -> dict[str, Any]:
    """The data of test event `n`: deterministic, so the judge can check it arrived intact."""
    digest = hashlib.sha256(f"event-{n}".encode()).hexdigest()
    return {"n": n, "name": f"file-{n}.pdf", "blob": digest * (1 + n % 5)}


class AgentProcess:
    """Parent side. `acked` holds every event number whose commit the child acknowledged, across restarts."""

    def __init__(self, home: Path, *, uploader_options: Mapping[str, Any] | None = None) -> None:
        self.home = home
        self.acked: set[int] = set()
        self.raised: set[int] = set()
        self.device_id: str | None = None
        self._options = dict(uploader_options or {})
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._acked_lock = threading.Lock()
        self._log = home / "agent-process.log"

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, timeout: float = 30.0) -> None:
        env = {
            **os.environ,
            "DESKWARDEN_HOME": str(self.home),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            "PYTHONPATH": str(REPO),
            "DW_UPLOADER_OPTIONS": json.dumps(self._options),
        }
        with self._log.open("a") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.agent_process", str(self.home)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                bufsize=1,
                env=env,
                cwd=REPO,
            )
        self._lines = queue.SimpleQueue()
        threading.Thread(target=self._read, args=(self._proc.stdout, self._lines), daemon=True).start()
        line = self._next_line(timeout)
        if line is None or not line.startswith("ready"):
            raise AssertionError(f"agent did not start ({line!r}); log: {self._tail()}")
        self.device_id = line.split(" ", 1)[1].strip() or None

    def _read(self, stream: IO[str] | None, lines: queue.SimpleQueue[str | None]) -> None:
        if stream is None:
            return
        for line in stream:
            if line.startswith("ack "):
                _, start, count = line.split()
                with self._acked_lock:
                    self.acked.update(range(int(start), int(start) + int(count)))
            lines.put(line.rstrip("\n"))
        lines.put(None)

    def _next_line(self, timeout: float) -> str | None:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def _tail(self) -> str:
        return self._log.read_text(errors="replace")[-2000:] if self._log.exists() else ""

    def send_raise(self, start: int, count: int) -> None:
        """Ask the child to raise events start..start+count-1; the ack arrives asynchronously."""
        assert self._proc is not None
        assert self._proc.stdin is not None
        self.raised.update(range(start, start + count))
        with contextlib.suppress(BrokenPipeError, OSError):
            self._proc.stdin.write(f"raise {start} {count}\n")
            self._proc.stdin.flush()

    def raise_events(self, start: int, count: int, *, timeout: float = 30.0) -> None:
        """Raise and wait for the acknowledgement."""
        self.send_raise(start, count)
        while True:
            line = self._next_line(timeout)
            if line is None:
                raise AssertionError(f"no ack for events {start}+{count}; log: {self._tail()}")
            if line == f"ack {start} {count}":
                return

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(10)
            self._close_pipes(self._proc)
            self._proc = None

    @staticmethod
    def _close_pipes(proc: subprocess.Popen[str]) -> None:
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def stop(self, *, timeout: float = 20.0) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.write("quit\n")
                proc.stdin.flush()
            proc.wait(timeout)
        except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(10)
        self._close_pipes(proc)
        self._proc = None

    @property
    def acked_snapshot(self) -> set[int]:
        with self._acked_lock:
            return set(self.acked)


# --- child side -------------------------------------------------------------------------------------


def _serve_stdin(runtime: Any, done: threading.Event) -> None:
    from policy_client.schema import EventDraft, EventKind

    out = sys.stdout
    try:
        for line in sys.stdin:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "quit":
                break
            if parts[0] == "raise":
                start, count = int(parts[1]), int(parts[2])
                for n in range(start, start + count):
                    runtime.record(EventDraft(kind=EventKind(TEST_KIND), data=payload(n)))
                if runtime.flush(60):
                    out.write(f"ack {start} {count}\n")
                    out.flush()
    finally:
        done.set()


def main() -> None:
    from agent_app.core.runtime import AgentRuntime

    home = Path(sys.argv[1])
    options = json.loads(os.environ.get("DW_UPLOADER_OPTIONS") or "{}")
    runtime = AgentRuntime(home, collectors={}, uploader_options=options)
    runtime.start()
    sys.stdout.write(f"ready {runtime.device_id or ''}\n")
    sys.stdout.flush()
    done = threading.Event()
    threading.Thread(target=_serve_stdin, args=(runtime, done), name="control", daemon=True).start()
    try:
        runtime.run_headless(done.is_set)
    finally:
        runtime.stop(reason="quit")


if __name__ == "__main__":
    main()
