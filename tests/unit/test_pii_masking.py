"""Masking, keyed hashes and summaries, with Hypothesis properties: a mask never reveals more than
the last four characters of a value, and mask_text leaves nothing a re-scan would find."""

from __future__ import annotations

import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum import luhn, verhoeff

from collectors.pii import ALL, keyed_hash, mask, mask_text, scan_text, summarize
from collectors.pii.masking import MASK_CHAR, SEPARATORS

KEY = b"k" * 32


def assert_reveals_at_most_last_four(value: str, masked: str) -> None:
    assert len(masked) == len(value)
    for i, (orig, out) in enumerate(zip(value, masked, strict=True)):
        if i >= len(value) - 4:
            assert out in (orig, MASK_CHAR)
        elif orig in SEPARATORS:
            assert out == orig
        else:
            assert out == MASK_CHAR, f"position {i} of {value!r} revealed as {masked!r}"


@given(value=st.text(min_size=0, max_size=80), detector=st.sampled_from(ALL))
def test_mask_never_reveals_more_than_the_last_four_characters(value: str, detector: str) -> None:
    assert_reveals_at_most_last_four(value, mask(value, detector))


def test_mask_examples() -> None:
    assert mask("4111 1111 1111 1111", "card") == "XXXX XXXX XXXX 1111"
    assert mask("536-90-4399", "ssn") == "XXX-XX-4399"
    assert mask("john.doe@example.com", "email") == "XXXX.XXX@XXXXXXX.com"
    assert mask("ABCPE1234F", "pan") == "XXXXXX234F"
    assert mask("a@b.io", "email") == "X@X.XX"  # fewer than 8 letters/digits: nothing revealed


def test_keyed_hash_normalises_formatting_and_depends_on_key() -> None:
    a = keyed_hash("4111 1111 1111 1111", KEY)
    assert a == keyed_hash("4111-1111-1111-1111", KEY) == keyed_hash("4111111111111111", KEY)
    assert len(a) == 16
    assert all(c in string.hexdigits for c in a)
    assert a != keyed_hash("4111111111111111", b"other key")
    assert keyed_hash("John.Doe@Example.com", KEY) == keyed_hash("john.doe@example.com", KEY)
    assert keyed_hash("abcpe1234f", KEY) == keyed_hash("ABCPE1234F", KEY)


def test_summarize_counts_per_type_with_first_sample_and_no_raw_values() -> None:
    text = "4111 1111 1111 1111, 5500-0000-0000-0004 and 234123412346 and john@example.com"
    summary = summarize(scan_text(text), text, KEY)
    assert [s["type"] for s in summary] == ["card", "aadhaar", "email"]
    card = summary[0]
    assert card["count"] == 2
    assert card["sample"] == "XXXX XXXX XXXX 1111"
    assert card["hash"] == keyed_hash("4111111111111111", KEY)
    dumped = json.dumps(summary)
    for raw in ("4111 1111 1111 1111", "4111111111111111", "5500", "234123412346", "john@example.com"):
        assert raw not in dumped


def test_mask_text_replaces_every_finding() -> None:
    text = "Card 4111 1111 1111 1111 / Aadhaar 2341 2341 2346 / mail john@example.com."
    out = mask_text(text, scan_text(text))
    assert out == "Card XXXX XXXX XXXX 1111 / Aadhaar XXXX XXXX 2346 / mail XXXX@XXXXXXX.com."
    assert mask_text(text, []) == text


def test_revealed_digits_cannot_form_a_new_number_with_the_groups_after_them() -> None:
    # The card's last four digits with the next two groups would pass as an Aadhaar. Written as one run, the
    # six groups hold no number at all; with the card unformatted, its masked form glues the four revealed
    # digits to the X before them, so the re-scan after masking finds nothing either.
    card = next(c for c in (with_luhn(f"41111111111{n:04d}") for n in range(2000, 3000)) if c[-4] in "23456789")
    aadhaar = with_verhoeff(card[-4:] + "2345678")
    grouped = f"{card[:4]} {card[4:8]} {card[8:12]} {card[12:]} {aadhaar[4:8]} {aadhaar[8:]}"
    assert scan_text(grouped) == []
    solid = f"{card} {aadhaar[4:8]} {aadhaar[8:]}"
    findings = scan_text(solid)
    assert [f.type for f in findings] == ["card"]
    out = mask_text(solid, findings)
    assert out == f"XXXXXXXXXXXX{card[-4:]} {aadhaar[4:8]} {aadhaar[8:]}"
    assert scan_text(out) == []


def with_luhn(prefix: str) -> str:
    return prefix + luhn.calc_check_digit(prefix)


def with_verhoeff(prefix: str) -> str:
    return prefix + verhoeff.calc_check_digit(prefix)


# --- generated text -----------------------------------------------------------------------------


@st.composite
def cards(draw: st.DrawFn) -> str:
    first = draw(st.sampled_from("23456"))
    body = draw(st.text(alphabet=string.digits, min_size=14, max_size=14))
    number = with_luhn(first + body)
    if draw(st.booleans()):
        sep = draw(st.sampled_from(" -"))
        number = sep.join(number[i : i + 4] for i in range(0, 16, 4))
    return number


@st.composite
def aadhaars(draw: st.DrawFn) -> str:
    first = draw(st.sampled_from("23456789"))
    body = draw(st.text(alphabet=string.digits, min_size=10, max_size=10))
    number = with_verhoeff(first + body)
    if draw(st.booleans()):
        number = f"{number[:4]} {number[4:8]} {number[8:]}"
    return number


ssns = st.builds(
    lambda a, g, s: f"{a:03d}-{g:02d}-{s:04d}",
    st.integers(1, 665),
    st.integers(1, 99),
    st.integers(1, 9999),
)
emails = st.builds(
    lambda u, d: f"{u}@{d}.com",
    st.text(alphabet=string.ascii_lowercase + ".", min_size=1, max_size=10).filter(
        lambda u: not u.startswith(".") and not u.endswith(".") and ".." not in u
    ),
    st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=10),
)
phones = st.sampled_from(["+1 415 555 2671", "(415) 555-2671", "+91 98765 43210", "98765 43210"])
noise = st.text(alphabet=string.ascii_letters + string.digits + " -.,@+()\n", max_size=30)
pieces = st.one_of(cards(), aadhaars(), ssns, emails, phones, st.sampled_from(["IBAN GB82 WEST 1234 5698 7654 32",
                   "PAN ABCPE1234F"]), noise, st.text(alphabet=string.digits, min_size=1, max_size=20))  # fmt: skip
joiners = st.sampled_from([" ", "  ", "\n", ", ", "-", "", "x"])


@st.composite
def documents(draw: st.DrawFn) -> str:
    parts: list[str] = draw(st.lists(pieces, min_size=1, max_size=12))
    out = parts[0]
    for part in parts[1:]:
        out += draw(joiners) + part
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=documents())
def test_findings_mask_their_own_span(text: str) -> None:
    for f in scan_text(text):
        value = text[f.start : f.end]
        assert f.masked == mask(value, f.type)
        assert_reveals_at_most_last_four(value, f.masked)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=documents(), subset=st.sets(st.sampled_from(ALL), min_size=1))
def test_mask_text_leaves_no_finding(text: str, subset: set[str]) -> None:
    findings = scan_text(text, detectors=subset)
    out = mask_text(text, findings)
    assert len(out) == len(text)
    assert scan_text(out, detectors=subset) == []
    for f in findings:
        assert out[f.start : f.end] != text[f.start : f.end]


def test_mask_text_leaves_findings_below_min_confidence_alone_unless_they_touch_a_mask() -> None:
    text = "Order no.: 4111111111111111 shipped; customer card 5500 0000 0000 0004 exp 12/27"
    high = [f for f in scan_text(text) if f.confidence == "high"]
    masked = mask_text(text, high, min_confidence="medium")
    assert masked == text.replace("5500 0000 0000 0004", "XXXX XXXX XXXX 0004")
    assert [f.confidence for f in scan_text(masked)] == ["low"]
    # The default re-masks whatever the same detectors find again, as before.
    assert not [f for f in scan_text(mask_text(text, high)) if f.type == "card"]
