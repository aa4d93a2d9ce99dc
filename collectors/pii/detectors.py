"""Regex pre-filters plus python-stdnum validators that find personal data in text.

Pure functions, safe from any thread; callers bound the work with `limit_chars`. Findings carry
only offsets and a masked form, never the raw value.
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

from collectors.pii.masking import MASK_CHAR, SEPARATORS, apply_masks, mask
from policy_client.schema import ALL_DETECTORS

ALL: tuple[str, ...] = tuple(ALL_DETECTORS)
DEFAULT_LIMIT_CHARS = 5 * 1024 * 1024
"""Scans look at the first 5 Mi characters; `ScanResult.truncated` says when text was cut."""

_PRIORITY = {name: rank for rank, name in enumerate(("card", "aadhaar", "iban", "ssn", "pan", "phone", "email"))}
"""When two findings overlap, the longer wins; on a tie, the earlier name here wins."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected value: its detector, its span in the scanned text and its masked form."""

    type: str
    start: int
    end: int
    masked: str


@dataclass(frozen=True, slots=True)
class ScanResult:
    findings: list[Finding]
    truncated: bool
    """True when the text was longer than the limit and only its beginning was scanned."""
    scanned_chars: int


# --- numeric runs: card, aadhaar, ssn ----------------------------------------------------------
#
# A "run" is a maximal sequence of digit groups joined by one space or one dash. Candidates are
# contiguous groups of a run, so a number never begins or ends inside a group of adjacent digits
# (digits inside longer digit runs never match), while "4111 1111 1111 1111 123" still yields the
# card. Possessive quantifiers keep the scan linear.
# No possessive quantifiers or atomic groups: CPython 3.11.0-3.11.4 (Debian 12's python3 is 3.11.2) mis-matches
# them (gh-106052), which made "card 4111 1111 1111 1111" yield nothing. With nothing after the run to backtrack
# into, the greedy forms match exactly the same text at the same cost.
_RUN = re.compile(r"\d+(?:[ -]\d+)*")
_GROUP = re.compile(r"\d+")
_WORDISH = re.compile(r"\w")
_SSN_CONTEXT = re.compile(r"(?i)\b(?:ssn|ss#|social\s+security|soc\.?\s*sec)")
_CARD_FIRST_DIGITS = frozenset("234568")
"""Issuer ranges in use for payment cards (Visa 4, Mastercard 2/5, Amex/JCB/Diners 3, Discover/
RuPay/UnionPay/Maestro 6/5/8); 0, 1, 7 and 9 are left out to limit false positives."""
_MIN_RUN_CHARS = 9
_MAX_CANDIDATE_DIGITS = 19


_Group = tuple[int, int, str]
"""(start, end, separator before it: '' for a run's first group)."""
_Check = Callable[[str, list[_Group], str], bool]


def _glued_left(text: str, start: int) -> bool:
    """True when a group touches a letter/underscore on its left or ends a decimal like 3.1415..."""
    if start == 0:
        return False
    before = text[start - 1]
    return bool(_WORDISH.match(before)) or (before == "." and start > 1 and text[start - 2].isdigit())


def _glued_right(text: str, end: int) -> bool:
    if end >= len(text):
        return False
    after = text[end]
    return bool(_WORDISH.match(after)) or (after == "." and end + 1 < len(text) and text[end + 1].isdigit())


def _is_card(text: str, groups: list[_Group], digits: str) -> bool:
    if not 13 <= len(digits) <= 19 or digits[0] not in _CARD_FIRST_DIGITS:
        return False
    if len(groups) > 1:
        sizes = [g[1] - g[0] for g in groups]
        spaced_fours = all(s == 4 for s in sizes[:-1]) and 1 <= sizes[-1] <= 4
        amex_like = len(sizes) == 3 and sizes[0] == 4 and sizes[1] == 6 and sizes[2] in (4, 5)
        if not (spaced_fours or amex_like):
            return False
    return bool(_luhn.is_valid(digits))


def _is_aadhaar(text: str, groups: list[_Group], digits: str) -> bool:
    if len(digits) != 12 or digits[0] in "01":
        return False
    if len(groups) > 1 and [g[1] - g[0] for g in groups] != [4, 4, 4]:
        return False
    return bool(_aadhaar.is_valid(digits))


def _is_ssn(text: str, groups: list[_Group], digits: str) -> bool:
    if len(digits) != 9:
        return False
    if len(groups) == 1:
        # An unformatted 9-digit number is an SSN only next to a label; otherwise every order number would match.
        window = text[max(0, groups[0][0] - 32) : groups[0][0]]
        if not _SSN_CONTEXT.search(window):
            return False
    elif [g[1] - g[0] for g in groups] != [3, 2, 4]:
        return False
    return bool(_ssn.is_valid(digits))


_NUMERIC: tuple[tuple[str, _Check], ...] = (("card", _is_card), ("aadhaar", _is_aadhaar), ("ssn", _is_ssn))
_SINGLE_SIZES = frozenset({9, 12, *range(13, 20)})


def _numeric_findings(text: str, wanted: frozenset[str]) -> Iterator[tuple[str, int, int]]:
    checks = [(name, check) for name, check in _NUMERIC if name in wanted]
    if not checks:
        return
    for run in _RUN.finditer(text):
        r_start, r_end = run.span()
        if r_end - r_start < _MIN_RUN_CHARS:
            continue
        chunk = run.group()
        if chunk.isdigit():  # the common case: one group
            if chunk.__len__() in _SINGLE_SIZES and not _glued_left(text, r_start) and not _glued_right(text, r_end):
                group = [(r_start, r_end, "")]
                for name, check in checks:
                    if check(text, group, chunk):
                        yield name, r_start, r_end
                        break
            continue
        groups: list[_Group] = []
        prev_end = -1
        for g in _GROUP.finditer(text, r_start, r_end):
            groups.append((g.start(), g.end(), text[prev_end] if prev_end >= 0 else ""))
            prev_end = g.end()
        # A group glued to a word ("ID4111...") or to a decimal point cannot start or end a number.
        if _glued_left(text, r_start):
            groups = groups[1:]
        if groups and _glued_right(text, r_end):
            groups = groups[:-1]
        if groups:
            yield from _scan_groups(text, groups, checks)


def _scan_groups(text: str, groups: list[_Group], checks: list[tuple[str, _Check]]) -> Iterator[tuple[str, int, int]]:
    """Greedy left to right: at each group take the longest candidate any detector accepts."""
    i = 0
    n = len(groups)
    while i < n:
        first = groups[i]
        size = first[1] - first[0]
        # Layouts of grouped numbers start with 3 (SSN) or 4 digits (cards, Aadhaar); others stand alone.
        last = i
        if size in (3, 4):
            total = size
            sep = groups[i + 1][2] if i + 1 < n else ""
            while last + 1 < n and groups[last + 1][2] == sep:
                nxt = groups[last + 1][1] - groups[last + 1][0]
                if nxt > 6 or total + nxt > _MAX_CANDIDATE_DIGITS:
                    break
                last += 1
                total += nxt
        matched = -1
        for j in range(last, i - 1, -1):
            cand = groups[i : j + 1]
            digits = "".join(text[g[0] : g[1]] for g in cand)
            if len(digits) not in _SINGLE_SIZES:
                continue
            for name, check in checks:
                if check(text, cand, digits):
                    yield name, cand[0][0], cand[-1][1]
                    matched = j
                    break
            if matched >= 0:
                break
        i = matched + 1 if matched >= 0 else i + 1


# --- PAN, IBAN ----------------------------------------------------------------------------------

_PAN = re.compile(r"[A-Z]{3}[ABCFGHLJPTK][A-Z]\d{4}[A-Z](?![A-Za-z0-9])")
_IBAN = re.compile(r"[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)(?![A-Za-z0-9])")


# Patterns start without a look-behind so the regex engine can skip ahead quickly; the character
# before a match is checked here instead.
def _preceded_by(text: str, start: int, chars: str) -> bool:
    return start > 0 and (text[start - 1].isalnum() or text[start - 1] in chars)


def _pan_findings(text: str) -> Iterator[tuple[str, int, int]]:
    for m in _PAN.finditer(text):
        if not _preceded_by(text, m.start(), "") and _pan.is_valid(m.group()):
            yield "pan", m.start(), m.end()


def _iban_findings(text: str) -> Iterator[tuple[str, int, int]]:
    for m in _IBAN.finditer(text):
        if _preceded_by(text, m.start(), ""):
            continue
        value = m.group()
        end = m.end()
        # A following word written in capitals may have been taken as a last group: shrink until valid.
        while True:
            if _iban.is_valid(value):
                yield "iban", m.start(), end
                break
            cut = value.rfind(" ")
            if cut <= 4:
                break
            value = value[:cut]
            end = m.start() + cut


# --- e-mail, phone ------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
_PHONE_INTL = re.compile(r"\+[1-9]\d*(?:[ -]?\(\d{1,4}\))?(?:[ .-]\d+)*")
_PHONE_NANP = re.compile(r"(?:\([2-9]\d{2}\) ?|[2-9]\d{2}([-. ]))[2-9]\d{2}([-. ])\d{4}")
_PHONE_IN = re.compile(r"0?[6-9]\d{4}[ -]\d{5}")
"""Indian mobile numbers written 98765 43210 / 98765-43210; bare 10-digit runs are not matched."""


def _phone_tail_ok(text: str, end: int) -> bool:
    if end < len(text):
        after = text[end]
        if _WORDISH.match(after):
            return False
        if after in " .-" and end + 1 < len(text) and text[end + 1].isdigit():
            return False
    return True


def _phone_findings(text: str) -> Iterator[tuple[str, int, int]]:
    if "+" not in text:
        intl: Iterator[re.Match[str]] = iter(())
    else:
        intl = _PHONE_INTL.finditer(text)
    for m in intl:
        if _preceded_by(text, m.start(), "_+"):
            continue
        digits = sum(ch.isdigit() for ch in m.group())
        if 8 <= digits <= 15 and _phone_tail_ok(text, m.end()):
            yield "phone", m.start(), m.end()
    for m in _PHONE_NANP.finditer(text):
        if _preceded_by(text, m.start(), "_+(.-"):
            continue
        # The bracket form has no first separator; otherwise both separators must agree.
        if m.group(1) is not None and m.group(1) != m.group(2):
            continue
        if _phone_tail_ok(text, m.end()):
            yield "phone", m.start(), m.end()
    for m in _PHONE_IN.finditer(text):
        if not _preceded_by(text, m.start(), "_+.-") and _phone_tail_ok(text, m.end()):
            yield "phone", m.start(), m.end()


_MASKED_EMAIL_CHARS = frozenset("X") | SEPARATORS
_MAX_DOMAIN = 253


def _email_findings(text: str) -> Iterator[tuple[str, int, int]]:
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
                yield "email", m.start(), m.end()
            while 0 <= next_at < resume:
                next_at = text.find("@", next_at + 1)
        at = next_at


# --- scanning -----------------------------------------------------------------------------------


def _raw_findings(text: str, wanted: frozenset[str]) -> Iterator[tuple[str, int, int]]:
    yield from _numeric_findings(text, wanted)
    if "pan" in wanted:
        yield from _pan_findings(text)
    if "iban" in wanted:
        yield from _iban_findings(text)
    if "email" in wanted:
        yield from _email_findings(text)
    if "phone" in wanted:
        yield from _phone_findings(text)


def _resolve_overlaps(raw: Iterable[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Drop overlapping findings: within each cluster of overlapping spans the longer wins, then `_PRIORITY`."""
    ordered = sorted(raw, key=lambda f: f[1])
    kept: list[tuple[str, int, int]] = []
    cluster: list[tuple[str, int, int]] = []
    cluster_end = -1
    for cand in [*ordered, ("", 1 << 62, 1 << 62)]:
        if cand[1] >= cluster_end and cluster:
            chosen: list[tuple[str, int, int]] = []
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
    """Scan the first `limit_chars` characters of `text` with the named detectors."""
    wanted = _validate_names(detectors)
    truncated = len(text) > limit_chars
    body = text[:limit_chars] if truncated else text
    findings = [
        Finding(type=name, start=start, end=end, masked=mask(body[start:end], name))
        for name, start, end in _resolve_overlaps(_raw_findings(body, wanted))
    ]
    return ScanResult(findings=findings, truncated=truncated, scanned_chars=len(body))


def scan_text(text: str, *, detectors: Iterable[str] = ALL, limit_chars: int = DEFAULT_LIMIT_CHARS) -> list[Finding]:
    """The findings of `scan`; use `scan` when you need to know whether the text was truncated."""
    return scan(text, detectors=detectors, limit_chars=limit_chars).findings


_MAX_MASK_PASSES = 4
_CONTEXT = 2
"""How far the boundary checks (glued groups, phone tails) look past a value."""


def mask_text(text: str, findings: Sequence[Finding], *, limit_chars: int = DEFAULT_LIMIT_CHARS) -> str:
    """`text` with every finding replaced by its masked form (for clipboard mask mode).

    The four characters a mask reveals could, with neighbouring digits, form a new valid number.
    So the result is re-scanned: anything the same detectors find again, and anything any detector
    finds within two characters of a masked span (masking moves its neighbours' boundaries), is
    masked completely, until a re-scan finds nothing.
    Text past `limit_chars` is left as it is.
    """
    types = frozenset(f.type for f in findings)
    spans = [(f.start, f.end) for f in findings]
    out = apply_masks(text, findings)
    for _ in range(_MAX_MASK_PASSES):
        again = scan_text(out, detectors=types, limit_chars=limit_chars) if types else []
        if spans:
            again += [
                f
                for f in scan_text(out, limit_chars=limit_chars)
                if f.type not in types
                and any(f.start < end + _CONTEXT and start < f.end + _CONTEXT for start, end in spans)
            ]
        if not again:
            return out
        out = apply_masks(out, [replace(f, masked=_full_mask(out[f.start : f.end])) for f in again])
        spans.extend((f.start, f.end) for f in again)
    return out


def _full_mask(value: str) -> str:
    return "".join(ch if ch in SEPARATORS else MASK_CHAR for ch in value)
