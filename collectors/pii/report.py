"""`deskwarden scan [FILE|-] [--json]`: run the PII detectors on a file or standard input and format
the findings (type, masked sample, offsets) so admins can try what the agent would flag.

Called on the CLI's main thread. Output never contains a raw value, only masked forms.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from collectors.pii.detectors import ALL, DEFAULT_LIMIT_CHARS, Finding, scan
from collectors.pii.extract import OFFICE_EXTENSIONS, extract_text, read_text_stream

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2


@dataclass(frozen=True, slots=True)
class ScanReport:
    source: str
    """The path as given, or "-" for standard input."""
    source_kind: str
    """"text", "docx" or "xlsx"."""
    scanned_chars: int
    truncated: bool
    findings: list[Finding]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.type] = out.get(f.type, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "source_kind": self.source_kind,
            "scanned_chars": self.scanned_chars,
            "truncated": self.truncated,
            "counts": self.counts(),
            "findings": [{"type": f.type, "masked": f.masked, "start": f.start, "end": f.end} for f in self.findings],
        }


def scan_file_or_stdin(
    path_or_dash: str,
    *,
    detectors: Iterable[str] = ALL,
    limit_chars: int = DEFAULT_LIMIT_CHARS,
    stdin: IO[bytes] | None = None,
) -> ScanReport:
    """Scan a file (text, docx or xlsx; other types are read as UTF-8 text) or "-" for standard input.

    Raises OSError when the file cannot be read and ValueError for an unknown detector name or a
    docx/xlsx that is not a valid document. Offsets are character offsets into the extracted text.
    """
    if path_or_dash == "-":
        extracted = read_text_stream(stdin if stdin is not None else sys.stdin.buffer, max_chars=limit_chars)
    else:
        path = Path(path_or_dash)
        if path.suffix.lower() in OFFICE_EXTENSIONS:
            if not path.is_file():
                raise FileNotFoundError(path_or_dash)
            office = extract_text(path, max_chars=limit_chars)
            if office is None:
                raise ValueError(f"{path_or_dash} is not a readable {path.suffix.lower()} document")
            extracted = office
        else:
            with path.open("rb") as fh:
                extracted = read_text_stream(fh, max_chars=limit_chars)
    result = scan(extracted.text, detectors=detectors, limit_chars=limit_chars)
    return ScanReport(
        source=path_or_dash,
        source_kind=extracted.source,
        scanned_chars=result.scanned_chars,
        truncated=extracted.truncated or result.truncated,
        findings=result.findings,
    )


def format_json(report: ScanReport) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)


def format_table(report: ScanReport) -> str:
    """A plain text table: one line per finding, then a per-type summary."""
    lines = [f"source: {report.source} ({report.source_kind}, {report.scanned_chars} characters scanned)"]
    if report.truncated:
        lines.append(f"note: only the first {report.scanned_chars} characters were scanned (truncated)")
    if not report.findings:
        lines.append("no findings")
        return "\n".join(lines) + "\n"
    width = max(len(f.masked) for f in report.findings)
    width = max(width, len("masked"))
    lines.append(f"{'type':<8}  {'masked':<{width}}  {'start':>9}  {'end':>9}")
    lines.append(f"{'-' * 8}  {'-' * width}  {'-' * 9}  {'-' * 9}")
    lines.extend(f"{f.type:<8}  {f.masked:<{width}}  {f.start:>9}  {f.end:>9}" for f in report.findings)
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
