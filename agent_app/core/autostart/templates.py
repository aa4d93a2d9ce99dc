"""Loads and fills the autostart templates (installer/templates in the source tree, templates/ in the bundle).

Called on the main thread by the autostart adapters.
"""

from __future__ import annotations

import os
import string
import sys
from pathlib import Path


def templates_dir() -> Path:
    """DESKWARDEN_TEMPLATES, the PyInstaller bundle's templates/, or the source tree's installer/templates."""
    override = os.environ.get("DESKWARDEN_TEMPLATES")
    if override:
        return Path(override)
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "templates"
    return Path(__file__).resolve().parents[3] / "installer" / "templates"


def render(relative: str, values: dict[str, str]) -> str:
    """Fill `${name}` placeholders; a placeholder without a value is an error, not an empty string."""
    path = templates_dir() / relative
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuntimeError(f"autostart template {path} is missing; reinstall DeskWarden") from None
    try:
        return string.Template(text).substitute(values)
    except (KeyError, ValueError) as exc:
        raise RuntimeError(f"autostart template {path} is malformed: {exc}") from exc
