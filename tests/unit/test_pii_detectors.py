"""True and false positives for every PII detector (valid vs off-by-one checksums, digits inside
longer runs, spaces and dashes), overlap handling and bounded scans."""

from __future__ import annotations

import itertools
import time

import pytest
from stdnum import luhn, verhoeff

from collectors.pii import ALL, scan, scan_text


def found(text: str, detector: str) -> list[str]:
    return [text[f.start : f.end] for f in scan_text(text, detectors=[detector])]


def with_luhn(prefix: str) -> str:
    return prefix + luhn.calc_check_digit(prefix)


def with_verhoeff(prefix: str) -> str:
    return prefix + verhoeff.calc_check_digit(prefix)


def off_by_one(number: str) -> str:
    last = number[-1]
    return number[:-1] + str((int(last) + 1) % 10)


# --- card ---------------------------------------------------------------------------------------

CARDS = ["4111111111111111", "5500000000000004", "378282246310005", "6011111111111117", "4222222222222"]


@pytest.mark.parametrize("number", CARDS)
def test_card_valid_luhn_is_found(number: str) -> None:
    assert found(f"paid with {number} today", "card") == [number]


@pytest.mark.parametrize("number", CARDS)
def test_card_off_by_one_checksum_is_not_found(number: str) -> None:
    assert found(f"paid with {off_by_one(number)} today", "card") == []


@pytest.mark.parametrize(
    "text", ["4111 1111 1111 1111", "4111-1111-1111-1111", "3782 822463 10005", "4111 1111 1111 1111 110"]
)
def test_card_with_spaces_and_dashes(text: str) -> None:
    value = found(f"card: {text}.", "card")
    assert len(value) == 1
    assert luhn.is_valid(value[0].replace(" ", "").replace("-", ""))


def test_card_with_a_trailing_group_is_a_longer_run_and_not_a_card() -> None:
    # Five groups are one run: the first four are a window of it, whatever their checksum says.
    assert found("4111 1111 1111 1111 123 exp 12/27", "card") == []
    assert found("4111 1111 1111 1111, cvv 123", "card") == ["4111 1111 1111 1111"]
    assert found("4111111111111111 12/27", "card") == ["4111111111111111"]


@pytest.mark.parametrize(
    "text",
    [
        "9" + "4111111111111111" + "9",  # inside a longer digit run
        "x4111111111111111",  # glued to a word
        "4111111111111111y",
        "ref_4111111111111111",
        "3.4111111111111111",  # a decimal
        "4111 11111 111 1111",  # not a card layout
        "4111 1111-1111 1111",  # mixed separators
        "0000000000000000",  # issuer digit 0
        "7111111111111111",  # issuer digit 7 is not used for payment cards here
    ],
)
def test_card_false_positives(text: str) -> None:
    assert found(text, "card") == []


def test_card_inside_longer_digit_run_finds_nothing_at_all() -> None:
    run = "12" + "4111111111111111" + "34"
    assert not luhn.is_valid(run)
    assert scan_text(f"id {run} end") == []


# --- aadhaar ------------------------------------------------------------------------------------

AADHAAR = ["234123412346", with_verhoeff("98765432101"), with_verhoeff("50000000123")]


@pytest.mark.parametrize("number", AADHAAR)
def test_aadhaar_valid_verhoeff_is_found(number: str) -> None:
    assert found(f"UID {number}", "aadhaar") == [number]
    spaced = f"{number[:4]} {number[4:8]} {number[8:]}"
    assert found(f"UID {spaced}", "aadhaar") == [spaced]
    dashed = spaced.replace(" ", "-")
    assert found(f"UID {dashed}", "aadhaar") == [dashed]


@pytest.mark.parametrize("number", AADHAAR)
def test_aadhaar_off_by_one_is_not_found(number: str) -> None:
    assert found(f"UID {off_by_one(number)}", "aadhaar") == []


@pytest.mark.parametrize(
    "text",
    [
        with_verhoeff("12341234123"),  # first digit must be 2-9
        with_verhoeff("02341234123"),
        "1" + "234123412346",  # inside a longer run
        "234123412346" + "7",
        "23412 3412346",  # not 4-4-4
        "AB234123412346",
    ],
)
def test_aadhaar_false_positives(text: str) -> None:
    assert found(text, "aadhaar") == []


# --- PAN ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["ABCPE1234F", "ACUPA7085R", "AAACT1234Z"])
def test_pan_valid_is_found(value: str) -> None:
    assert found(f"PAN: {value}.", "pan") == [value]


@pytest.mark.parametrize(
    "text",
    [
        "ABCXE1234F",  # 4th character is not a holder class
        "ABCPE0000F",  # serial 0000
        "ABCPE12345",  # check character must be a letter
        "XABCPE1234F",  # inside a longer word
        "ABCPE1234FG",
        "abcpe1234f",  # lower case is not a PAN as written
    ],
)
def test_pan_false_positives(text: str) -> None:
    assert found(text, "pan") == []


# --- IBAN ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["GB82WEST12345698765432", "DE89370400440532013000", "GB82 WEST 1234 5698 7654 32", "NL91 ABNA 0417 1643 00"],
)
def test_iban_valid_is_found(value: str) -> None:
    assert found(f"IBAN {value} please", "iban") == [value]


def test_iban_followed_by_a_capital_word_keeps_the_word_out() -> None:
    assert found("to GB82 WEST 1234 5698 7654 32 ASAP", "iban") == ["GB82 WEST 1234 5698 7654 32"]


@pytest.mark.parametrize(
    "text",
    ["GB82WEST12345698765433", "GB83 WEST 1234 5698 7654 32", "XGB82WEST12345698765432", "DE8937040044053201300"],
)
def test_iban_false_positives(text: str) -> None:
    assert found(text, "iban") == []


# --- SSN ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["536-90-4399", "123-45-6789", "536 90 4399"])
def test_ssn_formatted_is_found(value: str) -> None:
    assert found(f"SSN {value}", "ssn") == [value]


def test_ssn_unformatted_needs_a_label() -> None:
    assert found("social security number: 536904399", "ssn") == ["536904399"]
    assert found("order 536904399 shipped", "ssn") == []


@pytest.mark.parametrize(
    "text",
    [
        "666-12-3456",  # area 666
        "000-12-3456",  # area 000
        "912-12-3456",  # area 9xx
        "123-00-4567",  # group 00
        "123-45-0000",  # serial 0000
        "078-05-1120",  # the famous wallet number
        "1536-90-4399",  # inside a longer run
        "536-90-43991",
        "536-90 4399",  # mixed separators
    ],
)
def test_ssn_false_positives(text: str) -> None:
    assert found(text, "ssn") == []


# --- e-mail -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["john.doe@example.com", "a+tag@sub.example.co.in", "X_Y%z@mail-host.org"])
def test_email_is_found(value: str) -> None:
    assert found(f"<{value}>", "email") == [value]


@pytest.mark.parametrize("text", ["user@localhost", "a@b", "@example.com", "x..y@example.com", "x@-example.com"])
def test_email_false_positives(text: str) -> None:
    assert found(text, "email") == []


# --- phone --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["+1 415 555 2671", "+14155552671", "+1 (415) 555-2671", "(415) 555-2671", "415-555-2671", "415.555.2671",
     "+91 98765 43210", "98765 43210", "+44 20 7946 0958"],
)  # fmt: skip
def test_phone_is_found(value: str) -> None:
    assert found(f"call {value} now", "phone") == [value]


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-05",
        "version 1.2.3.4",
        "+12 3",  # too short
        "+1234567890123456",  # too long for E.164
        "415-555.2671",  # mixed separators
        "115-555-2671",  # area code cannot start with 1
        "9876543210",  # bare 10-digit numbers are not matched (too many false positives)
        "1415-555-2671",
        "415-555-26710",
    ],
)
def test_phone_false_positives(text: str) -> None:
    assert found(text, "phone") == []


# --- scanning -----------------------------------------------------------------------------------


def test_detectors_argument_limits_the_scan() -> None:
    text = "4111 1111 1111 1111 john@example.com"
    assert [f.type for f in scan_text(text)] == ["card", "email"]
    assert [f.type for f in scan_text(text, detectors=["email"])] == ["email"]
    assert scan_text(text, detectors=[]) == []


def test_unknown_detector_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        scan_text("x", detectors=["passport"])


def test_findings_never_overlap_and_are_in_order() -> None:
    text = "+91 2341 2341 2346 and 4111 1111 1111 1111 and 536-90-4399 and ABCPE1234F " * 3
    findings = scan_text(text)
    assert findings
    for a, b in itertools.pairwise(findings):
        assert a.end <= b.start


def test_finding_holds_no_raw_value() -> None:
    (f,) = scan_text("4111111111111111")
    assert "4111111111111111" not in repr(f)
    assert f.masked == "XXXXXXXXXXXX1111"


def test_scan_is_bounded_and_says_truncated() -> None:
    text = "x" * 100 + " 4111111111111111"
    short = scan(text, limit_chars=50)
    assert short.truncated
    assert short.scanned_chars == 50
    assert short.findings == []
    full = scan(text, limit_chars=1000)
    assert not full.truncated
    assert [f.type for f in full.findings] == ["card"]


def test_all_lists_every_schema_detector() -> None:
    assert set(ALL) == {"card", "aadhaar", "pan", "iban", "ssn", "email", "phone"}


@pytest.mark.parametrize("blob", ["1 " * 50_000, "1234 " * 20_000, "a@" * 50_000, "+1" * 50_000, "9" * 100_000])
def test_pathological_input_scans_quickly(blob: str) -> None:
    # This thread's CPU time, not the wall clock: catastrophic backtracking costs seconds of CPU (0.3 s is the worst
    # here), while a loaded CI machine only stretches the wall clock.
    start = time.thread_time()
    scan_text(blob)
    assert time.thread_time() - start < 2.0


def test_no_detector_pattern_relies_on_possessive_or_atomic_matching() -> None:
    """Regression: CPython 3.11.0-3.11.4 (Debian 12's python3) mis-matches possessive quantifiers, so on a Debian
    desk "card 4111 1111 1111 1111" found nothing while 3.11.7 found the card."""
    import re

    from collectors.pii import detectors

    patterns = [value.pattern for value in vars(detectors).values() if isinstance(value, re.Pattern)]
    assert patterns
    for pattern in patterns:
        for construct in ("++", "*+", "?+", "}+", "(?>"):
            assert construct not in pattern.replace("\\+", ""), (construct, pattern)
