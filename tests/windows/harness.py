"""A Windows desk under Wine for tests/windows: a private copy of the cached Wine prefix and of the embeddable CPython
(built by scripts/windows-env.sh), with this checkout on the Windows Python's path, and ways to run the agent there.

Windows CPython 3.13 under Wine 8 dies in init_sys_streams (WinError 6) when its standard handles are Unix files or
pipes, so every Windows process runs on a pseudo-terminal from script(1) and reports through files. A keeper
console holds one pty open for the prefix's life: services.exe inherits it, so the services it starts have valid
standard handles too. Used from the test's thread only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("DESKWARDEN_WINE_CACHE", "/var/cache/deskwarden-wine"))
WINE_ENV = {"WINEDEBUG": "-all", "WINEDLLOVERRIDES": "mscoree,mshtml="}

_RUNNER = """\
import json, sys, traceback
out, code = sys.argv[1], open(sys.argv[2], encoding="utf-8").read()
ns = {"__name__": "__wine_snippet__"}
try:
    exec(compile(code, sys.argv[2], "exec"), ns)
    doc = {"ok": True, "result": ns.get("result")}
except BaseException:
    doc = {"ok": False, "error": traceback.format_exc()}
with open(out, "w", encoding="utf-8") as handle:
    json.dump(doc, handle, default=repr)
"""

_CLI = """\
import sys
log = open(sys.argv[1], "w", encoding="utf-8", buffering=1)
sys.stdout = sys.stderr = log
sys.argv = ["deskwarden", *sys.argv[2:]]
if sys.argv[1:2] == ["agent"] or sys.argv[2:3] == ["agent"]:
    # Wine 8 has no WinRT Windows.UI.ViewManagement.UISettings: Qt 6.8's Windows theme (desktop palette) and its
    # windows11 style ask it for the accent colour and abort (exit code 3) on the unhandled winrt::hresult_error.
    # Without desktop settings and with the Fusion style, the windows platform plugin runs.
    import os
    os.environ["QT_STYLE_OVERRIDE"] = "fusion"
    from PySide6.QtGui import QGuiApplication
    QGuiApplication.setDesktopSettingsAware(False)
from agent_app.cli import main
code = main()
print(f"exit status {code}")
sys.exit(code)
"""


def env_dir() -> Path | None:
    """The environment scripts/windows-env.sh built ($DESKWARDEN_WINE_ENV or $CACHE/current), None when missing."""
    path = Path(os.environ.get("DESKWARDEN_WINE_ENV") or CACHE / "current")
    if (path / ".ready").exists() and (path / "prefix" / ".ready").exists() and shutil.which("wine"):
        return path.resolve()
    return None


def windows_path(path: Path) -> str:
    """Wine maps the Unix root to drive Z:."""
    return "Z:" + str(path).replace("/", "\\")


@dataclass(frozen=True)
class Done:
    returncode: int
    output: str
    """What the command wrote to its log file (the CLI's stdout and stderr)."""


class WineDesk:
    def __init__(self, env: Path, root: Path, *, display: str | None = None) -> None:
        self.root = root
        self.prefix = root / "prefix"
        self.python_dir = root / "python"
        self.info: dict[str, Any] = json.loads((env / "env.json").read_text())
        root.mkdir(parents=True, exist_ok=True)
        _clone_prefix((env / "prefix").resolve(), self.prefix)
        # Hard links: ~3,000 files in a few ms; the ._pth is a new file naming this checkout.
        shutil.copytree(env / "python", self.python_dir, copy_function=os.link)
        pth = self.python_dir / "python313._pth"
        pth.unlink()
        pth.write_text(f"python313.zip\r\n.\r\nLib\\site-packages\r\n{windows_path(REPO)}\r\n", encoding="ascii")
        (root / "runner.py").write_text(_RUNNER, encoding="utf-8")
        (root / "cli.py").write_text(_CLI, encoding="utf-8")
        self.env = {**os.environ, **WINE_ENV, "WINEPREFIX": str(self.prefix)}
        if display is not None:  # Wine's X11 driver: windows, the system tray and the clipboard live on this display
            self.env["DISPLAY"] = display
        self.display = display
        self._spawned: list[subprocess.Popen[bytes]] = []
        self._keeper = self._script(["cmd", "/c", "pause"], self.root / "keeper.log")
        try:
            # wineboot has run once the keeper's console is up; services.exe is then attached to it.
            wait_for(
                lambda: self._processes(r"system32\services.exe"), timeout=60, what=f"services.exe in {self.prefix}"
            )
        except BaseException:
            self.close()
            raise

    @property
    def python_exe(self) -> str:
        return windows_path(self.python_dir / "python.exe")

    def _script(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        """`wine ARGV` on a pty of its own; stdin stays open (script(1) ends its child at end of input)."""
        command = shlex.join(["wine", *argv])
        proc = subprocess.Popen(
            ["script", "-qfec", command, str(log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env,
            cwd=self.root,
        )
        self._spawned.append(proc)
        return proc

    def _processes(self, name: str) -> list[str]:
        done = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False)
        return [line for line in done.stdout.splitlines() if name.lower() in line.lower()]

    def run(self, argv: list[str], *, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        log = self.root / f"run-{uuid.uuid4().hex[:8]}.log"
        proc = self._script(argv, log)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"wine {argv} did not finish in {timeout:.0f} s") from None
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
        return subprocess.CompletedProcess(argv, proc.returncode or 0, log.read_bytes())

    def cli(self, *args: str, timeout: float = 120) -> Done:
        """`deskwarden ARGS` with the Windows Python; returns once it exits."""
        log = self.root / f"cli-{uuid.uuid4().hex[:8]}.log"
        argv = [self.python_exe, windows_path(self.root / "cli.py"), windows_path(log), *args]
        done = self.run(argv, timeout=timeout)
        return Done(done.returncode, log.read_text(encoding="utf-8", errors="replace") if log.exists() else "")

    def spawn_cli(self, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        """`deskwarden ARGS` left running (stopped with the prefix); its log file."""
        log = self.root / f"cli-{uuid.uuid4().hex[:8]}.log"
        argv = [self.python_exe, windows_path(self.root / "cli.py"), windows_path(log), *args]
        proc = self._script(argv, log.with_suffix(".pty"))
        return proc, log

    def python(self, code: str, *, timeout: float = 120) -> Any:
        """Run `code` in the Windows Python; the value it leaves in `result` (JSON), or AssertionError with its
        traceback."""
        name = uuid.uuid4().hex[:8]
        source, out = self.root / f"snippet-{name}.py", self.root / f"snippet-{name}.json"
        source.write_text(textwrap.dedent(code), encoding="utf-8")
        self.run(
            [self.python_exe, windows_path(self.root / "runner.py"), windows_path(out), windows_path(source)],
            timeout=timeout,
        )
        if not out.exists():
            raise AssertionError(f"the Windows Python wrote nothing for {source}")
        doc = json.loads(out.read_text(encoding="utf-8"))
        if not doc["ok"]:
            raise AssertionError(doc["error"])
        return doc["result"]

    def close(self) -> None:
        logs = self.prefix / "drive_c" / "ProgramData" / "DeskWarden" / "logs"
        if logs.is_dir():  # kept for a failing test's report; the prefix itself goes
            shutil.copytree(logs, self.root / "service-logs", dirs_exist_ok=True)
        subprocess.run(["wineserver", "-k"], env=self.env, check=False, timeout=30)
        for proc in self._spawned:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        shutil.rmtree(self.prefix, ignore_errors=True)  # ~700 MB of hard links


def _clone_prefix(template: Path, target: Path) -> None:
    """Hard links for the prefix's DLLs (Wine never rewrites them in place); copies of the registry files, which
    wineserver rewrites."""
    subprocess.run(["cp", "-al", str(template), str(target)], check=True)
    for reg in target.glob("*.reg"):
        reg.unlink()
        shutil.copy2(template / reg.name, reg)
    (target / ".ready").unlink(missing_ok=True)
