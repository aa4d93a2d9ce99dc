"""Where DeskWarden's data files are: the default and demo policies, tray icons, autostart templates.

A source checkout has them at the top of the tree (assets/, installer/templates/); a PyInstaller bundle has them
under sys._MEIPASS; a wheel installs them as data files under <prefix>/share/deskwarden/ (pyproject.toml,
[tool.setuptools.data-files]), found through the installed distribution's file list. Pure functions; any thread.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

DISTRIBUTION = "deskwarden"
SHARE = "share/deskwarden"
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def assets_dir() -> Path:
    """DESKWARDEN_ASSETS, the bundle's assets/, the source tree's assets/, or the installed share/deskwarden/assets."""
    return _find("assets", env="DESKWARDEN_ASSETS", source=SOURCE_ROOT / "assets", probe="policy/default.json")


def templates_dir() -> Path:
    """DESKWARDEN_TEMPLATES, the bundle's templates/, installer/templates in the source tree, or the installed
    share/deskwarden/templates."""
    return _find("templates", env="DESKWARDEN_TEMPLATES", source=SOURCE_ROOT / "installer" / "templates", probe="linux")


def _find(name: str, *, env: str, source: Path, probe: str) -> Path:
    override = os.environ.get(env)
    if override:
        return Path(override)
    bundle = getattr(sys, "_MEIPASS", None)  # set by PyInstaller
    if bundle:
        return Path(bundle) / name
    if (source / probe).exists():
        return source
    return installed_dir(name) or source


@functools.cache
def installed_dir(name: str) -> Path | None:
    """share/deskwarden/<name> as the installed distribution records it (any scheme: venv, --user, --prefix)."""
    import importlib.metadata  # only here: it costs about 4 MB (email, zipfile, csv), and checkouts never need it

    try:
        distribution = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    marker = f"{SHARE}/{name}/"
    for file in distribution.files or ():
        text = file.as_posix()
        if marker in text:
            found = Path(str(distribution.locate_file(text[: text.index(marker) + len(marker)])))
            return found.resolve()
    fallback = Path(sys.prefix) / SHARE / name
    return fallback if fallback.is_dir() else None
