"""Regex pre-filters plus python-stdnum validators that find personal data in text, each finding with a
confidence (low, medium, high) from its checksum, its format and nearby keywords.

Pure functions, safe from any thread; callers bound the work with `limit_chars`. Findings carry
only offsets, a masked form and a confidence, never the raw value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from stdnum import iban as _iban
from stdnum import luhn as _luhn
from stdnum.in_ import aadhaar as _aadhaar
from stdnum.in_ import pan as _pan
from stdnum.us import ssn as _ssn

from collectors.pii.confidence import LOW, MEDIUM, confidence, confidence_at_least, has_keyword
from collectors.pii.findings import Finding
from collectors.pii.masking import MASK_CHAR, SEPARATORS, apply_masks, mask
from policy_client.schema import ALL_DETECTORS

ALL: tuple[str, ...] = tuple(ALL_DETECTORS)
DEFAULT_LIMIT_CHARS = 5 * 1024 * 1024
"""Scans look at the first 5 Mi characters; `ScanResult.truncated` says when text was cut."""

_PRIORITY = {name: rank for rank, name in enumerate(("card", "aadhaar", "iban", "ssn", "pan", "phone", "email"))}
"""When two findings overlap, the longer wins; on a tie, the earlier name here wins."""


@dataclass(frozen=True, slots=True)
class ScanResult:
    findings: list[Finding]
    truncated: bool
    """True when the text was longer than the limit and only its beginning was scanned."""
    scanned_chars: int


_Raw = tuple[str, int, int, int]
"""(detector, start, end, base confidence rank from checksum and format)."""

# --- numeric runs: card, aadhaar, ssn, bare mobile numbers ---------------------------------------
#
# A "run" is a maximal sequence of digit groups joined by one space, dash or dot. A candidate is a whole
# run, never a window of one: "4111 1111 1111 1111 123" and "1234 2341 2341 2346" hold nothing. The one
# split: a space next to a group of 7+ digits separates two numbers ("4111111111111111 12/27" holds the
# card). A run glued to a letter, an underscore, or to a word through "-" or "/" ("INV-4111...") is part
# of a longer identifier and holds nothing either.
# No possessive quantifiers or atomic groups: CPython 3.11.0-3.11.4 (Debian 12's python3 is 3.11.2) mis-matches
# them (gh-106052), which made "card 4111 1111 1111 1111" yield nothing. The run pattern cannot backtrack
# into itself (every repetition starts with a separator), so the greedy form costs the same.
_RUN = re.compile(r"\d+(?:[ .-]\d+)*")
_GROUP = re.compile(r"\d+")
_WORDISH = re.compile(r"\w")
_SSN_CONTEXT = re.compile(r"(?i)\b(?:ssn|ss#|social\s+security|soc\.?\s*sec)")
_CARD_FIRST_DIGITS = frozenset("234568")
"""Issuer ranges in use for payment cards (Visa 4, Mastercard 2/5, Amex/JCB/Diners 3, Discover/
RuPay/UnionPay/Maestro 6/5/8); 0, 1, 7 and 9 are left out to limit false positives."""
_MIN_RUN_CHARS = 9
_SOLID_GROUP = 7
"""A space next to an unformatted group of this many digits or more ends one number and starts another."""
_JOINERS = "-/"
_TOKEN_JOINERS = ("-", ".")
"""Separators that make one written token of several groups (spaces separate tokens)."""
"""Between a word and a number these make one identifier ("INV-4111...", "ABC/2024/...")."""


_Group = tuple[int, int, str]
"""(start, end, separator before it: '' for a piece's first group)."""
_Check = Callable[[str, list[_Group], str], int | None]
"""Returns the base confidence rank, or None when the candidate is not of this type."""


def _glued_left(text: str, start: int) -> bool:
    """True when a run touches a letter/digit/underscore on its left, or hangs off a word through "-" or "/"."""
    if start == 0:
        return False
    before = text[start - 1]
    if _WORDISH.match(before):
        return True
    return before in _JOINERS and start > 1 and bool(_WORDISH.match(text[start - 2]))


def _glued_right(text: str, end: int) -> bool:
    if end >= len(text):
        return False
    after = text[end]
    if _WORDISH.match(after):
        return True
    return after in _JOINERS and end + 1 < len(text) and bool(_WORDISH.match(text[end + 1]))


_WORD = re.compile(r"[^\W_]+")


def _code_before(text: str, start: int) -> bool:
    """One space, then a word mixing letters and digits ("A0 1234 ..."): a short group after it continues a code."""
    if start < 2 or text[start - 1] != " " or not text[start - 2].isalnum():
        return False
    i = start - 2
    while i > 0 and text[i - 1].isalnum() and start - i < 8:
        i -= 1
    return _mixed(text[i : start - 1])


def _code_after(text: str, end: int) -> bool:
    if end + 1 >= len(text) or text[end] != " ":
        return False
    m = _WORD.match(text, end + 1)
    return m is not None and _mixed(m.group())


def _mixed(word: str) -> bool:
    """A short letters-and-digits group such as an IBAN's ("A0", "X9Y2"); a longer code ("A1B2C3D4") is a word."""
    return len(word) <= 4 and any(ch.isdigit() for ch in word) and any(ch.isalpha() for ch in word)


def _sizes(groups: list[_Group]) -> list[int]:
    return [g[1] - g[0] for g in groups]


def _separator(groups: list[_Group]) -> str | None:
    """The one separator of a grouped candidate ('' for one group), or None when it mixes separators."""
    seps = {g[2] for g in groups[1:]}
    if not seps:
        return ""
    return seps.pop() if len(seps) == 1 else None


def _card_brand_fits(d: str) -> bool:
    """The number's issuer prefix and length belong to a scheme in use (Visa, Mastercard, Amex, Diners, JCB,
    Discover, RuPay, UnionPay)."""
    n = len(d)
    two, three, four = int(d[:2]), int(d[:3]), int(d[:4])
    if d[0] == "4":
        return n in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16
    if two in (34, 37):
        return n == 15
    if two in (36, 38, 39) or 300 <= three <= 305:
        return n in (14, 16)
    if 3528 <= four <= 3589:
        return 16 <= n <= 19
    if four == 6011 or two == 65 or 644 <= three <= 649 or two == 62:
        return 16 <= n <= 19
    if two in (60, 81, 82) or three == 508:
        return n == 16
    return False


def _is_card(text: str, groups: list[_Group], digits: str) -> int | None:
    if not 13 <= len(digits) <= 19 or digits[0] not in _CARD_FIRST_DIGITS:
        return None
    sep = _separator(groups)
    if sep is None:
        return None
    if len(groups) > 1:
        sizes = _sizes(groups)
        spaced_fours = all(s == 4 for s in sizes[:-1]) and 1 <= sizes[-1] <= 4
        amex_like = len(sizes) == 3 and sizes[0] == 4 and sizes[1] == 6 and sizes[2] in (4, 5)
        if not (spaced_fours or amex_like):
            return None
    if not _luhn.is_valid(digits):
        return None
    return MEDIUM if sep != "." and _card_brand_fits(digits) else LOW


def _is_aadhaar(text: str, groups: list[_Group], digits: str) -> int | None:
    if len(digits) != 12 or digits[0] in "01":
        return None
    sep = _separator(groups)
    if sep is None or (len(groups) > 1 and _sizes(groups) != [4, 4, 4]):
        return None
    if not _aadhaar.is_valid(digits):
        return None
    # Aadhaar letters print the number as 4-4-4; an unformatted 12-digit number is as often a UPI reference.
    return MEDIUM if sep in (" ", "-") else LOW


def _is_ssn(text: str, groups: list[_Group], digits: str) -> int | None:
    if len(digits) != 9:
        return None
    sep = _separator(groups)
    if sep is None:
        return None
    if len(groups) == 1:
        # An unformatted 9-digit number is an SSN only next to a label; otherwise every order number would match.
        window = text[max(0, groups[0][0] - 32) : groups[0][0]]
        if not _SSN_CONTEXT.search(window):
            return None
    elif _sizes(groups) != [3, 2, 4]:
        return None
    if not _ssn.is_valid(digits):
        return None
    return MEDIUM if sep == "-" else LOW


def _is_bare_mobile(text: str, groups: list[_Group], digits: str) -> int | None:
    """Indian mobile numbers written without spaces (9876543210, 09876543210): only next to a phone keyword."""
    if len(groups) != 1 or len(digits) not in (10, 11):
        return None
    national = digits[1:] if len(digits) == 11 else digits
    if (len(digits) == 11 and digits[0] != "0") or national[0] not in "6789":
        return None
    if not has_keyword(text, "phone", groups[0][0], groups[0][1]):
        return None
    return LOW


_NUMERIC: tuple[tuple[str, _Check], ...] = (
    ("card", _is_card),
    ("aadhaar", _is_aadhaar),
    ("ssn", _is_ssn),
    ("phone", _is_bare_mobile),
)
_CANDIDATE_SIZES = frozenset({9, 10, 11, 12, *range(13, 20)})


def _numeric_findings(text: str, wanted: frozenset[str]) -> Iterator[_Raw]:
    checks = [(name, check) for name, check in _NUMERIC if name in wanted]
    if not checks:
        return
    for run in _RUN.finditer(text):
        r_start, r_end = run.span()
        if r_end - r_start < _MIN_RUN_CHARS:
            continue
        glued_left, glued_right = _glued_left(text, r_start), _glued_right(text, r_end)
        chunk = run.group()
        if chunk.isdigit():  # the common case: one group
            if len(chunk) in _CANDIDATE_SIZES and not (glued_left or glued_right):
                yield from _check_candidate(text, [(r_start, r_end, "")], chunk, checks)
            continue
        groups: list[_Group] = []
        prev_end = -1
        for g in _GROUP.finditer(text, r_start, r_end):
            groups.append((g.start(), g.end(), text[prev_end] if prev_end >= 0 else ""))
            prev_end = g.end()
        for piece in _pieces(groups):
            if sum(g[1] - g[0] for g in piece) not in _CANDIDATE_SIZES:
                continue
            digits = "".join(text[g[0] : g[1]] for g in piece)
            # Glue binds only the piece that touches it: "ID-1234 4111111111111111" still holds the card. A short
            # group next to a letters-and-digits code through one space continues that code ("... 3061 78 A0");
            # an unformatted 7+ digit number stands on its own.
            first, last = piece[0], piece[-1]
            if first[0] == r_start and (
                glued_left or (first[1] - first[0] < _SOLID_GROUP and _code_before(text, r_start))
            ):
                continue
            if last[1] == r_end and (glued_right or (last[1] - last[0] < _SOLID_GROUP and _code_after(text, r_end))):
                continue
            yield from _check_candidate(text, piece, digits, checks)


def _pieces(groups: list[_Group]) -> Iterator[list[_Group]]:
    """Split a run at each space next to a number that stands on its own: an unformatted group of 7+ digits, or
    groups joined by dashes or dots ("5500-0000-0000-0004 2024-05-17" is a card and a date). Spaces join only
    short plain groups ("4111 1111 1111 1111 123" stays one run)."""
    piece: list[_Group] = []
    n = len(groups)
    for i, group in enumerate(groups):
        if piece and group[2] == " ":
            prev = groups[i - 1]
            split = (
                group[1] - group[0] >= _SOLID_GROUP
                or prev[1] - prev[0] >= _SOLID_GROUP
                or prev[2] in _TOKEN_JOINERS
                or (i + 1 < n and groups[i + 1][2] in _TOKEN_JOINERS)
            )
            if split:
                yield piece
                piece = []
        piece.append(group if piece else (group[0], group[1], ""))
    if piece:
        yield piece


def _check_candidate(text: str, groups: list[_Group], digits: str, checks: list[tuple[str, _Check]]) -> Iterator[_Raw]:
    for name, check in checks:
        base = check(text, groups, digits)
        if base is not None:
            yield name, groups[0][0], groups[-1][1], base
            return


# --- PAN, IBAN ----------------------------------------------------------------------------------

_PAN = re.compile(r"[A-Z]{3}[ABCFGHLJPTK][A-Z]\d{4}[A-Z](?![A-Za-z0-9])")
_IBAN = re.compile(r"[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)(?![A-Za-z0-9])")


# Patterns start without a look-behind so the regex engine can skip ahead quickly; the character
# before a match is checked here instead.
def _preceded_by(text: str, start: int, chars: str) -> bool:
    return start > 0 and (text[start - 1].isalnum() or text[start - 1] in chars)


def _pan_findings(text: str) -> Iterator[_Raw]:
    for m in _PAN.finditer(text):
        start, end = m.span()
        if _preceded_by(text, start, "") or _glued_left(text, start) or _glued_right(text, end):
            continue
        if _pan.is_valid(m.group()):
            # The fourth letter is the holder's class; P (a person) is the one a contact centre meets.
            yield "pan", start, end, MEDIUM if m.group()[3] == "P" else LOW


def _next_word_has_digit(text: str, end: int) -> bool:
    """After one space, a word holding a digit: a spaced IBAN followed by it would be part of a longer run."""
    if end + 1 >= len(text) or text[end] != " ":
        return False
    stop = end + 1
    while stop < len(text) and text[stop].isalnum():
        stop += 1
    return any(ch.isdigit() for ch in text[end + 1 : stop])


def _iban_findings(text: str) -> Iterator[_Raw]:
    for m in _IBAN.finditer(text):
        start = m.start()
        if _preceded_by(text, start, "") or _glued_left(text, start):
            continue
        value = m.group()
        end = m.end()
        # A following word written in capitals may have been taken as a last group: drop such words (letters
        # only) until valid. A dropped group with a digit means a longer run, which holds no IBAN.
        while True:
            continued = " " in value and _next_word_has_digit(text, end)
            if not continued and not _glued_right(text, end) and _iban.is_valid(value):
                yield "iban", start, end, MEDIUM
                break
            cut = value.rfind(" ")
            if cut <= 4 or not value[cut + 1 :].isalpha():
                break
            value = value[:cut]
            end = start + cut


# --- e-mail, phone ------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+@-])[A-Za-z0-9._%+-]{1,64}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,24}(?![A-Za-z0-9_@-]|\.[A-Za-z0-9])"
)
_PHONE_INTL = re.compile(r"\+[1-9]\d*(?:[ -]?\(\d{1,4}\))?(?:[ .-]\d+)*")
_PHONE_NANP = re.compile(r"(?:\([2-9]\d{2}\) ?|[2-9]\d{2}([-. ]))[2-9]\d{2}([-. ])\d{4}")
"""North American numbers; a leading "1 " / "1-" country code is taken in by `_phone_findings` (an optional group
in the pattern would triple its cost)."""
_PHONE_IN = re.compile(r"0?[6-9]\d{4}[ -]\d{5}")
"""Indian mobile numbers written 98765 43210 / 98765-43210; the unformatted 9876543210 is a numeric run above."""


def _phone_tail_ok(text: str, end: int) -> bool:
    if end < len(text):
        after = text[end]
        if _WORDISH.match(after):
            return False
        nxt = text[end + 1] if end + 1 < len(text) else ""
        if (after in " ." and nxt.isdigit()) or (after in "-/" and nxt.isalnum()):
            return False
    return True


def _continues_run_left(text: str, start: int) -> bool:
    """The value follows a digit and one separator: it would be a window of a longer run."""
    return start > 1 and text[start - 1] in " .-" and text[start - 2].isdigit()


def _phone_findings(text: str) -> Iterator[_Raw]:
    if "+" not in text:
        intl: Iterator[re.Match[str]] = iter(())
    else:
        intl = _PHONE_INTL.finditer(text)
    for m in intl:
        if _preceded_by(text, m.start(), "_+") or _glued_left(text, m.start()):
            continue
        digits = sum(ch.isdigit() for ch in m.group())
        if 8 <= digits <= 15 and _phone_tail_ok(text, m.end()):
            yield "phone", m.start(), m.end(), MEDIUM
    for m in _PHONE_NANP.finditer(text):
        start = m.start()
        if _continues_run_left(text, start) and text[start - 2] == "1" and not _continues_run_left(text, start - 2):
            start -= 2  # "1 415 555 2671", "1-415-555-2671": the country code belongs to the number
        bracket = text[start] == "("  # an opening bracket starts a new number whatever comes before it
        if _preceded_by(text, start, "_+(.-/") or (not bracket and _continues_run_left(text, start)):
            continue
        # The bracket form has no first separator; otherwise both separators must agree.
        if m.group(1) is not None and m.group(1) != m.group(2):
            continue
        if _phone_tail_ok(text, m.end()):
            yield "phone", start, m.end(), MEDIUM
    for m in _PHONE_IN.finditer(text):
        start = m.start()
        if _preceded_by(text, start, "_+.-/") or _continues_run_left(text, start):
            continue
        if _phone_tail_ok(text, m.end()):
            yield "phone", start, m.end(), MEDIUM


_MASKED_EMAIL_CHARS = frozenset("X") | SEPARATORS
_MAX_DOMAIN = 253


def _email_findings(text: str) -> Iterator[_Raw]:
    # Only look around each "@": most text has none, and the regex never scans long runs in vain.
    at = text.find("@")
    resume = 0
    while at >= 0:
        m = _EMAIL.search(text, max(resume, at - 64), min(len(text), at + _MAX_DOMAIN + 1))
        next_at = text.find("@", at + 1)
        if m is not None and m.start() <= at:
            resume = m.end()
            local, _, domain = m.group().partition("@")
            masked_already = set(local) <= _MASKED_EMAIL_CHARS and set(domain.rpartition(".")[0]) <= _MASKED_EMAIL_CHARS
            # "XXXX@XXXXXXX.com" is an address this module already masked, not a new finding.
            malformed = (
                local.startswith(".") or local.endswith(".") or ".." in local or not any(c.isalnum() for c in local)
            )
            if not (malformed or masked_already):
                yield "email", m.start(), m.end(), MEDIUM
            while 0 <= next_at < resume:
                next_at = text.find("@", next_at + 1)
        at = next_at


# --- scanning -----------------------------------------------------------------------------------


def _raw_findings(text: str, wanted: frozenset[str]) -> Iterator[_Raw]:
    yield from _numeric_findings(text, wanted)
    if "pan" in wanted:
        yield from _pan_findings(text)
    if "iban" in wanted:
        yield from _iban_findings(text)
    if "email" in wanted:
        yield from _email_findings(text)
    if "phone" in wanted:
        yield from _phone_findings(text)


def _resolve_overlaps(raw: Iterable[_Raw]) -> list[_Raw]:
    """Drop overlapping findings: within each cluster of overlapping spans the longer wins, then `_PRIORITY`."""
    ordered = sorted(raw, key=lambda f: f[1])
    kept: list[_Raw] = []
    cluster: list[_Raw] = []
    cluster_end = -1
    for cand in [*ordered, ("", 1 << 62, 1 << 62, 0)]:
        if cand[1] >= cluster_end and cluster:
            chosen: list[_Raw] = []
            for c in sorted(cluster, key=lambda f: (-(f[2] - f[1]), _PRIORITY.get(f[0], 99), f[1])):
                if all(c[2] <= k[1] or c[1] >= k[2] for k in chosen):
                    chosen.append(c)
            kept.extend(sorted(chosen, key=lambda f: f[1]))
            cluster = []
        cluster.append(cand)
        cluster_end = max(cluster_end, cand[2]) if len(cluster) > 1 else cand[2]
    return kept


def _validate_names(detectors: Iterable[str]) -> frozenset[str]:
    wanted = frozenset(detectors)
    unknown = wanted - set(ALL)
    if unknown:
        raise ValueError(f"unknown detector(s): {', '.join(sorted(unknown))}")
    return wanted


def scan(text: str, *, detectors: Iterable[str] = ALL, limit_chars: int = DEFAULT_LIMIT_CHARS) -> ScanResult:
    """Scan the first `limit_chars` characters of `text` with the named detectors; every finding, whatever its
    confidence (callers compare it with the policy's `min_confidence`)."""
    wanted = _validate_names(detectors)
    truncated = len(text) > limit_chars
    body = text[:limit_chars] if truncated else text
    findings = [
        Finding(
            type=name,
            start=start,
            end=end,
            masked=mask(body[start:end], name),
            confidence=confidence(body, name, start, end, base),
        )
        for name, start, end, base in _resolve_overlaps(_raw_findings(body, wanted))
    ]
    return ScanResult(findings=findings, truncated=truncated, scanned_chars=len(body))


def scan_text(text: str, *, detectors: Iterable[str] = ALL, limit_chars: int = DEFAULT_LIMIT_CHARS) -> list[Finding]:
    """The findings of `scan`; use `scan` when you need to know whether the text was truncated."""
    return scan(text, detectors=detectors, limit_chars=limit_chars).findings


_MAX_MASK_PASSES = 4
_CONTEXT = 2
"""How far the boundary checks (glued groups, phone tails) look past a value."""


def mask_text(
    text: str, findings: Sequence[Finding], *, limit_chars: int = DEFAULT_LIMIT_CHARS, min_confidence: str = "low"
) -> str:
    """`text` with every finding replaced by its masked form (for clipboard mask mode).

    The four characters a mask reveals could, with neighbouring digits, form a new valid number.
    So the result is re-scanned: anything the same detectors find again at `min_confidence` or above, and
    anything any detector finds within two characters of a masked span (masking moves its neighbours'
    boundaries), whatever its confidence, is masked completely, until a re-scan finds nothing more.
    A finding below `min_confidence` away from every masked span is left as it is (the caller passes only the
    findings policy acts on; "low", the default, re-masks everything found again).
    Text past `limit_chars` is left as it is.
    """
    types = frozenset(f.type for f in findings)
    spans = [(f.start, f.end) for f in findings]
    out = apply_masks(text, findings)

    def near(f: Finding) -> bool:
        return any(f.start < end + _CONTEXT and start < f.end + _CONTEXT for start, end in spans)

    for _ in range(_MAX_MASK_PASSES):
        again = (
            [
                f
                for f in scan_text(out, detectors=types, limit_chars=limit_chars)
                if near(f) or confidence_at_least(f.confidence, min_confidence)
            ]
            if types
            else []
        )
        if spans:
            again += [f for f in scan_text(out, limit_chars=limit_chars) if f.type not in types and near(f)]
        if not again:
            return out
        out = apply_masks(out, [replace(f, masked=_full_mask(out[f.start : f.end])) for f in again])
        spans.extend((f.start, f.end) for f in again)
    return out


def _full_mask(value: str) -> str:
    return "".join(ch if ch in SEPARATORS else MASK_CHAR for ch in value)
