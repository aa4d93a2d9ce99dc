"""CSV export that spreadsheets open as data: cells that would start a formula are neutralised.

Pure functions; any thread.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
"""What Excel, LibreOffice and Google Sheets read as the start of a formula (OWASP 'CSV injection')."""


def neutralise(cell: str) -> str:
    """Prefix a quote to a cell a spreadsheet would evaluate (`=HYPERLINK(...)`, `@SUM(...)`, `-2+3`)."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def csv_text(rows: Iterable[Sequence[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows([neutralise(str(cell)) for cell in row] for row in rows)
    return out.getvalue()
