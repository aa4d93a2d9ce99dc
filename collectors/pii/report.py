"""`deskwarden scan [FILE|-] [--json]`: run the PII detectors on a file, an archive or standard input and format
the findings (type, start, end, confidence, masked value) so admins can try what the agent would flag.

Called on the CLI's main thread. Output never contains a raw value, only masked forms.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from collectors.pii.containers import is_container, walk
from collectors.pii.detectors import ALL, DEFAULT_LIMIT_CHARS, scan
from collectors.pii.extract import read_text_stream
from collectors.pii.findings import Finding

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2


@dataclass(frozen=True, slots=True)
class ScanReport:
    source: str
    """The path as given, or "-" for standard input."""
    source_kind: str
    """"text", "docx", "xlsx", "pptx", "pdf" or "zip"."""
    scanned_chars: int
    truncated: bool
    findings: list[Finding]
    members: list[str] = field(default_factory=list)
    """Per finding, the archive member it was found in ("" for the file itself); offsets are into that member's
    text. Empty when nothing came from an archive."""
    encrypted: list[str] = field(default_factory=list)
    unscanned: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.type] = out.get(f.type, 0) + 1
        return out

    def member_of(self, index: int) -> str:
        return self.members[index] if index < len(self.members) else ""

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "source": self.source,
            "source_kind": self.source_kind,
            "scanned_chars": self.scanned_chars,
            "truncated": self.truncated,
            "counts": self.counts(),
            "findings": [
                {
                    "type": f.type,
                    "start": f.start,
                    "end": f.end,
                    "confidence": f.confidence,
                    "masked": f.masked,
                    **({"member": self.member_of(i)} if self.member_of(i) else {}),
                }
                for i, f in enumerate(self.findings)
            ],
        }
        if self.encrypted:
            doc["encrypted"] = self.encrypted
        if self.unscanned:
            doc["unscanned"] = self.unscanned
        return doc


def scan_file_or_stdin(
    path_or_dash: str,
    *,
    detectors: Iterable[str] = ALL,
    limit_chars: int = DEFAULT_LIMIT_CHARS,
    stdin: IO[bytes] | None = None,
) -> ScanReport:
    """Scan a file (text; docx, xlsx, pptx; PDF text; a ZIP archive, members nested to a bounded depth; other types are
    read as UTF-8 text) or "-" for standard input.

    Raises OSError when the file cannot be read and ValueError for an unknown detector name or an office file or
    archive that cannot be opened. Offsets are character offsets into the extracted text (of the member).
    """
    if path_or_dash != "-" and is_container(path_or_dash):
        return _scan_container(Path(path_or_dash), detectors=detectors, limit_chars=limit_chars)
    if path_or_dash == "-":
        extracted = read_text_stream(stdin if stdin is not None else sys.stdin.buffer, max_chars=limit_chars)
    else:
        with Path(path_or_dash).open("rb") as fh:
            extracted = read_text_stream(fh, max_chars=limit_chars)
    result = scan(extracted.text, detectors=detectors, limit_chars=limit_chars)
    return ScanReport(
        source=path_or_dash,
        source_kind=extracted.source,
        scanned_chars=result.scanned_chars,
        truncated=extracted.truncated or result.truncated,
        findings=result.findings,
    )


def _scan_container(path: Path, *, detectors: Iterable[str], limit_chars: int) -> ScanReport:
    if not path.is_file():
        raise FileNotFoundError(str(path))
    wanted = list(detectors)
    seen = walk(path, max_chars=limit_chars)
    if not seen.parts and not seen.encrypted and seen.unscanned.get("unreadable"):
        raise ValueError(f"{path} is not a readable {path.suffix.lower()} file")
    findings: list[Finding] = []
    members: list[str] = []
    scanned = 0
    truncated = seen.truncated
    for part in seen.parts:
        result = scan(part.text, detectors=wanted, limit_chars=limit_chars)
        findings.extend(result.findings)
        members.extend([part.member] * len(result.findings))
        scanned += result.scanned_chars
        truncated = truncated or result.truncated
    kind = path.suffix.lower().lstrip(".")
    source_kind = seen.parts[0].source if len(seen.parts) == 1 and not seen.parts[0].member else kind
    return ScanReport(
        source=str(path),
        source_kind=source_kind,
        scanned_chars=scanned,
        truncated=truncated,
        findings=findings,
        members=members if any(members) else [],
        encrypted=seen.encrypted,
        unscanned=seen.unscanned,
    )


def format_json(report: ScanReport) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)


def format_table(report: ScanReport) -> str:
    """A plain text table: one line per finding, then a per-type summary."""
    lines = [f"source: {report.source} ({report.source_kind}, {report.scanned_chars} characters scanned)"]
    if report.truncated:
        lines.append(f"note: only the first {report.scanned_chars} characters were scanned (truncated)")
    if report.encrypted:
        lines.append(f"note: {len(report.encrypted)} encrypted item(s) could not be read")
    if report.unscanned:
        lines.append("note: not scanned: " + ", ".join(f"{k} {v}" for k, v in report.unscanned.items()))
    if not report.findings:
        lines.append("no findings")
        return "\n".join(lines) + "\n"
    width = max(len("masked"), *(len(f.masked) for f in report.findings))
    member = any(report.members)
    lines.append(
        f"{'type':<8}  {'confidence':<10}  {'masked':<{width}}  {'start':>9}  {'end':>9}"
        + ("  member" if member else "")
    )
    lines.append(f"{'-' * 8}  {'-' * 10}  {'-' * width}  {'-' * 9}  {'-' * 9}" + ("  ------" if member else ""))
    lines.extend(
        f"{f.type:<8}  {f.confidence:<10}  {f.masked:<{width}}  {f.start:>9}  {f.end:>9}"
        + (f"  {report.member_of(i)}" if member else "")
        for i, f in enumerate(report.findings)
    )
    summary = ", ".join(f"{name} {count}" for name, count in report.counts().items())
    lines.append(f"{len(report.findings)} finding(s): {summary}")
    return "\n".join(lines) + "\n"


def run_scan(
    path_or_dash: str,
    *,
    as_json: bool = False,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    stdin: IO[bytes] | None = None,
) -> int:
    """What the CLI sub-command calls: prints the report; exit code 0 = nothing found, 1 = findings, 2 = error."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        report = scan_file_or_stdin(path_or_dash, stdin=stdin)
    except (OSError, ValueError) as exc:
        err.write(f"deskwarden scan: {path_or_dash}: {exc.__class__.__name__}: {exc}\n")
        return EXIT_ERROR
    out.write(format_json(report) + "\n" if as_json else format_table(report))
    return EXIT_FINDINGS if report.findings else EXIT_CLEAN
