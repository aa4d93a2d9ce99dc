"""What the downloads collector reports about one finished file: metadata, SHA-256, policy flags
and a PII summary of its text, including the text inside ZIP archives, office files and PDFs (never its content).

Called on the downloads collector thread; reads are streamed and bounded (collectors/pii/containers.py).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from collectors.pii import DEFAULT_LIMIT_CHARS, confidence_at_least, mask_text, scan, scan_text
from collectors.pii.containers import CONTAINER_EXTENSIONS, PDF_EXTENSIONS, UNSCANNED_EXTENSIONS, walk
from collectors.pii.extract import is_scannable
from collectors.pii.masking import summarize_parts
from policy_client.schema import DownloadsControl, Severity

PARTIAL_SUFFIXES = (".crdownload", ".part", ".partial", ".tmp", ".download", ".opdownload", ".!ut")
"""Names browsers and download tools use while a file is still arriving (Chrome/Edge, Firefox,
generic, Safari, Opera, uTorrent); the file is reported once renamed to its final name."""
_CHUNK = 1 << 20
_INSPECTED = CONTAINER_EXTENSIONS | UNSCANNED_EXTENSIONS
"""Besides plain text: archives, office files and PDFs are opened; other archives are reported as unscanned."""


def is_partial_name(name: str) -> bool:
    lower = name.lower()
    return lower.startswith(".") or lower.endswith(PARTIAL_SUFFIXES) or lower.startswith("unconfirmed ")


def extension_of(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix


def matches_blocked(name: str, blocked: list[str]) -> bool:
    lower = name.lower()
    return any(lower.endswith(ext) for ext in blocked)


def sha256_file(path: Path, *, stop: threading.Event | None = None) -> str | None:
    """Streamed SHA-256; None when `stop` was set part way (the agent is shutting down)."""
    with path.open("rb") as fh:
        return sha256_stream(fh, stop=stop)


def sha256_stream(fh: IO[bytes], *, stop: threading.Event | None = None) -> str | None:
    """Streamed SHA-256 of an open file from its current position; None when `stop` was set part way."""
    digest = hashlib.sha256()
    while chunk := fh.read(_CHUNK):
        digest.update(chunk)
        if stop is not None and stop.is_set():
            return None
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Inspection:
    severity: Severity
    data: dict[str, Any]


def inspect_download(
    path: Path,
    *,
    folder: str,
    size: int,
    sha256: str,
    control: DownloadsControl,
    key: bytes,
    max_chars: int = DEFAULT_LIMIT_CHARS,
    stream: IO[bytes] | None = None,
) -> Inspection:
    """Flags, severity and PII summary of one finished file. With `stream` (open, seekable, at its start) the
    content is read from there, never by opening `path` again."""
    name = path.name
    blocked = matches_blocked(name, control.blocked_extensions)
    oversize = control.max_size_mb is not None and size > control.max_size_mb * 1024 * 1024
    findings: list[dict[str, Any]] = []
    truncated = False
    content: dict[str, Any] = {}
    suffix = path.suffix.lower()
    if control.scan_content and (is_scannable(path) or suffix in _INSPECTED):
        seen = walk(path, max_chars=max_chars, stream=stream)
        parts = []
        for part in seen.parts:
            result = scan(part.text, limit_chars=max_chars)
            parts.append((result.findings, part.text))
            truncated = truncated or result.truncated
        findings = summarize_parts(parts, key)
        truncated = truncated or seen.truncated
        if suffix in CONTAINER_EXTENSIONS and suffix not in PDF_EXTENSIONS:
            content["members_scanned"] = sum(1 for p in seen.parts if p.member)
        if seen.encrypted:
            # Member names can hold personal data too ("card 4111....csv"): only the count leaves the device.
            content["encrypted"] = True
            content["encrypted_members"] = len(seen.encrypted)
        if seen.unscanned:
            content["unscanned"] = dict(sorted(seen.unscanned.items()))
    sensitive = any(confidence_at_least(str(f.get("confidence")), control.min_confidence) for f in findings)
    if sensitive:
        severity = Severity.high
    elif blocked or oversize or content.get("encrypted"):
        severity = Severity.medium
    else:
        severity = Severity.info
    data: dict[str, Any] = {
        # A file name can itself hold a card or Aadhaar number ("statement 4111....pdf").
        "name": mask_text(name, scan_text(name)),
        "extension": extension_of(name),
        "size_bytes": size,
        "sha256": sha256,
        "folder": folder,
        "blocked_extension": blocked,
        "oversize": oversize,
        "findings": findings,
        "scan_truncated": truncated,
        **content,
    }
    return Inspection(severity=severity, data=data)
