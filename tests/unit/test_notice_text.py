"""What a notice tells the person about an event's metadata."""

from __future__ import annotations

from agent_app.core.texts import notice_details


def test_findings_read_as_sentences_and_technical_keys_are_hidden() -> None:
    summary: dict[str, object] = {
        "findings": [{"type": "card", "count": 2, "sample": "XXXX XXXX XXXX 1111", "hash": "0b26"}],
        "length": 32,
        "format": "text/plain",
        "scan_truncated": False,
        "sha256": "ab" * 32,
    }
    lines = dict(notice_details(summary))
    assert lines["found"] == "2 card numbers, e.g. XXXX XXXX XXXX 1111"
    assert "0b26" not in str(lines)
    assert set(lines) == {"found", "length", "format"}
