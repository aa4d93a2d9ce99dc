"""Bounded text extraction (text, docx, xlsx) and the `deskwarden scan` report and formatter."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from collectors.pii.extract import extract_text, is_scannable, read_text_stream
from collectors.pii.report import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, format_table, run_scan, scan_file_or_stdin
from tests.support.pdf import pdf_bytes

CARD = "4111 1111 1111 1111"
AADHAAR = "234123412346"

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
S = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def make_docx(path: Path, paragraphs: list[str]) -> Path:
    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    xml = f'<?xml version="1.0"?><w:document xmlns:w="{W}"><w:body>{body}</w:body></w:document>'
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", xml)
    return path


def make_xlsx(path: Path, shared: list[str], inline: list[str], numbers: list[str]) -> Path:
    sst = "".join(f"<si><t>{s}</t></si>" for s in shared)
    cells = "".join(f'<c t="s"><v>{i}</v></c>' for i in range(len(shared)))
    cells += "".join(f'<c t="inlineStr"><is><t>{s}</t></is></c>' for s in inline)
    cells += "".join(f"<c><v>{n}</v></c>" for n in numbers)
    sheet = f'<?xml version="1.0"?><worksheet xmlns="{S}"><sheetData><row r="1">{cells}</row></sheetData></worksheet>'
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xl/sharedStrings.xml", f'<?xml version="1.0"?><sst xmlns="{S}">{sst}</sst>')
        zf.writestr("xl/worksheets/sheet1.xml", sheet)
    return path


def test_text_file_is_read_with_replacement_of_bad_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"name,card\nx\xff,4111111111111111\n")
    out = extract_text(path)
    assert out is not None
    assert "4111111111111111" in out.text
    assert "\ufffd" in out.text
    assert not out.truncated


def test_text_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_bytes(b"a" * 10_000)
    out = extract_text(path, max_chars=100)
    assert out is not None
    assert len(out.text) == 100
    assert out.truncated


def test_read_text_stream_exact_limit_is_not_truncated() -> None:
    out = read_text_stream(io.BytesIO(b"abc"), max_chars=3)
    assert (out.text, out.truncated) == ("abc", False)


def test_docx_paragraph_text(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "a.docx", ["Customer card", CARD, "end"])
    out = extract_text(path)
    assert out is not None
    assert out.source == "docx"
    assert CARD in out.text
    assert out.text.split("\n")[:3] == ["Customer card", CARD, "end"]


def test_docx_is_bounded(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "a.docx", ["x" * 50] * 2000)
    out = extract_text(path, max_chars=500)
    assert out is not None
    assert out.truncated
    assert len(out.text) <= 500


def test_xlsx_shared_inline_and_numeric_cells(tmp_path: Path) -> None:
    path = make_xlsx(tmp_path / "a.xlsx", ["Aadhaar", AADHAAR], ["john@example.com"], ["536904399", "42"])
    out = extract_text(path)
    assert out is not None
    assert out.source == "xlsx"
    for value in ("Aadhaar", AADHAAR, "john@example.com", "42"):
        assert value in out.text


def test_broken_office_file_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bad.docx"
    path.write_bytes(b"not a zip")
    assert extract_text(path) is None


def test_xml_entity_expansion_is_refused(tmp_path: Path) -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        f'<w:document xmlns:w="{W}"><w:body><w:p><w:r><w:t>&lol2;</w:t></w:r></w:p></w:body></w:document>'
    )
    path = tmp_path / "bomb.docx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("word/document.xml", bomb)
    assert extract_text(path) is None


def test_unknown_extension_is_not_scannable(tmp_path: Path) -> None:
    assert not is_scannable(tmp_path / "a.exe")
    assert is_scannable(tmp_path / "A.CSV")
    assert extract_text(tmp_path / "a.exe") is None


def test_scan_report_for_file_has_types_masks_and_offsets(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    text = f"card {CARD} uid {AADHAAR}"
    path.write_text(text)
    report = scan_file_or_stdin(str(path))
    assert [(f.type, f.masked) for f in report.findings] == [
        ("card", "XXXX XXXX XXXX 1111"),
        ("aadhaar", "XXXXXXXX2346"),
    ]
    assert text[report.findings[0].start : report.findings[0].end] == CARD
    assert report.counts() == {"card": 1, "aadhaar": 1}


def test_run_scan_text_table_and_exit_codes(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_scan("-", stdin=io.BytesIO(f"pay {CARD}".encode()), out=out) == EXIT_FINDINGS
    table = out.getvalue()
    assert "XXXX XXXX XXXX 1111" in table
    assert "card" in table
    assert CARD not in table
    clean = io.StringIO()
    assert run_scan("-", stdin=io.BytesIO(b"nothing here"), out=clean) == EXIT_CLEAN
    assert "no findings" in clean.getvalue()
    err = io.StringIO()
    assert run_scan(str(tmp_path / "missing.txt"), out=io.StringIO(), err=err) == EXIT_ERROR
    assert "missing.txt" in err.getvalue()


def test_run_scan_json_has_no_raw_values(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "a.docx", [f"card {CARD}", f"uid {AADHAAR}"])
    out = io.StringIO()
    assert run_scan(str(path), as_json=True, out=out) == EXIT_FINDINGS
    doc = json.loads(out.getvalue())
    assert doc["source_kind"] == "docx"
    assert doc["counts"] == {"card": 1, "aadhaar": 1}
    assert {"type", "start", "end", "confidence", "masked"} == set(doc["findings"][0])
    assert [f["confidence"] for f in doc["findings"]] == ["high", "medium"]  # "uid" lifts the bare Aadhaar
    assert CARD not in out.getvalue()
    assert AADHAAR not in out.getvalue()


def test_report_says_truncated(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("x" * 200)
    report = scan_file_or_stdin(str(path), limit_chars=50)
    assert report.truncated
    assert "truncated" in format_table(report)


def test_run_scan_json_of_a_pdf(tmp_path: Path) -> None:
    path = tmp_path / "statement.pdf"
    path.write_bytes(pdf_bytes("Statement", f"card {CARD} exp 08/27"))
    out = io.StringIO()
    assert run_scan(str(path), as_json=True, out=out) == EXIT_FINDINGS
    doc = json.loads(out.getvalue())
    assert doc["source_kind"] == "pdf"
    (finding,) = doc["findings"]
    assert (finding["type"], finding["confidence"], finding["masked"]) == ("card", "high", "XXXX XXXX XXXX 1111")
    assert finding["end"] - finding["start"] == len(CARD)
    assert CARD not in out.getvalue()


@pytest.mark.parametrize("name", ["a.docx", "a.xlsx", "a.pdf"])
def test_scan_of_broken_office_file_is_an_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"garbage")
    err = io.StringIO()
    assert run_scan(str(path), out=io.StringIO(), err=err) == EXIT_ERROR


def test_run_scan_reads_inside_archives_and_names_the_member(tmp_path: Path) -> None:
    inner = tmp_path / "inner.docx"
    make_docx(inner, [f"card {CARD}"])
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(inner, "letters/inner.docx")
        zf.writestr("notes.txt", "nothing here")
        zf.writestr("scan.pdf", b"%PDF-1.7")
    out = io.StringIO()
    assert run_scan(str(path), as_json=True, out=out) == EXIT_FINDINGS
    doc = json.loads(out.getvalue())
    assert doc["source_kind"] == "zip"
    assert [(f["type"], f["confidence"], f["member"]) for f in doc["findings"]] == [
        ("card", "high", "letters/inner.docx")
    ]
    assert doc["unscanned"] == {"unreadable": 1}  # the broken scan.pdf
    assert CARD not in out.getvalue()
    table = io.StringIO()
    run_scan(str(path), out=table)
    assert "letters/inner.docx" in table.getvalue()
    assert "high" in table.getvalue()
