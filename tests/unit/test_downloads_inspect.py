"""Content inspection of downloads inside containers: ZIP archives (nested, bounded, bombs), office files (docx,
xlsx, pptx, also inside archives), PDF text within page, time and stream caps, encrypted archives, office files and
PDFs; and the policy's quarantine-on-sensitive acting on what was found inside."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_app.core.decide import decide
from collectors.downloads.inspect import inspect_download
from collectors.pii import DEFAULT_LIMIT_CHARS
from collectors.pii.containers import MAX_DEPTH, Walk, walk
from collectors.pii.pdf import PdfBudget, extract_pdf
from policy_client.schema import Controls, DownloadsControl, EventDraft, EventKind, PolicyDocument, Severity
from tests.fuzz.budget import budget
from tests.support.pdf import encrypted_pdf_bytes, pdf_bytes

KEY = b"k" * 32
CARD = "4111 1111 1111 1111"
CSV = f"name,card,expiry\nA. Kumar,{CARD},08/27\nB. Rao,5500 0000 0000 0004,11/28\n"
P = "http://schemas.openxmlformats.org/presentationml/2006/main"
A = "http://schemas.openxmlformats.org/drawingml/2006/main"
W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def zip_bytes(members: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return buf.getvalue()


def docx_bytes(text: str) -> bytes:
    body = f"<w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body>"
    xml = f'<?xml version="1.0"?><w:document xmlns:w="{W}">{body}</w:document>'
    return zip_bytes({"[Content_Types].xml": "<Types/>", "word/document.xml": xml})


def pptx_bytes(*slides: str) -> bytes:
    members: dict[str, bytes | str] = {"[Content_Types].xml": "<Types/>"}
    for n, text in enumerate(slides, start=1):
        members[f"ppt/slides/slide{n}.xml"] = (
            f'<?xml version="1.0"?><p:sld xmlns:p="{P}" xmlns:a="{A}"><p:cSld><p:spTree><p:sp><p:txBody>'
            f"<a:p><a:r><a:t>{text}</a:t></a:r></a:p></p:txBody></p:sp></p:spTree></p:cSld></p:sld>"
        )
    return zip_bytes(members)


def encrypt_flag(data: bytes) -> bytes:
    """Set the 'encrypted' bit of every entry (local and central headers), as ZipCrypto archives have it."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        pos = out.find(signature)
        while pos >= 0:
            out[pos + offset] |= 0x01
            pos = out.find(signature, pos + 4)
    return bytes(out)


def inspect(path: Path, control: DownloadsControl | None = None) -> dict[str, Any]:
    control = control or DownloadsControl(mode="quarantine", quarantine_on="sensitive")
    return inspect_download(path, folder="~/Downloads", size=path.stat().st_size, sha256="0" * 64, control=control,
                            key=KEY).data  # fmt: skip


def quarantine_decision(data: dict[str, Any]) -> str:
    control = DownloadsControl(mode="quarantine", quarantine_on="sensitive")
    draft = EventDraft(kind=EventKind.download_detected, data=data)
    return decide(draft, PolicyDocument(version=1, controls=Controls(downloads=control))).action


def test_zip_holding_a_csv_of_cards_is_sensitive_and_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    path.write_bytes(zip_bytes({"reports/customers.csv": CSV, "logo.png": b"\x89PNG...."}))
    data = inspect(path)
    (card,) = data["findings"]
    assert card["type"] == "card"
    assert card["count"] == 2
    assert card["confidence"] == "high"
    assert data["members_scanned"] == 1
    assert quarantine_decision(data) == "quarantine"
    dumped = json.dumps(data)
    assert "4111" not in dumped.replace("XXXX XXXX XXXX 1111", "")
    assert "customers.csv" not in dumped  # member names stay on the device


def test_office_files_inside_a_zip_and_pptx_are_read(tmp_path: Path) -> None:
    path = tmp_path / "bundle.zip"
    path.write_bytes(zip_bytes({"letter.docx": docx_bytes(f"Aadhaar 2341 2341 2346 of {CARD[:4]}"),
                                "deck.pptx": pptx_bytes("Agenda", f"card {CARD}")}))  # fmt: skip
    seen = walk(path)
    assert sorted(p.member for p in seen.parts) == ["deck.pptx", "letter.docx"]
    data = inspect(path)
    assert {f["type"] for f in data["findings"]} == {"aadhaar", "card"}
    solo = tmp_path / "deck.pptx"
    solo.write_bytes(pptx_bytes("Q3 review", f"refund to card {CARD}"))
    assert [f["type"] for f in inspect(solo)["findings"]] == ["card"]


def nest(inner: bytes, levels: int) -> bytes:
    for n in range(levels):
        inner = zip_bytes({f"level{n}.zip": inner})
    return inner


def test_nested_archives_are_opened_to_a_bounded_depth(tmp_path: Path) -> None:
    base = zip_bytes({"cards.csv": CSV})
    shallow = tmp_path / "shallow.zip"
    shallow.write_bytes(nest(base, MAX_DEPTH))  # the zip holding the CSV is MAX_DEPTH levels inside the download
    assert [f["type"] for f in inspect(shallow)["findings"]] == ["card"]
    deep = tmp_path / "deep.zip"
    deep.write_bytes(nest(base, MAX_DEPTH + 1))  # one level deeper
    data = inspect(deep)
    assert data["findings"] == []
    assert data["unscanned"] == {"depth": 1}


def test_a_high_ratio_member_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.txt", "w") as member:
        chunk = b"\0" * (1 << 20)
        for _ in range(32):
            member.write(chunk)
    start = time.perf_counter()
    seen = walk(path)
    assert time.perf_counter() - start < 0.5
    assert seen.parts == []
    assert seen.unscanned == {"ratio": 1}
    assert seen.bytes_read == 0


def test_a_nested_bomb_costs_at_most_the_byte_budget(tmp_path: Path) -> None:
    # 16 copies of 16 copies of a 256 KiB text member: 64 MiB if expanded, each member under the ratio cap.
    leaf = zip_bytes({f"part{i}.txt": "customer notes " * 17_000 for i in range(2)})
    middle = zip_bytes({f"m{i}.zip": leaf for i in range(16)})
    path = tmp_path / "fan.zip"
    path.write_bytes(zip_bytes({f"o{i}.zip": middle for i in range(16)}))
    seen = walk(path, max_total_bytes=2 * 1024 * 1024)
    assert seen.bytes_read <= 2 * 1024 * 1024
    assert seen.unscanned.get("budget", 0) > 0
    assert seen.truncated


def test_member_count_is_capped(tmp_path: Path) -> None:
    path = tmp_path / "many.zip"
    path.write_bytes(zip_bytes({f"f{i}.txt": "x" for i in range(2100)}))
    seen = walk(path)
    assert len(seen.parts) == 2000
    assert seen.unscanned == {"members": 1}


def test_an_encrypted_archive_is_reported_as_such(tmp_path: Path) -> None:
    path = tmp_path / "secret.zip"
    path.write_bytes(encrypt_flag(zip_bytes({"cards.csv": CSV})))
    data = inspect(path)
    assert data["encrypted"] is True
    assert data["encrypted_members"] == 1
    assert data["findings"] == []
    result = inspect_download(path, folder="~", size=1, sha256="0" * 64, control=DownloadsControl(), key=KEY)
    assert result.severity is Severity.medium


def test_a_password_protected_office_file_is_reported_as_encrypted(tmp_path: Path) -> None:
    path = tmp_path / "salaries.xlsx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 512)
    data = inspect(path)
    assert data["encrypted"] is True
    assert data["findings"] == []


def test_card_numbers_in_a_pdf_are_found_on_every_page(tmp_path: Path) -> None:
    pdf = tmp_path / "statement.pdf"
    pdf.write_bytes(pdf_bytes(f"Customer card {CARD} exp 08/27", "page two: card 5500 0000 0000 0004"))
    data = inspect(pdf)
    assert [(f["type"], f["count"], f["confidence"]) for f in data["findings"]] == [("card", 2, "high")]
    assert "unscanned" not in data
    assert "members_scanned" not in data
    assert quarantine_decision(data) == "quarantine"
    assert CARD not in json.dumps(data)


def test_a_pdf_inside_an_archive_is_read(tmp_path: Path) -> None:
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(zip_bytes({"docs/statement.pdf": pdf_bytes(f"card {CARD}"), "c.csv": "nothing"}))
    data = inspect(bundle)
    assert [(f["type"], f["count"]) for f in data["findings"]] == [("card", 1)]
    assert data["members_scanned"] == 2


def test_a_password_protected_pdf_is_reported_encrypted_and_one_with_only_an_owner_password_is_read(
    tmp_path: Path,
) -> None:
    locked = tmp_path / "locked.pdf"
    locked.write_bytes(encrypted_pdf_bytes(f"card {CARD}"))
    data = inspect(locked)
    assert (data["encrypted"], data["encrypted_members"], data["findings"]) == (True, 1, [])
    restricted = tmp_path / "restricted.pdf"
    restricted.write_bytes(encrypted_pdf_bytes(f"card {CARD}", user_password=""))
    data = inspect(restricted)
    assert [f["type"] for f in data["findings"]] == ["card"]
    assert "encrypted" not in data


def test_pdf_pages_and_time_are_capped(tmp_path: Path) -> None:
    pages = [f"page {n}" for n in range(5)] + [f"card {CARD}"]
    pdf = tmp_path / "long.pdf"
    pdf.write_bytes(pdf_bytes(*pages))
    assert walk(pdf).parts[0].text.count("page") == 5
    capped = Walk(chars_left=DEFAULT_LIMIT_CHARS, pdf=PdfBudget(pages=3))
    with pdf.open("rb") as fh:
        text = extract_pdf(fh, max_chars=1000, budget=capped.pdf)
    assert text is not None
    assert (text.cut_by, text.truncated, text.text.count("page")) == ("pdf_pages", True, 3)
    assert capped.pdf.pages == 0
    ticks = iter(range(100))
    timed = PdfBudget(seconds=2.5)
    with pdf.open("rb") as fh:
        text = extract_pdf(fh, max_chars=1000, budget=timed, clock=lambda: float(next(ticks)))
    assert text is not None
    assert text.cut_by == "pdf_time"
    assert text.text.count("page") == 2  # the clock advances one second per look: pages at t=1 and t=2, cut at 3
    assert timed.seconds <= 0


def test_a_spent_pdf_budget_leaves_later_pdfs_unscanned_and_says_so(tmp_path: Path) -> None:
    bundle = tmp_path / "many.zip"
    bundle.write_bytes(zip_bytes({f"s{n}.pdf": pdf_bytes(*(["x"] * 150)) for n in range(3)}))
    seen = walk(bundle)
    assert sum(p.text.count("x") for p in seen.parts) == 200  # PdfBudget().pages over the whole walk
    assert seen.unscanned == {"pdf_pages": 2}
    assert seen.truncated


def test_broken_and_hostile_pdfs_are_unreadable_not_errors(tmp_path: Path) -> None:
    for name, body in {
        "a.pdf": b"%PDF-1.7\n...",
        "b.pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 1 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF",
        "c.pdf": pdf_bytes("ok")[:-40],
    }.items():
        path = tmp_path / name
        path.write_bytes(body)
        data = inspect(path)
        assert data["findings"] == []
        assert data.get("unscanned", {}) in ({"unreadable": 1}, {}), (name, data)


def test_a_pdf_stream_that_inflates_past_the_cap_is_not_decompressed(tmp_path: Path) -> None:
    """A 64 MiB content stream compressed to 64 KiB: pypdf stops at MAX_STREAM_BYTES and the PDF is unreadable."""
    import zlib

    from collectors.pii.pdf import MAX_STREAM_BYTES

    bomb = zlib.compress(b"0" * (4 * MAX_STREAM_BYTES), 9)
    body = pdf_bytes("placeholder")
    start = body.index(b"<< /Length", body.index(b"5 0 obj"))
    end = body.index(b"endstream", start) + len(b"endstream")
    patched = body[:start] + b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(bomb) + bomb + b"\nendstream"
    path = tmp_path / "bomb.pdf"
    # The xref offsets after the patched object are wrong now; pypdf rebuilds them, as it would for a hostile file.
    path.write_bytes(patched + body[end:])
    data = inspect(path)
    assert data["findings"] == []
    assert data["unscanned"] == {"unreadable": 1}


def test_a_pdf_over_the_size_cap_is_not_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import collectors.pii.containers as containers

    path = tmp_path / "big.pdf"
    path.write_bytes(pdf_bytes(f"card {CARD}"))
    monkeypatch.setattr(containers, "MAX_PDF_BYTES", path.stat().st_size - 1)
    data = inspect(path)
    assert (data["findings"], data["unscanned"]) == ([], {"size": 1})


def test_other_archives_are_reported_unscanned(tmp_path: Path) -> None:
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(zip_bytes({"b.7z": b"7z", "c.tar": b"tar", "c.csv": "nothing"}))
    assert inspect(bundle)["unscanned"] == {"7z": 1, "tar": 1}


def test_broken_archives_are_unreadable_not_errors(tmp_path: Path) -> None:
    path = tmp_path / "broken.zip"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    assert inspect(path)["unscanned"] == {"unreadable": 1}


def test_low_confidence_findings_do_not_make_a_download_sensitive(tmp_path: Path) -> None:
    path = tmp_path / "refunds.csv"
    path.write_text("utr,amount\n234123412346,500\n")  # a 12-digit UPI reference that happens to pass Verhoeff
    data = inspect(path)
    assert [(f["type"], f["confidence"]) for f in data["findings"]] == [("aadhaar", "low")]
    assert quarantine_decision(data) == "audit"


@budget(150)
@given(blob=st.binary(max_size=2048), suffix=st.sampled_from([".zip", ".docx", ".xlsx", ".pptx"]))
def test_arbitrary_bytes_never_raise(blob: bytes, suffix: str) -> None:
    seen = walk(Path("x" + suffix), stream=io.BytesIO(blob))
    assert seen.bytes_read <= len(blob) * 1200 + 1
    assert all(isinstance(p.text, str) for p in seen.parts)


@budget(60)
@given(members=st.dictionaries(st.sampled_from(["a.csv", "b.txt", "c.zip", "d.docx", "e/f.json"]),
                               st.binary(max_size=300), max_size=5))  # fmt: skip
def test_archives_of_arbitrary_members_never_raise(members: dict[str, bytes]) -> None:
    blob = zip_bytes(dict(members))
    seen = walk(Path("x.zip"), stream=io.BytesIO(blob))
    assert seen.members == len(members)


@pytest.mark.parametrize("scan_content", [False])
def test_scan_content_off_reads_nothing(tmp_path: Path, scan_content: bool) -> None:
    path = tmp_path / "export.zip"
    path.write_bytes(zip_bytes({"customers.csv": CSV}))
    data = inspect(path, DownloadsControl(scan_content=scan_content))
    assert data["findings"] == []
    assert "members_scanned" not in data
