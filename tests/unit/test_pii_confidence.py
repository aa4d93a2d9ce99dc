"""Confidence of PII findings (checksum and format give the base, a keyword raises it, an identifier label right
before lowers it) and the policy's `min_confidence` in decide() for the clipboard and downloads controls."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import JsonValue, ValidationError

from agent_app.core.decide import decide
from collectors.pii import CONFIDENCE_LEVELS, DEFAULT_MIN_CONFIDENCE, confidence_at_least, scan_text, summarize
from policy_client.schema import (
    ClipboardControl,
    Controls,
    DownloadsControl,
    EventDraft,
    EventKind,
    PolicyDocument,
    Severity,
)
from tests.fuzz.budget import budget


def levels(text: str) -> list[tuple[str, str]]:
    return [(f.type, f.confidence) for f in scan_text(text)]


# The examples of docs/pii-detectors.md, one row each.
EXAMPLES = [
    # card: Luhn plus a scheme's prefix and length is medium; a card word or an expiry date raises it.
    ("4111 1111 1111 1111", [("card", "medium")]),
    ("card 4111 1111 1111 1111", [("card", "high")]),
    ("4111111111111111 exp 12/27", [("card", "high")]),
    ("mera card number 4111 1111 1111 1111 hai", [("card", "high")]),
    ("tarjeta 4111-1111-1111-1111", [("card", "high")]),
    ("Order no.: 4111111111111111", [("card", "low")]),
    ("356938035643809", [("card", "low")]),  # Luhn-valid, but no scheme issues 15 digits from 35 (an IMEI)
    # aadhaar: Verhoeff written 4-4-4 is medium; unformatted 12 digits is low (UPI references look the same).
    ("2341 2341 2346", [("aadhaar", "medium")]),
    ("aadhaar 2341 2341 2346", [("aadhaar", "high")]),
    ("234123412346", [("aadhaar", "low")]),
    ("mera aadhar number 234123412346 hai", [("aadhaar", "medium")]),
    ("आधार 2341 2341 2346", [("aadhaar", "high")]),
    ("UTR 234123412346", [("aadhaar", "low")]),
    # pan: a person's PAN (fourth letter P) is medium, other holder classes low; "PAN" raises, "coupon" lowers.
    ("ABCPE1234F", [("pan", "medium")]),
    ("PAN ABCPE1234F", [("pan", "high")]),
    ("AAACT1234Z", [("pan", "low")]),
    ("pan card AAACT1234Z", [("pan", "medium")]),
    ("coupon code ABCPE1234F", [("pan", "low")]),
    # iban: mod-97 with the country's layout is medium; a bank word raises it.
    ("GB82 WEST 1234 5698 7654 32", [("iban", "medium")]),
    ("IBAN GB82WEST12345698765432", [("iban", "high")]),
    # ssn: dashes 3-2-4 are medium, spaces low; the unformatted form needs a label.
    ("536-90-4399", [("ssn", "medium")]),
    ("536 90 4399", [("ssn", "low")]),
    ("SSN 536-90-4399", [("ssn", "high")]),
    ("social security number: 536904399", [("ssn", "medium")]),
    # email and phone
    ("john.doe@example.com", [("email", "medium")]),
    ("email: john.doe@example.com", [("email", "high")]),
    ("+91 98765 43210", [("phone", "medium")]),
    ("mobile +91 98765 43210", [("phone", "high")]),
    ("whatsapp 9876543210 pe", [("phone", "medium")]),
    ("9876543210", []),  # a bare 10-digit number is a phone number only next to a phone word
    ("ticket 98765 43210", [("phone", "low")]),
]


@pytest.mark.parametrize(("text", "expected"), EXAMPLES)
def test_documented_confidence_examples(text: str, expected: list[tuple[str, str]]) -> None:
    assert levels(text) == expected


def test_keywords_are_whole_words() -> None:
    assert levels("discard 4111 1111 1111 1111") == [("card", "medium")]
    assert levels("company ABCPE1234F") == [("pan", "medium")]


def test_a_keyword_far_away_does_not_count() -> None:
    assert levels("card " + "x " * 100 + "4111 1111 1111 1111") == [("card", "medium")]


def test_levels_and_ordering() -> None:
    assert CONFIDENCE_LEVELS == ("low", "medium", "high")
    assert DEFAULT_MIN_CONFIDENCE == "medium"
    assert confidence_at_least("high", "medium")
    assert confidence_at_least("medium", "medium")
    assert not confidence_at_least("low", "medium")
    assert not confidence_at_least("bogus", "low")


_VALUES = st.sampled_from(["4111 1111 1111 1111", "2341 2341 2346", "234123412346", "ABCPE1234F", "536-90-4399",
                           "GB82 WEST 1234 5698 7654 32", "+91 98765 43210", "john@example.com"])  # fmt: skip
_KEYWORDS = st.sampled_from(["card", "aadhaar", "pan", "iban", "ssn", "email", "mobile", "kyc", "credit", "uid"])
_LABELS = st.sampled_from(["order", "ticket no.", "UTR", "Ref #", "invoice", "coupon code", "AWB"])


@budget(200)
@given(value=_VALUES, keyword=_KEYWORDS, words=st.lists(st.sampled_from(["pls", "check", "the", "hai"]), max_size=4))
def test_a_keyword_never_lowers_confidence(value: str, keyword: str, words: list[str]) -> None:
    plain = scan_text(" ".join([*words, value]))
    with_keyword = scan_text(" ".join([keyword, *words, value]))
    assert [f.type for f in plain] == [f.type for f in with_keyword]
    for a, b in zip(plain, with_keyword, strict=True):
        assert CONFIDENCE_LEVELS.index(b.confidence) >= CONFIDENCE_LEVELS.index(a.confidence)


@budget(200)
@given(value=_VALUES, label=_LABELS)
def test_an_identifier_label_right_before_a_number_makes_it_low(value: str, label: str) -> None:
    findings = scan_text(f"{label} {value}")
    assert findings
    for f in findings:
        assert f.confidence == ("medium" if f.type == "email" else "low") or (f.type, label) == ("iban", "Ref #")


def test_summary_carries_the_confidence_of_each_type() -> None:
    text = "order 4111111111111111, card 5500 0000 0000 0004, UTR 234123412346"
    summary = summarize(scan_text(text), text, b"k" * 32)
    card, aadhaar = summary
    assert card["type"] == "card"
    assert card["count"] == 2
    assert card["confidence"] == "high"
    assert card["by_confidence"] == {"low": 1, "high": 1}
    assert card["sample"] == "XXXX XXXX XXXX 0004"  # the sample is the strongest finding's
    assert aadhaar["confidence"] == "low"
    assert aadhaar["by_confidence"] == {"low": 1}


# --- policy --------------------------------------------------------------------------------------------------------


def policy(**controls: object) -> PolicyDocument:
    return PolicyDocument(version=3, controls=Controls(**controls))  # type: ignore[arg-type]


def clip(*levels_: str) -> EventDraft:
    findings: list[JsonValue] = [{"type": "card", "count": 1, "confidence": level} for level in levels_]
    return EventDraft(kind=EventKind.clipboard_sensitive, data={"findings": findings})


def test_min_confidence_defaults_to_medium_and_is_validated() -> None:
    assert ClipboardControl().min_confidence == "medium"
    assert DownloadsControl().min_confidence == "medium"
    assert ClipboardControl(min_confidence="high").min_confidence == "high"
    with pytest.raises(ValidationError):
        ClipboardControl(min_confidence="certain")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("minimum", "found", "action"),
    [
        ("medium", ["low"], "ignore"),
        ("medium", ["low", "medium"], "mask"),
        ("medium", ["high"], "mask"),
        ("high", ["medium"], "ignore"),
        ("low", ["low"], "mask"),
    ],
)
def test_clipboard_acts_only_at_or_above_min_confidence(minimum: str, found: list[str], action: str) -> None:
    control = ClipboardControl(mode="mask", min_confidence=minimum)  # type: ignore[arg-type]
    decision = decide(clip(*found), policy(clipboard=control))
    assert decision.action == action
    if action == "ignore":
        assert decision.rule_id == "clipboard.below_confidence"


def test_clipboard_summary_without_confidence_is_acted_on() -> None:
    draft = EventDraft(kind=EventKind.clipboard_sensitive, data={"findings": [{"type": "card", "count": 1}]})
    assert decide(draft, policy(clipboard=ClipboardControl(mode="clear"))).action == "clear"


def download(*levels_: str) -> EventDraft:
    findings: list[JsonValue] = [{"type": "aadhaar", "count": 1, "confidence": level} for level in levels_]
    return EventDraft(kind=EventKind.download_detected, data={"findings": findings})


def test_downloads_quarantine_on_sensitive_uses_min_confidence() -> None:
    control = DownloadsControl(mode="quarantine", quarantine_on="sensitive")
    low = decide(download("low"), policy(downloads=control))
    assert low.action == "audit"
    assert low.severity is Severity.info
    high = decide(download("low", "high"), policy(downloads=control))
    assert high.action == "quarantine"
    assert high.severity is Severity.high
    strict = DownloadsControl(mode="quarantine", quarantine_on="sensitive", min_confidence="high")
    assert decide(download("medium"), policy(downloads=strict)).action == "audit"
    lenient = DownloadsControl(mode="warn", min_confidence="low")
    assert decide(download("low"), policy(downloads=lenient)).action == "warn"
