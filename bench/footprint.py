"""Footprint of the two agent processes, idle and under a burst: `deskwarden service` (engine: outbox, uploader, USB,
downloads, process scanner) and `deskwarden agent` (session helper: tray, clipboard, capture hotkeys).

Run: .venv/bin/python bench/footprint.py [--minutes 10] [--burst 1000] [--headless]
Starts the service (as the current user: unprotected mode, or protected when run as root) with a temporary state dir
and socket, then the helper on a private Xvfb display (QT_QPA_PLATFORM=xcb; `--headless`: no display, helper
`--headless`), waits until `deskwarden status` counts the helper, samples RSS/USS/CPU of each process, and prints
markdown tables: per-process figures against the budget, what each process imported, where the memory goes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
MB = 2**20
PROBE_ENV = "DW_FOOTPRINT_PROBE"
HEAVY = (
    "PySide6",
    "shiboken6",
    "pydantic",
    "pydantic_core",
    "requests",
    "urllib3",
    "charset_normalizer",
    "cryptography",
    "keyring",
    "psutil",
    "pynput",
    "Xlib",
    "pyudev",
    "pypdf",
)
"""Top-level packages worth naming when a process has them in sys.modules."""


@dataclass(frozen=True)
class Budget:
    rss_mb: float
    cpu_percent: float


BUDGETS = {"service": Budget(rss_mb=50.0, cpu_percent=0.3), "helper": Budget(rss_mb=65.0, cpu_percent=0.3)}
"""Idle budgets of each process (ARCHITECTURE.md section 9 after the service/helper split)."""

# Runs each process's real entry point (`deskwarden ...`), plus a SIGUSR1 handler that writes what the process has
# imported and its collectors' states to $DW_FOOTPRINT_PROBE.<pid>. Signal handlers run on the main thread, where
# the collector supervisor lives; nothing runs until the signal arrives, so the idle figures are not disturbed.
BOOTSTRAP = """
import gc, json, os, signal, sys

def _footprint_probe(signum, frame):
    names = sorted(sys.modules)
    states = {}
    for obj in gc.get_objects():
        if type(obj).__name__ == "CollectorSupervisor":
            states.update(obj.states())
    body = {
        "modules": len(names),
        "heavy": sorted({name.split(".")[0] for name in names} & set(HEAVY_NAMES)),
        "qt": sorted(name.split(".")[1] for name in names if name.startswith("PySide6.") and name.count(".") == 1),
        "collectors": states,
    }
    target = os.environ["PROBE_ENV_NAME"] + "." + str(os.getpid())
    with open(target + ".tmp", "w", encoding="utf-8") as out:
        json.dump(body, out)
    os.replace(target + ".tmp", target)

signal.signal(signal.SIGUSR1, _footprint_probe)
sys.argv[0] = "deskwarden"
from agent_app.cli import main
sys.exit(main())
""".replace("HEAVY_NAMES", repr(HEAVY)).replace("PROBE_ENV_NAME", PROBE_ENV)

_PAUSE = threading.Event()


# --- sampling ---------------------------------------------------------------------------------------------------


@dataclass
class Sample:
    rss: int
    uss: int
    cpu_s: float
    threads: int
    files: int


def sample(proc: psutil.Process) -> Sample:
    with proc.oneshot():
        full = proc.memory_full_info()
        times = proc.cpu_times()
        return Sample(full.rss, full.uss, times.user + times.system, proc.num_threads(), len(proc.open_files()))


@dataclass
class Window:
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def cpu_percent(self) -> float:
        """CPU time over the window as a percentage of one core."""
        return 100.0 * (self.samples[-1].cpu_s - self.samples[0].cpu_s) / max(self.seconds, 1e-9)

    @property
    def peak_rss(self) -> int:
        return max(s.rss for s in self.samples)


def watch(
    procs: Mapping[str, psutil.Process],
    *,
    seconds: float | None = None,
    done: threading.Event | None = None,
    every: float = 1.0,
) -> dict[str, Window]:
    """Samples each process every `every` seconds for `seconds`, or until `done` is set."""
    windows = {name: Window([sample(proc)]) for name, proc in procs.items()}
    stop = done or threading.Event()
    start = time.monotonic()
    while not stop.is_set():
        left = None if seconds is None else seconds - (time.monotonic() - start)
        if left is not None and left <= 0:
            break
        stop.wait(every if left is None else min(every, left))
        for name, proc in procs.items():
            windows[name].samples.append(sample(proc))
    for window in windows.values():
        window.seconds = time.monotonic() - start
    return windows


# --- the two processes --------------------------------------------------------------------------------------------


def split_env(home: Path, *, display: str | None) -> dict[str, str]:
    """Environment of both processes and of `deskwarden status`: state, HOME and keyring kept inside `home`."""
    env = {
        **os.environ,
        "HOME": str(home / "user"),
        "DESKWARDEN_HOME": str(home / "helper"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        PROBE_ENV: str(home / "probe"),
    }
    env.pop("WAYLAND_DISPLAY", None)
    if display:
        env["DISPLAY"] = display
        env["QT_QPA_PLATFORM"] = "xcb"
    else:
        env.pop("DISPLAY", None)
    return env


@dataclass
class Split:
    """A running service and helper, both children of this process."""

    home: Path
    socket: Path
    display: str | None
    service: subprocess.Popen[bytes]
    helper: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return split_env(self.home, display=self.display)

    def processes(self) -> dict[str, psutil.Process]:
        procs = {"service": psutil.Process(self.service.pid)}
        if self.helper is not None:
            procs["helper"] = psutil.Process(self.helper.pid)
        return procs

    def status(self) -> dict[str, Any]:
        """`deskwarden status --json --socket ...`: what the service reports ({} while it does not answer)."""
        done = subprocess.run(
            [sys.executable, "-m", "agent_app", "status", "--json", "--socket", str(self.socket)],
            capture_output=True,
            text=True,
            timeout=20,
            cwd=REPO,
            env=self.env,
            check=False,
        )
        try:
            body: dict[str, Any] = json.loads(done.stdout)
        except ValueError:
            return {}
        return body if "helpers" in body else {}

    def log_tail(self, chars: int = 3000) -> str:
        parts = []
        for name in ("service", "helper"):
            path = self.home / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name}.log\n" + path.read_text(errors="replace")[-chars:])
        return "\n".join(parts)

    def probe(self, name: str, *, timeout: float = 20.0) -> dict[str, Any]:
        """What process `name` has imported and its collectors' states (the bootstrap's SIGUSR1 handler)."""
        proc = self.service if name == "service" else self.helper
        assert proc is not None
        target = Path(f"{self.home / 'probe'}.{proc.pid}")
        target.unlink(missing_ok=True)
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if target.exists():
                body: dict[str, Any] = json.loads(target.read_text(encoding="utf-8"))
                return body
            _PAUSE.wait(0.1)
        raise RuntimeError(f"{name} did not answer the probe\n{self.log_tail()}")

    def stop(self) -> None:
        for proc in (self.helper, self.service):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (self.helper, self.service):
            if proc is None:
                continue
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _popen(split_home: Path, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    with (split_home / f"{name}.log").open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-c", BOOTSTRAP, *args], cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT
        )


def _poll(check: Callable[[], bool], split: Split, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in (("service", split.service), ("helper", split.helper)):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"the {name} exited with {proc.returncode} while waiting for {what}\n{split.log_tail()}"
                )
        if check():
            return
        _PAUSE.wait(0.2)
    raise RuntimeError(f"timed out waiting for {what}\n{split.log_tail()}")


def start_split(home: Path, *, display: str | None, headless: bool, timeout: float = 60.0) -> Split:
    """Service with its state in `home/service` and its socket in `home`, then the helper; returns once the
    service counts the helper as connected and none of its collectors is still starting."""
    for folder in (home / "service", home / "helper", home / "user" / "Downloads"):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    socket_path = home / "s.sock"  # short: AF_UNIX paths are limited to 108 bytes
    socket_path.unlink(missing_ok=True)
    env = split_env(home, display=display)
    service = _popen(
        home, "service", ["service", "--state-dir", str(home / "service"), "--socket", str(socket_path)], env
    )
    split = Split(home, socket_path, display, service)
    try:
        _poll(socket_path.exists, split, timeout=timeout, what="the service's socket")
        split.helper = _popen(
            home, "helper", ["agent", "--socket", str(socket_path), *(["--headless"] if headless else [])], env
        )

        def connected() -> bool:
            status = split.status()
            settled = all(state != "starting" for state in dict(status.get("collectors", {})).values())
            return int(status.get("helpers", 0)) >= 1 and settled

        _poll(connected, split, timeout=timeout, what="the helper to connect")
    except BaseException:
        split.stop()
        raise
    return split


def qt_mappings(pid: int) -> list[str]:
    """Qt and PySide6 files mapped into process `pid` (from /proc/<pid>/maps)."""
    found: set[str] = set()
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            path = line.split(maxsplit=5)[5].strip() if len(line.split(maxsplit=5)) == 6 else ""
            if "libQt6" in path or "/PySide6/" in path or "/shiboken6/" in path:
                found.add(path)
    return sorted(found)


def memory_by_owner(proc: psutil.Process, *, top: int = 8) -> list[tuple[str, int, int]]:
    """(owner, RSS, USS) of the process's mappings grouped by who owns them: a site-packages package, a shared
    library family, or anonymous memory (Python objects, malloc arenas, thread stacks); largest RSS first."""
    totals: dict[str, list[int]] = {}
    for m in proc.memory_maps(grouped=True):
        path = m.path
        if "site-packages/" in path:
            owner = path.split("site-packages/", 1)[1].split("/", 1)[0]
        elif path.startswith("[") or not path:
            owner = "anonymous (Python heap, malloc, stacks)"
        elif "libQt6" in path or "libicu" in path:
            owner = "Qt/ICU system libraries"
        elif "/lib-dynload/" in path or "libpython" in path:
            owner = "CPython (libpython, stdlib extensions)"
        else:
            owner = "other shared libraries and files"
        entry = totals.setdefault(owner, [0, 0])
        entry[0] += m.rss
        entry[1] += m.private_clean + m.private_dirty
    ranked = sorted(totals.items(), key=lambda item: -item[1][0])
    return [(owner, rss, uss) for owner, (rss, uss) in ranked[:top]]


# --- burst ------------------------------------------------------------------------------------------------------


def burst(split: Split, count: int, *, collectors: Mapping[str, str]) -> tuple[str, int]:
    """`count` new files in ~/Downloads and, with a display, `count` clipboard changes that each hold an e-mail
    address (each a clipboard event the helper records through the service). Returns what was done and how many
    events that should add to the outbox (downloads count only when the service watches this ~/Downloads: in
    unprotected mode; as root it watches the desk users' folders instead)."""
    downloads = split.home / "user" / "Downloads"
    for index in range(count):
        (downloads / f"report-{index}.txt").write_text(f"row {index}\n", encoding="utf-8")
    watched = collectors.get("downloads") == "running"
    done = f"{count} downloads" + ("" if watched else " (not watched here)")
    expected = count if watched else 0
    if split.display and shutil.which("xclip") and collectors.get("clipboard") == "running":
        env = split.env
        for index in range(count):
            text = f"please call back customer{index}@example.com"
            subprocess.run(
                ["xclip", "-selection", "clipboard"],
                input=text.encode(),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
        done += f" + {count} clipboard changes"
        expected += count
    return done, expected


def settle_queue(split: Split, *, before: int, expected: int, timeout: float = 60.0) -> int:
    """Waits until the outbox holds `expected` more events or stops growing for 5 s; returns how many it gained."""
    deadline = time.monotonic() + timeout
    last, still_since = before, time.monotonic()
    while time.monotonic() < deadline:
        depth = int(split.status().get("queue_depth") or 0)
        if depth - before >= expected:
            return depth - before
        if depth != last:
            last, still_since = depth, time.monotonic()
        elif time.monotonic() - still_since > 5.0:
            break
        _PAUSE.wait(1.0)
    return last - before


# --- import costs -----------------------------------------------------------------------------------------------

IMPORT_STEPS: tuple[tuple[str, str], ...] = (
    ("stdlib the agent uses (logging, sqlite3, json, ssl, email)", "import logging, sqlite3, json, ssl, email.message"),
    ("pydantic + the wire schema (policy_client.schema)", "import policy_client.schema"),
    ("requests", "import requests"),
    (
        "cryptography (AES-GCM, Ed25519)",
        "import cryptography.hazmat.primitives.ciphers.aead, cryptography.hazmat.primitives.asymmetric.ed25519",
    ),
    ("psutil", "import psutil"),
    (
        "rest of the service (runtime, IPC, USB/downloads/capture collectors)",
        "import agent_app.core.service, agent_app.core.runtime, collectors.usb, collectors.downloads, "
        "collectors.capture",
    ),
    ("Qt: QtCore + QtGui", "import PySide6.QtCore, PySide6.QtGui"),
    ("Qt: QtWidgets + a QApplication", "from PySide6.QtWidgets import QApplication\napp = QApplication(['probe'])"),
    ("tray UI (agent_app.ui.tray_app) + helper core", "import agent_app.ui.tray_app, agent_app.core.helper"),
)

_IMPORT_PROBE = """
import json, os, sys

def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

namespace = {}
costs = [("python interpreter", rss())]
for label, code in json.loads(sys.argv[1]):
    before = rss()
    exec(code, namespace)
    costs.append((label, rss() - before))
print(json.dumps(costs))
"""


def import_costs(env: dict[str, str]) -> list[tuple[str, int]]:
    """RSS added by each step of IMPORT_STEPS, in order, in one fresh interpreter (shared dependencies count for
    the first step that loads them)."""
    if "DISPLAY" not in env:
        env = {**env, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, json.dumps(IMPORT_STEPS)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=True,
    )
    return [(str(label), int(cost)) for label, cost in json.loads(done.stdout.strip().splitlines()[-1])]


# --- report -----------------------------------------------------------------------------------------------------


def phase_row(process: str, phase: str, window: Window) -> str:
    last = window.samples[-1]
    return (
        f"| {process} | {phase} | {last.rss / MB:.1f} | {window.peak_rss / MB:.1f} | {last.uss / MB:.1f} | "
        f"{window.cpu_percent:.2f} | {last.threads} | {last.files} |"
    )


def budget_row(process: str, window: Window) -> str:
    budget = BUDGETS[process]
    rss_ok = window.peak_rss / MB <= budget.rss_mb
    cpu_ok = window.cpu_percent <= budget.cpu_percent
    met = (
        "yes"
        if rss_ok and cpu_ok
        else "**no** (" + ", ".join(what for what, ok in (("memory", rss_ok), ("CPU", cpu_ok)) if not ok) + ")"
    )
    return (
        f"| {process} | {window.peak_rss / MB:.1f} | {window.samples[-1].uss / MB:.1f} | {window.cpu_percent:.2f} | "
        f"<= {budget.rss_mb:g} MB RSS, <= {budget.cpu_percent:g} % | {met} |"
    )


@contextlib.contextmanager
def display_for(headless: bool) -> Iterator[str | None]:
    """A private Xvfb display, or None for a headless run (or when Xvfb is missing)."""
    if headless or shutil.which("Xvfb") is None:
        yield None
        return
    sys.path.insert(0, str(REPO))
    from tests.xvfb import xvfb_display

    with xvfb_display() as display:
        yield display


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="idle sampling window")
    parser.add_argument("--burst", type=int, default=1000, help="downloads and clipboard changes after the idle window")
    parser.add_argument("--headless", action="store_true", help="no display: helper --headless, no clipboard")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dwfp-") as tmp, display_for(args.headless) as display:
        home = Path(tmp)
        split = start_split(home, display=display, headless=args.headless or display is None)
        try:
            status = split.status()
            procs = split.processes()
            idle = watch(procs, seconds=args.minutes * 60)
            owners = {name: memory_by_owner(proc) for name, proc in procs.items()}
            qt_in_service = qt_mappings(split.service.pid)
            probes = {name: split.probe(name) for name in procs}  # after the figures: the probe allocates a little
            busy: dict[str, Window] = {}
            burst_done, recorded = "none", 0
            if args.burst > 0:
                before = int(split.status().get("queue_depth") or 0)
                finished = threading.Event()
                sampler = threading.Thread(
                    target=lambda: busy.update(watch(procs, done=finished, every=0.5)), daemon=True
                )
                sampler.start()
                states = {**probes["service"]["collectors"], **probes.get("helper", {}).get("collectors", {})}
                burst_done, expected = burst(split, args.burst, collectors=states)
                recorded = settle_queue(split, before=before, expected=expected)
                finished.set()
                sampler.join(30)
        finally:
            split.stop()
        costs = import_costs(split_env(home, display=display))
    mode = status.get("mode", "?")
    print(
        f"service mode: {mode}; display: {display or 'none (headless)'}; "
        f"idle window: {args.minutes:g} min; burst: {burst_done}; events the outbox gained: {recorded}"
    )
    print()
    print("| process | idle RSS MB (peak) | USS MB | idle CPU % of one core | budget | met? |")
    print("|---|---|---|---|---|---|")
    for name in idle:
        print(budget_row(name, idle[name]))
    print()
    print("| process | phase | RSS MB | peak RSS MB | USS MB | CPU % of one core | threads | open files |")
    print("|---|---|---|---|---|---|---|---|")
    for name in idle:
        print(phase_row(name, f"idle {args.minutes:g} min", idle[name]))
        if name in busy:
            print(phase_row(name, "burst", busy[name]))
    print()
    print("| process | modules | heavy packages in sys.modules | PySide6 modules | collectors |")
    print("|---|---|---|---|---|")
    for name, body in probes.items():
        collectors = ", ".join(f"{k}={v}" for k, v in sorted(body["collectors"].items())) or "none"
        print(
            f"| {name} | {body['modules']} | {', '.join(body['heavy']) or 'none'} | "
            f"{', '.join(body['qt']) or 'none'} | {collectors} |"
        )
    print()
    print(
        f"Qt files mapped into the service: {len(qt_in_service)} {'(none)' if not qt_in_service else qt_in_service[:3]}"
    )
    for name, rows in owners.items():
        print()
        print(f"| {name}: memory by owner (idle) | RSS MB | USS MB |")
        print("|---|---|---|")
        for owner, rss, uss in rows:
            print(f"| {owner} | {rss / MB:.1f} | {uss / MB:.1f} |")
    print()
    print("| import step (cumulative, one fresh interpreter) | RSS added MB |")
    print("|---|---|")
    for label, cost in costs:
        print(f"| {label} | {cost / MB:.1f} |")


if __name__ == "__main__":
    main()
