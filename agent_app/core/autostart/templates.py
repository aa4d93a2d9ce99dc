"""Loads and fills the autostart templates (installer/templates in the source tree, templates/ in a bundle or wheel).

Called on the main thread by the autostart adapters.
"""

from __future__ import annotations

import string
from pathlib import Path

from policy_client import resources


def templates_dir() -> Path:
    """DESKWARDEN_TEMPLATES, the PyInstaller bundle's templates/, the source tree's installer/templates, or a
    wheel's installed data files (see `policy_client.resources`)."""
    return resources.templates_dir()


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
