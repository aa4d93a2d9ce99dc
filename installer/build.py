"""`python -m installer.build`: build the agent bundle for the current OS with PyInstaller into dist/.

Runs on the build machine's main thread; prints the bundle path, its size and the version.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from installer.bundle import NAME, ROOT, version

SPEC = ROOT / "installer" / "deskwarden.spec"


def bundle_dir(dist: Path) -> Path:
    """The folder that holds the executable (inside DeskWarden.app on macOS)."""
    if sys.platform == "darwin":
        return dist / "DeskWarden.app" / "Contents" / "MacOS"
    return dist / NAME


def executable(dist: Path, *, cli: bool = False) -> Path:
    name = f"{NAME}-cli" if cli and sys.platform in ("win32", "darwin") else NAME
    return bundle_dir(dist) / (name + (".exe" if sys.platform == "win32" else ""))


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def build(*, dist: Path, work: Path, clean: bool = False, quiet: bool = True) -> Path:
    """Run PyInstaller on the spec; returns the bundle's executable."""
    import PyInstaller.__main__

    args = [str(SPEC), "--noconfirm", "--distpath", str(dist), "--workpath", str(work)]
    if clean:
        args.append("--clean")
    if quiet:
        args += ["--log-level", "WARN"]
    for stale in (dist / NAME, dist / "DeskWarden.app"):  # so a failed build cannot pass for a fresh one
        shutil.rmtree(stale, ignore_errors=True)
    PyInstaller.__main__.run(args)
    exe = executable(dist)
    if not exe.exists():
        raise RuntimeError(f"PyInstaller finished but {exe} is missing")
    return exe


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m installer.build", description=__doc__)
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--work", type=Path, default=ROOT / "build", help="PyInstaller work folder (default: build/)")
    parser.add_argument("--clean", action="store_true", help="drop PyInstaller's cache first")
    parser.add_argument("--verbose", action="store_true", help="PyInstaller's full log")
    args = parser.parse_args(argv)
    exe = build(dist=args.dist, work=args.work, clean=args.clean, quiet=not args.verbose)
    folder = args.dist / NAME
    print(f"built DeskWarden {version()} for {sys.platform}: {exe}")
    print(f"bundle size: {tree_size(folder) / 2**20:.1f} MiB in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
