"""Hypothesis against the PII detectors: scan_text/mask_text never crash and masks reveal at most 4 characters."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from collectors.pii.detectors import ALL, mask_text, scan, scan_text
from collectors.pii.masking import MASK_CHAR, REVEAL_LAST, SEPARATORS
from tests.fuzz.budget import budget

# Text that looks like the things the detectors hunt for: digit groups, separators, letters, @ and dots.
_PIECES = st.one_of(
    st.text(alphabet="0123456789", min_size=1, max_size=20),
    st.sampled_from([" ", "-", ".", "@", "+", "(", ")", "/", "\n", "SSN ", "IN", "GB82 ", "x", "ABCDE1234F"]),
    st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.(com|in|org)", fullmatch=True),
    st.from_regex(r"4[0-9]{3}[ -]?[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{4}", fullmatch=True),
    st.text(max_size=6),
)
PII_LIKE = st.lists(_PIECES, max_size=30).map("".join)
ANY_TEXT = st.one_of(st.text(max_size=400), PII_LIKE)
DETECTORS = st.lists(st.sampled_from(ALL), unique=True, min_size=1).map(tuple)


def _hidden_prefix_ok(original: str, masked: str) -> bool:
    """Everything but the last REVEAL_LAST characters is a mask character or a separator kept in place."""
    head = len(original) - REVEAL_LAST
    return all(
        (ch == MASK_CHAR or (ch in SEPARATORS and ch == original[i])) for i, ch in enumerate(masked[: max(0, head)])
    )


@budget(400)
@given(text=ANY_TEXT, detectors=DETECTORS)
def test_scan_and_mask_never_crash_and_findings_are_well_formed(text: str, detectors: tuple[str, ...]) -> None:
    findings = scan_text(text, detectors=detectors)
    for finding in findings:
        assert finding.type in detectors
        assert 0 <= finding.start < finding.end <= len(text)
        value = text[finding.start : finding.end]
        assert len(finding.masked) == len(value)
        assert _hidden_prefix_ok(value, finding.masked), (value, finding.masked)
    masked = mask_text(text, findings)
    assert len(masked) == len(text)


@budget(400)
@given(text=PII_LIKE)
def test_masked_text_reveals_no_more_than_the_last_four_characters_of_any_finding(text: str) -> None:
    findings = scan_text(text)
    masked = mask_text(text, findings)
    for finding in findings:
        value = text[finding.start : finding.end]
        shown = masked[finding.start : finding.end]
        assert _hidden_prefix_ok(value, shown), (value, shown)
    # Whatever is still visible never forms a complete value of the detectors that fired.
    fired = {f.type for f in findings}
    again = scan_text(masked, detectors=fired) if fired else []
    assert not again, (text, masked, again)


@budget(100)
@given(text=st.text(min_size=1, max_size=200), limit=st.integers(min_value=0, max_value=250))
def test_scan_limit_is_honoured(text: str, limit: int) -> None:
    result = scan(text, limit_chars=limit)
    assert result.scanned_chars == min(len(text), limit)
    assert result.truncated == (len(text) > limit)
    assert all(f.end <= limit for f in result.findings)
