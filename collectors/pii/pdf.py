"""Bounded text extraction from PDF files (pypdf) for the PII scan, so a hostile PDF costs little.

Called on the downloads collector thread and by `deskwarden scan`, through `collectors.pii.containers.walk`.
pypdf is imported on first use: it loads `cryptography`, which the session helper must never import.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from pypdf import PdfReader

log = logging.getLogger(__name__)

MAX_PDF_BYTES = 64 * 1024 * 1024
"""A PDF larger than this is not opened (`walk` reports it as unscanned "size"; `extract_pdf` returns None)."""
MAX_STREAM_BYTES = 16 * 1024 * 1024
"""pypdf stops decompressing one stream past this many bytes (its default is 75 MB)."""
MAX_DECODING_WORK = 64 * 1024 * 1024
"""pypdf's budget of decoding work for one stream (its default is 300 M)."""
MAX_TREE_ENTRIES = 10_000
"""Page-tree entries pypdf follows before it gives up (its default is 100,000)."""


@dataclass
class PdfBudget:
    """What PDF reading may still spend over one walk (every PDF in an archive together)."""

    pages: int = 200
    seconds: float = 5.0
    """Checked between pages: one page can overrun it, within pypdf's per-stream limits above."""


@dataclass(frozen=True, slots=True)
class PdfText:
    text: str
    truncated: bool
    """Pages or characters were left out (page or time budget, or `max_chars`)."""
    encrypted: bool = False
    """The PDF needs a password to open: nothing was read."""
    cut_by: str = ""
    """"pdf_pages" or "pdf_time" when that budget cut the text; "" otherwise."""


def extract_pdf(
    fh: IO[bytes],
    *,
    max_chars: int,
    budget: PdfBudget,
    clock: Callable[[], float] = time.monotonic,
) -> PdfText | None:
    """The text of the PDF in `fh` (open, seekable, at its start), page by page within `budget` and `max_chars`;
    None when the file is not a PDF pypdf can read, or is larger than MAX_PDF_BYTES."""
    fh.seek(0, 2)
    size = fh.tell()
    fh.seek(0)
    if size > MAX_PDF_BYTES:
        return None
    started = clock()
    try:
        return _extract(fh, max_chars=max_chars, budget=budget, clock=clock, started=started)
    except RecursionError:
        log.info("a PDF nests too deeply to read")
        return None
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on hostile input; any of them means "unreadable"
        log.info("could not read a PDF: %s", type(exc).__name__)
        return None
    finally:
        budget.seconds -= clock() - started


def _extract(
    fh: IO[bytes], *, max_chars: int, budget: PdfBudget, clock: Callable[[], float], started: float
) -> PdfText:
    from pypdf import PdfReader, apply_configuration

    with apply_configuration(
        zlib_maximum_output_length=MAX_STREAM_BYTES,
        lzw_maximum_output_length=MAX_STREAM_BYTES,
        run_length_maximum_output_length=MAX_STREAM_BYTES,
        array_based_stream_maximum_output_length=MAX_STREAM_BYTES,
        maximum_declared_stream_length=MAX_STREAM_BYTES,
        stream_decoding_work_maximum_length=MAX_DECODING_WORK,
        page_tree_maximum_entries=MAX_TREE_ENTRIES,
        page_tree_maximum_page_entries=MAX_TREE_ENTRIES,
    ):
        reader = PdfReader(fh)
        if reader.is_encrypted and not _opens_without_password(reader):
            return PdfText("", truncated=False, encrypted=True)
        parts: list[str] = []
        chars = 0
        cut_by = ""
        truncated = False
        for index, page in enumerate(reader.pages):
            if chars >= max_chars:
                truncated = True
                break
            if index >= budget.pages:
                truncated, cut_by = True, "pdf_pages"
                break
            if clock() - started >= budget.seconds:
                truncated, cut_by = True, "pdf_time"
                break
            text = page.extract_text() or ""
            parts.append(text)
            chars += len(text) + 1
        budget.pages -= len(parts)
        body = "\n".join(parts)
        if len(body) > max_chars:
            body, truncated = body[:max_chars], True
        return PdfText(body, truncated=truncated, cut_by=cut_by)


def _opens_without_password(reader: PdfReader) -> bool:
    """Many PDFs are encrypted with an owner password only (printing or copying restricted) and open with the empty
    user password; only those are read."""
    from pypdf import PasswordType

    try:
        return reader.decrypt("") is not PasswordType.NOT_DECRYPTED
    except Exception:  # noqa: BLE001 - an unsupported algorithm or a broken encryption dictionary: treat as locked
        return False
