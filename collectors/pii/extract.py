"""Bounded text extraction from downloaded files for the PII scan (plain text, docx, xlsx, pptx).

Called on the downloads collector thread and by `deskwarden scan`. Reads at most `max_chars`
characters of text and never loads a large file (or a zip member) whole.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from collectors.pii.detectors import DEFAULT_LIMIT_CHARS

log = logging.getLogger(__name__)

TEXT_EXTENSIONS = frozenset({".txt", ".csv", ".tsv", ".json", ".xml", ".html", ".htm", ".md", ".log"})
OFFICE_EXTENSIONS = frozenset({".docx", ".docm", ".xlsx", ".xlsm", ".pptx", ".pptm"})
SCANNABLE_EXTENSIONS = TEXT_EXTENSIONS | OFFICE_EXTENSIONS
XML_BYTES_PER_TEXT_CHAR = 8
"""Office XML is verbose; read up to this many XML bytes per wanted character before giving up."""
MAX_SHEETS = 64
MAX_SLIDES = 500

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_S = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
_SHEET_NAME = re.compile(r"^xl/worksheets/sheet\d+\.xml$")
_SLIDE_NAME = re.compile(r"^ppt/(?:slides/slide|notesSlides/notesSlide)(\d+)\.xml$")


@dataclass(frozen=True, slots=True)
class ExtractedText:
    text: str
    truncated: bool
    """True when the file held more text than was read."""
    source: str
    """"text", "docx", "xlsx", "pptx" or "pdf"."""


def is_scannable(path: Path) -> bool:
    return path.suffix.lower() in SCANNABLE_EXTENSIONS


def extract_text(
    path: Path, *, max_chars: int = DEFAULT_LIMIT_CHARS, stream: IO[bytes] | None = None
) -> ExtractedText | None:
    """The text inside `path`, bounded; None when the type is not scannable or the file is unreadable
    as that type (a broken docx is logged and skipped, not an error). With `stream` (an open, seekable file
    positioned at its start) the content is read from there and `path` only names the type."""
    suffix = path.suffix.lower()
    try:
        if suffix in TEXT_EXTENSIONS:
            if stream is not None:
                return read_text_stream(stream, max_chars=max_chars)
            with path.open("rb") as fh:
                return read_text_stream(fh, max_chars=max_chars)
        if suffix in (".docx", ".docm"):
            return _extract_docx(stream or path, max_chars=max_chars)
        if suffix in (".xlsx", ".xlsm"):
            return _extract_xlsx(stream or path, max_chars=max_chars)
        if suffix in (".pptx", ".pptm"):
            return _extract_pptx(stream or path, max_chars=max_chars)
    except (OSError, zipfile.BadZipFile, ParseError, DefusedXmlException, KeyError, RuntimeError, ValueError) as exc:
        log.info("could not extract text from a %s file: %s", suffix, type(exc).__name__)
    return None


class ByteSource(Protocol):
    """Anything with `read(size)`: an open file, a zip member, a bounded reader."""

    def read(self, size: int = -1, /) -> bytes: ...


def read_text_stream(fh: ByteSource, *, max_chars: int = DEFAULT_LIMIT_CHARS) -> ExtractedText:
    """UTF-8 (invalid bytes replaced) from a byte stream, at most `max_chars` characters."""
    # UTF-8 takes at most 4 bytes per character; read one extra byte to know whether more follows.
    raw = fh.read(max_chars * 4 + 1) if max_chars < (1 << 40) else fh.read()
    text = raw.decode("utf-8", errors="replace")
    truncated = len(text) > max_chars or len(raw) > max_chars * 4
    if len(text) > max_chars:
        text = text[:max_chars]
    return ExtractedText(text=text, truncated=truncated, source="text")


class _BoundedReader(io.RawIOBase):
    """Reads at most `limit` bytes of a stream (a zip member), then reports end of file."""

    def __init__(self, inner: IO[bytes], limit: int) -> None:
        self._inner = inner
        self._left = limit

    @property
    def exhausted(self) -> bool:
        return self._left <= 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: self._left]
        data = self._inner.read(len(view))
        view[: len(data)] = data
        self._left -= len(data)
        return len(data)


class _TextBudget:
    def __init__(self, max_chars: int) -> None:
        self.parts: list[str] = []
        self.left = max_chars
        self.truncated = False

    def add(self, text: str) -> bool:
        """Append; False once the budget is spent."""
        if self.left <= 0:
            self.truncated = True
            return False
        if len(text) > self.left:
            text = text[: self.left]
            self.truncated = True
        self.parts.append(text)
        self.left -= len(text)
        return self.left > 0


def _iter_elements(zf: zipfile.ZipFile, name: str, byte_limit: int) -> Iterator[Element]:
    """Closed elements of one zip member, bounded; raises `_XmlCut` when the member was longer."""
    with zf.open(name) as member:
        bounded = _BoundedReader(member, byte_limit)
        try:
            for _event, elem in iterparse(io.BufferedReader(bounded), events=("end",)):
                yield elem
        except ParseError:
            if not bounded.exhausted:
                raise
        if bounded.exhausted:
            raise _XmlCut


class _XmlCut(Exception):
    """The member was longer than the byte limit."""


def _extract_docx(path: Path | IO[bytes], *, max_chars: int) -> ExtractedText:
    budget = _TextBudget(max_chars)
    with zipfile.ZipFile(path) as zf:
        try:
            for elem in _iter_elements(zf, "word/document.xml", max_chars * XML_BYTES_PER_TEXT_CHAR):
                tag = elem.tag
                if tag == f"{_W}t":
                    if not budget.add(elem.text or ""):
                        break
                elif tag in (f"{_W}p", f"{_W}tab", f"{_W}br") and not budget.add("\n" if tag != f"{_W}tab" else "\t"):
                    break
                if tag == f"{_W}p":
                    elem.clear()
        except _XmlCut:
            budget.truncated = True
    return ExtractedText(text="".join(budget.parts), truncated=budget.truncated, source="docx")


def _extract_xlsx(path: Path | IO[bytes], *, max_chars: int) -> ExtractedText:
    budget = _TextBudget(max_chars)
    byte_limit = max_chars * XML_BYTES_PER_TEXT_CHAR
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        try:
            if "xl/sharedStrings.xml" in names:
                for elem in _iter_elements(zf, "xl/sharedStrings.xml", byte_limit):
                    if elem.tag == f"{_S}si":
                        text = "".join(t.text or "" for t in elem.iter(f"{_S}t"))
                        elem.clear()
                        if not budget.add(text + "\n"):
                            break
            sheets = sorted(n for n in names if _SHEET_NAME.match(n))
            if len(sheets) > MAX_SHEETS:
                budget.truncated = True
            for sheet in sheets[:MAX_SHEETS]:
                if budget.left <= 0:
                    budget.truncated = True
                    break
                for elem in _iter_elements(zf, sheet, byte_limit):
                    tag = elem.tag
                    if tag == f"{_S}c":
                        value = _cell_value(elem)
                        elem.clear()
                        if value is not None and not budget.add(value + "\t"):
                            break
                    elif tag == f"{_S}row" and not budget.add("\n"):
                        break
        except _XmlCut:
            budget.truncated = True
    return ExtractedText(text="".join(budget.parts), truncated=budget.truncated, source="xlsx")


def _extract_pptx(path: Path | IO[bytes], *, max_chars: int) -> ExtractedText:
    """Text runs (a:t) of slides and speaker notes, slide by slide; one line per paragraph."""
    budget = _TextBudget(max_chars)
    byte_limit = max_chars * XML_BYTES_PER_TEXT_CHAR
    with zipfile.ZipFile(path) as zf:
        numbered = [(int(m.group(1)), "notes" in n, n) for n in zf.namelist() if (m := _SLIDE_NAME.match(n))]
        slides = [name for _number, _notes, name in sorted(numbered)]
        if len(slides) > MAX_SLIDES:
            budget.truncated = True
        try:
            for slide in slides[:MAX_SLIDES]:
                if budget.left <= 0:
                    budget.truncated = True
                    break
                for elem in _iter_elements(zf, slide, byte_limit):
                    if elem.tag == f"{_A}t":
                        if not budget.add(elem.text or ""):
                            break
                    elif elem.tag == f"{_A}p":
                        elem.clear()
                        if not budget.add("\n"):
                            break
        except _XmlCut:
            budget.truncated = True
    return ExtractedText(text="".join(budget.parts), truncated=budget.truncated, source="pptx")


def _cell_value(cell: Element) -> str | None:
    """Inline strings and literal values; shared-string cells (t="s") hold only an index, read above."""
    kind = cell.get("t", "n")
    if kind == "s":
        return None
    if kind == "inlineStr":
        return "".join(t.text or "" for t in cell.iter(f"{_S}t"))
    v = cell.find(f"{_S}v")
    return None if v is None or v.text is None else v.text
