"""Bundle size and cold start to "protected" (status.json shows every collector started).

Usage: python bench/installer_startup.py --bundle dist/deskwarden [--runs 5] [--tray]
Prints a markdown table. `--tray` runs the tray (needs DISPLAY, e.g. under Xvfb); default is --headless.
Each run uses a fresh DESKWARDEN_HOME, so it measures a first start (keys created, outbox created).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

STARTED = {"running", "unavailable", "off", "failed"}
DEADLINE_S = 30.0


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def tarball_size(path: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "bundle.tar.gz"
        with tarfile.open(target, "w:gz") as tar:
            tar.add(path, arcname=path.name)
        return target.stat().st_size


def protected(status_file: Path) -> dict[str, str] | None:
    try:
        data = json.loads(status_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    collectors: dict[str, str] = data.get("collectors") or {}
    if collectors and all(state in STARTED for state in collectors.values()):
        return collectors
    return None


def cold_start(argv: list[str], *, tray: bool) -> tuple[float, dict[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "state"
        env = {
            **os.environ,
            "DESKWARDEN_HOME": str(home),
            "HOME": tmp,
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        }
        args = [*argv, "agent"] + ([] if tray else ["--headless"])
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            status_file = home / "status.json"
            while time.perf_counter() - start < DEADLINE_S:
                states = protected(status_file)
                if states is not None:
                    return time.perf_counter() - start, states
                if proc.poll() is not None:
                    raise RuntimeError(f"agent exited with {proc.returncode} before it was protected")
                time.sleep(0.005)  # polling a file written by another process; this is a benchmark, not a test
            raise RuntimeError("agent not protected within 30 s")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, required=True, help="the bundle folder (dist/deskwarden)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tray", action="store_true")
    args = parser.parse_args()
    exe = args.bundle / ("deskwarden.exe" if sys.platform == "win32" else "deskwarden")
    internal = args.bundle / "_internal"
    qt = internal / "PySide6"
    print("| what | value |")
    print("|---|---|")
    print(f"| bundle folder | {tree_size(args.bundle) / 2**20:.1f} MiB |")
    print(f"| of which Qt (PySide6) | {tree_size(qt) / 2**20:.1f} MiB |")
    print(f"| bundle as .tar.gz | {tarball_size(args.bundle) / 2**20:.1f} MiB |")
    mode = "tray" if args.tray else "headless"
    for label, argv in (("bundle", [str(exe)]), ("source (venv)", [sys.executable, "-m", "agent_app"])):
        times: list[float] = []
        states: dict[str, str] = {}
        for _ in range(args.runs):
            seconds, states = cold_start(argv, tray=args.tray)
            times.append(seconds)
        print(
            f"| cold start to protected, {label}, {mode} (median of {args.runs}) | {statistics.median(times):.2f} s "
            f"(min {min(times):.2f}, max {max(times):.2f}) |"
        )
    print(f"| collectors at protected | {', '.join(f'{k}={v}' for k, v in sorted(states.items()))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
