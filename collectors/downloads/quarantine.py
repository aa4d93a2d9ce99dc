"""The agent's quarantine folder for downloads: move in (mode 0600 in a 0700 folder, with a JSON
sidecar recording where the file came from) and restore for admins.

Called on the pipeline thread (`quarantine_file`) and from admin tooling (`restore`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import platformdirs

SIDECAR_SUFFIX = ".json"
DIR_MODE = 0o700
FILE_MODE = 0o600


def default_quarantine_dir() -> Path:
    """<agent state dir>/quarantine, honouring DESKWARDEN_HOME like agent_app.core.paths (which
    collectors must not import); the agent normally passes its own path explicitly."""
    home = os.environ.get("DESKWARDEN_HOME")
    base = Path(home).expanduser() if home else Path(platformdirs.user_data_dir("DeskWarden", "DeskWarden"))
    return base / "quarantine"


def ensure_quarantine_dir(quarantine_dir: Path) -> Path:
    quarantine_dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if stat.S_IMODE(quarantine_dir.stat().st_mode) != DIR_MODE:
        quarantine_dir.chmod(DIR_MODE)
    return quarantine_dir


def _new_id(now: datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(6)}"


def quarantine_file(path: Path, quarantine_dir: Path, *, extra: dict[str, Any] | None = None) -> str:
    """Move `path` into the quarantine folder and return its quarantine id. Raises OSError."""
    ensure_quarantine_dir(quarantine_dir)
    original = path.absolute()
    mode = stat.S_IMODE(original.stat().st_mode)
    now = datetime.now(UTC)
    qid = _new_id(now)
    dest = quarantine_dir / qid
    sidecar = quarantine_dir / (qid + SIDECAR_SUFFIX)
    record = {
        "quarantine_id": qid,
        "original_path": str(original),
        "original_mode": mode,
        "quarantined_at": now.isoformat(),
        **(extra or {}),
    }
    fd = os.open(sidecar, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2)
    try:
        # rename within a filesystem; copy + delete across filesystems (Downloads on another disk)
        shutil.move(str(original), str(dest))
        dest.chmod(FILE_MODE)
    except OSError:
        sidecar.unlink(missing_ok=True)
        raise
    return qid


def read_record(quarantined_name: str, *, quarantine_dir: Path) -> dict[str, Any]:
    if not quarantined_name or "/" in quarantined_name or "\\" in quarantined_name or quarantined_name.startswith("."):
        raise ValueError(f"not a quarantine id: {quarantined_name!r}")
    data: dict[str, Any] = json.loads((quarantine_dir / (quarantined_name + SIDECAR_SUFFIX)).read_text("utf-8"))
    return data


def restore(quarantined_name: str, *, quarantine_dir: Path) -> Path:
    """Move a quarantined file back to where it came from (or next to it, as "name (restored).ext",
    when that name is taken now) with its original permissions; returns the restored path."""
    record = read_record(quarantined_name, quarantine_dir=quarantine_dir)
    original = Path(record["original_path"])
    target = original
    n = 1
    while target.exists():
        label = "restored" if n == 1 else f"restored {n}"
        target = original.with_name(f"{original.stem} ({label}){original.suffix}")
        n += 1
    original.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(quarantine_dir / quarantined_name), str(target))
    target.chmod(int(record.get("original_mode", 0o644)) & 0o777)
    (quarantine_dir / (quarantined_name + SIDECAR_SUFFIX)).unlink(missing_ok=True)
    return target
