"""Text inside containers for the PII scan: ZIP archives (nested to a bounded depth), the office formats that
are ZIP underneath, and PDF text (collectors/pii/pdf.py), with hard caps on members, bytes, compression ratio, PDF
pages and PDF time so a zip bomb or a hostile PDF costs next to nothing.

Called on the downloads collector thread and by `deskwarden scan`. Never extracts to disk, never trusts the sizes
an archive declares: every read is bounded, and a nested archive is read into memory only up to its cap.
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException

from collectors.pii.detectors import DEFAULT_LIMIT_CHARS
from collectors.pii.extract import OFFICE_EXTENSIONS, TEXT_EXTENSIONS, ExtractedText, extract_text, read_text_stream
from collectors.pii.pdf import MAX_PDF_BYTES, PdfBudget, extract_pdf

log = logging.getLogger(__name__)

ARCHIVE_EXTENSIONS = frozenset({".zip"})
PDF_EXTENSIONS = frozenset({".pdf"})
CONTAINER_EXTENSIONS = ARCHIVE_EXTENSIONS | OFFICE_EXTENSIONS | PDF_EXTENSIONS
"""Files `walk` opens rather than reads as text (a PDF nests nothing, but its text is extracted the same way)."""
UNSCANNED_EXTENSIONS = frozenset({".7z", ".rar", ".tar", ".gz", ".tgz", ".bz2", ".xz"})
"""Formats that may hold text but are not opened (no non-ZIP archive reader): reported as unscanned."""
MAX_DEPTH = 3
"""Archives and office files nested up to this many levels inside the download are opened; deeper ones are
reported ("depth"), not opened."""
MAX_MEMBERS = 2000
"""Entries looked at over the whole walk (every nesting level together)."""
MAX_TOTAL_BYTES = 64 * 1024 * 1024
"""Decompressed bytes read over the whole walk."""
MAX_NESTED_BYTES = 16 * 1024 * 1024
"""A nested archive or office file is read into memory only up to this size."""
MAX_RATIO = 100
"""A member claiming to expand more than this many times (over 1 MiB) is a likely bomb and is not read."""
_RATIO_FLOOR = 1024 * 1024
_PDF_CUTS = ("pdf_pages", "pdf_time")
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
"""Password-protected docx/xlsx/pptx are OLE compound files holding the encrypted package, not ZIP files."""


@dataclass(frozen=True, slots=True)
class Part:
    """The text of one file: the download itself or a member of it ("outer.zip/inner.zip/data.csv")."""

    member: str
    text: str
    truncated: bool
    source: str


@dataclass
class Walk:
    """What a walk saw: the texts, plus what it could not open and why (reason -> count)."""

    parts: list[Part] = field(default_factory=list)
    encrypted: list[str] = field(default_factory=list)
    """Members (or "" for the file itself) that are encrypted: their content was not read."""
    unscanned: dict[str, int] = field(default_factory=dict)
    members: int = 0
    bytes_read: int = 0
    chars_left: int = DEFAULT_LIMIT_CHARS
    pdf: PdfBudget = field(default_factory=PdfBudget)

    def skip(self, reason: str) -> None:
        self.unscanned[reason] = self.unscanned.get(reason, 0) + 1

    @property
    def truncated(self) -> bool:
        return any(p.truncated for p in self.parts) or any(self.unscanned.get(k) for k in ("budget", *_PDF_CUTS))


def is_container(path: Path | str) -> bool:
    return PurePosixPath(str(path)).suffix.lower() in CONTAINER_EXTENSIONS


def walk(
    path: Path,
    *,
    max_chars: int = DEFAULT_LIMIT_CHARS,
    stream: IO[bytes] | None = None,
    max_depth: int = MAX_DEPTH,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> Walk:
    """Every text `path` holds, itself or inside archives, within `max_chars` characters in all. With `stream`
    (open, seekable, at its start) the content is read from there and `path` only names the type."""
    result = Walk(chars_left=max_chars)
    suffix = path.suffix.lower()
    try:
        if stream is not None:
            _walk_file(result, "", suffix, stream, depth=0, max_depth=max_depth, max_total=max_total_bytes)
        else:
            with path.open("rb") as fh:
                _walk_file(result, "", suffix, fh, depth=0, max_depth=max_depth, max_total=max_total_bytes)
    except OSError as exc:
        log.info("could not read a %s file: %s", suffix, type(exc).__name__)
        result.skip("unreadable")
    return result


def _walk_file(
    result: Walk, member: str, suffix: str, fh: IO[bytes], *, depth: int, max_depth: int, max_total: int
) -> None:
    if result.chars_left <= 0:
        result.skip("budget")
        return
    if suffix in ARCHIVE_EXTENSIONS or suffix in OFFICE_EXTENSIONS:
        head = fh.read(8)
        fh.seek(0)
        if head == _OLE_MAGIC and suffix in OFFICE_EXTENSIONS:
            result.encrypted.append(member)
            return
    if suffix in ARCHIVE_EXTENSIONS:
        _walk_zip(result, member, fh, depth=depth, max_depth=max_depth, max_total=max_total)
    elif suffix in PDF_EXTENSIONS:
        _walk_pdf(result, member, fh)
    elif suffix in OFFICE_EXTENSIONS or suffix in TEXT_EXTENSIONS:
        extracted = (
            read_text_stream(fh, max_chars=result.chars_left)
            if suffix in TEXT_EXTENSIONS
            else extract_text(Path("x" + suffix), max_chars=result.chars_left, stream=fh)
        )
        _add(result, member, extracted)
    elif suffix in UNSCANNED_EXTENSIONS:
        result.skip(suffix.lstrip("."))


def _walk_pdf(result: Walk, member: str, fh: IO[bytes]) -> None:
    if result.pdf.pages <= 0 or result.pdf.seconds <= 0:
        result.skip("pdf_pages" if result.pdf.pages <= 0 else "pdf_time")
        return
    fh.seek(0, 2)
    too_big = fh.tell() > MAX_PDF_BYTES
    fh.seek(0)
    if too_big:
        result.skip("size")
        return
    pdf = extract_pdf(fh, max_chars=result.chars_left, budget=result.pdf)
    if pdf is None:
        result.skip("unreadable")
        return
    if pdf.encrypted:
        result.encrypted.append(member)
        return
    if pdf.cut_by:
        result.skip(pdf.cut_by)
    _add(result, member, ExtractedText(pdf.text, pdf.truncated, "pdf"))


def _add(result: Walk, member: str, extracted: ExtractedText | None) -> None:
    if extracted is None:
        result.skip("unreadable")
        return
    result.parts.append(Part(member, extracted.text, extracted.truncated, extracted.source))
    result.chars_left -= len(extracted.text)


def _walk_zip(result: Walk, member: str, fh: IO[bytes], *, depth: int, max_depth: int, max_total: int) -> None:
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError, ValueError):
        result.skip("unreadable")
        return
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            result.members += 1
            if result.members > MAX_MEMBERS:
                result.skip("members")
                return
            inner = f"{member}/{info.filename}" if member else info.filename
            _walk_member(result, zf, info, inner, depth=depth, max_depth=max_depth, max_total=max_total)


def _walk_member(
    result: Walk, zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, *, depth: int, max_depth: int, max_total: int
) -> None:
    suffix = PurePosixPath(info.filename).suffix.lower()
    if info.flag_bits & 0x1 or info.compress_type == 99:  # traditional ZipCrypto, or WinZip AES (method 99)
        result.encrypted.append(name)
        return
    wanted = suffix in TEXT_EXTENSIONS or suffix in CONTAINER_EXTENSIONS
    if not wanted:
        if suffix in UNSCANNED_EXTENSIONS:
            result.skip(suffix.lstrip("."))
        return
    if info.file_size > _RATIO_FLOOR and info.file_size > MAX_RATIO * max(1, info.compress_size):
        result.skip("ratio")
        return
    if suffix in CONTAINER_EXTENSIONS and suffix not in PDF_EXTENSIONS and depth + 1 > max_depth:
        result.skip("depth")
        return
    left = max_total - result.bytes_read
    if left <= 0 or result.chars_left <= 0:
        result.skip("budget")
        return
    try:
        with zf.open(info) as raw:
            if suffix in TEXT_EXTENSIONS:
                # Text is decoded as it is read, so at most 4 bytes per wanted character leave the decompressor.
                limit = min(left, result.chars_left * 4 + 1)
                counted = _CountingReader(raw, limit)
                _add(result, name, read_text_stream(counted, max_chars=result.chars_left))
                result.bytes_read += counted.count
                if limit == left and counted.count == limit:
                    result.skip("budget")  # cut by the byte budget of the whole walk, not by the character limit
                return
            cap = min(left, MAX_NESTED_BYTES)
            data = raw.read(cap + 1)
            result.bytes_read += len(data)
            if len(data) > cap:
                result.skip("size")
                return
        _walk_file(result, name, suffix, io.BytesIO(data), depth=depth + 1, max_depth=max_depth, max_total=max_total)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError, ParseError) as exc:
        # NotImplementedError: a compression method zipfile lacks (Deflate64, PPMd); RuntimeError: encrypted.
        log.info("could not read an archive member: %s", type(exc).__name__)
        result.skip("unreadable")
    except DefusedXmlException:
        result.skip("unreadable")


class _CountingReader:
    """Reads at most `limit` bytes from `inner` and counts them."""

    def __init__(self, inner: IO[bytes], limit: int) -> None:
        self._inner = inner
        self._left = limit
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if size < 0 else min(size, self._left)
        data = self._inner.read(want)
        self._left -= len(data)
        self.count += len(data)
        return data
