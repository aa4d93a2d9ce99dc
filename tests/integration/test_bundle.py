"""The PyInstaller bundle runs without the source tree: `--version`, then a headless self-test that starts every
collector, records an event and exits. The build is cached between runs, keyed by a hash of what goes into it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from agent_app import __version__

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("agent_app", "collectors", "policy_client", "installer", "assets")
BUILD_TIMEOUT_S = 600
RUN_TIMEOUT_S = 60
NOT_IN_BUNDLE = ("central", "fastapi", "starlette", "uvicorn", "sqlalchemy", "psycopg", "tkinter", "unittest", "pytest")


def _source_key() -> str:
    import PyInstaller

    digest = hashlib.sha256(f"{sys.version}|{PyInstaller.__version__}|{sys.platform}".encode())
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".log"):
                digest.update(str(path.relative_to(ROOT)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def bundle() -> Path:
    """The bundle folder: from the cache when the sources are unchanged, else built (about 40 s on 2 cores)."""
    cache = Path(os.environ.get("DESKWARDEN_BUNDLE_CACHE", Path(tempfile.gettempdir()) / "deskwarden-bundle-cache"))
    key = _source_key()
    ready = cache / key
    if not (ready / "dist" / "deskwarden").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=cache))
        subprocess.run(
            [sys.executable, "-m", "installer.build", "--dist", str(staging / "dist"), "--work", str(staging / "work")],
            cwd=ROOT,
            check=True,
            timeout=BUILD_TIMEOUT_S,
        )
        (staging / "PYZ.toc").write_bytes((staging / "work" / "deskwarden" / "PYZ-00.toc").read_bytes())
        shutil.rmtree(staging / "work")
        try:
            staging.rename(ready)  # atomic: a parallel session either wins or uses the winner's build
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        for old in cache.iterdir():  # keep one build per cache, so /tmp does not fill up
            if old.name != key and not old.name.startswith(key):
                with contextlib.suppress(OSError):
                    shutil.rmtree(old)
    return ready


def _env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "user"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "DESKWARDEN_HOME": str(tmp_path / "state"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "QT_QPA_PLATFORM": "offscreen",
        "LANG": "C.UTF-8",
    }


def _run(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    cwd = tmp_path / "cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        argv, cwd=cwd, env=_env(tmp_path), capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )


def _exe(bundle: Path) -> Path:
    exe = bundle / "dist" / "deskwarden" / "deskwarden"
    assert exe.is_file(), f"no executable in {bundle}"
    return exe


def test_bundle_prints_its_version(bundle: Path, tmp_path: Path) -> None:
    done = _run([str(_exe(bundle)), "--version"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"deskwarden {__version__}"


def test_bundle_selftest_matches_the_source_tree(bundle: Path, tmp_path: Path) -> None:
    frozen = _run([str(_exe(bundle)), "selftest"], tmp_path / "frozen")
    source = _run([sys.executable, "-m", "agent_app", "selftest"], tmp_path / "source")
    report, expected = json.loads(frozen.stdout), json.loads(source.stdout)

    assert report["frozen"] is True
    assert report["version"] == __version__
    assert report["event_recorded"] is True, frozen.stderr[-3000:]
    assert report["failed"] == [], frozen.stderr[-3000:]
    assert report["threads_left"] == []
    assert report["default_policy"] is not None
    assert str(bundle) in report["default_policy"]  # assets come from the bundle, not the source tree
    # Every collector that loads from the source tree loads from the bundle (hidden imports are complete).
    assert report["missing"] == expected["missing"], frozen.stderr[-3000:]
    assert set(report["collectors"]) == set(expected["collectors"])
    assert frozen.returncode == source.returncode
    assert not list((tmp_path / "frozen" / "state").glob("selftest-*")), "the self-test left its scratch dir"


def test_bundle_leaves_out_the_endpoint_and_dev_tools(bundle: Path) -> None:
    toc = (bundle / "PYZ.toc").read_text(encoding="utf-8")
    for name in NOT_IN_BUNDLE:
        assert f"('{name}'" not in toc, f"{name} was bundled"
        assert f"('{name}." not in toc, f"{name} was bundled"
    assert "('collectors.usb.windows'" in toc  # every OS backend of a registered collector is included
    assert (bundle / "dist" / "deskwarden" / "_internal" / "templates" / "linux" / "deskwarden.service").is_file()
