"""Confidence of a PII finding: a base level from its checksum and format, raised by a keyword nearby and
lowered to "low" by an identifier label right before it ("order", "UTR", "coupon", ...).

Pure functions, safe from any thread; called once per finding by `collectors.pii.detectors.scan`.
Keywords cover English, Hindi (Latin script and Devanagari) and the Spanish, Portuguese, French and
German words contact centres meet most. The rules and examples are in docs/pii-detectors.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import get_args

from policy_client.schema import Confidence

CONFIDENCE_LEVELS: tuple[Confidence, ...] = get_args(Confidence)
"""Lowest first: ("low", "medium", "high")."""
DEFAULT_MIN_CONFIDENCE: Confidence = "medium"
_RANK: dict[str, int] = {level: rank for rank, level in enumerate(CONFIDENCE_LEVELS)}

LOW, MEDIUM, HIGH = 0, 1, 2
KEYWORD_BEFORE = 150
KEYWORD_AFTER = 50
"""A keyword counts within this many characters before the value's start or after its end."""
LABEL_BEFORE = 40
"""An identifier label counts only when it is the last thing written before the value, within this many characters."""


def confidence_at_least(level: str, minimum: str) -> bool:
    """True when `level` is `minimum` or above; unknown levels count as below everything."""
    return _RANK.get(level, -1) >= _RANK.get(minimum, len(_RANK))


def level_name(rank: int) -> Confidence:
    return CONFIDENCE_LEVELS[max(LOW, min(HIGH, rank))]


_TOKEN = re.compile(r"[^\W_]+")
"""Words are runs of letters and digits; keywords are matched as whole words (sequences of them)."""


@dataclass(frozen=True, slots=True)
class _Keywords:
    singles: frozenset[str]
    phrases: dict[str, tuple[tuple[str, ...], ...]]
    """Multi-word keywords by their first word."""

    def found_in(self, words: list[str]) -> bool:
        if not self.singles.isdisjoint(words):
            return True
        for i, word in enumerate(words):
            for phrase in self.phrases.get(word, ()):
                if tuple(words[i : i + len(phrase)]) == phrase:
                    return True
        return False


def _words(*keywords: str) -> _Keywords:
    """Keywords as word sequences, split the way text is split ("a/c" is ("a", "c"), Devanagari at its marks)."""
    split = [tuple(_TOKEN.findall(k.lower())) for k in keywords]
    phrases: dict[str, list[tuple[str, ...]]] = {}
    for t in split:
        if len(t) > 1:
            phrases.setdefault(t[0], []).append(t)
    singles = frozenset(t[0] for t in split if len(t) == 1)
    return _Keywords(singles, {first: tuple(group) for first, group in phrases.items()})


_KEYWORDS: dict[str, _Keywords] = {
    "card": _words(
        "card", "cards", "credit", "debit", "visa", "mastercard", "master card", "amex", "american express", "rupay",
        "maestro", "discover", "diners", "jcb", "cc", "ccn", "cvv", "cvc", "expiry", "exp", "valid thru", "atm",
        "kard", "kaard", "tarjeta", "cartão", "cartao", "carte", "carte bancaire", "karte", "kreditkarte",
        "कार्ड", "क्रेडिट", "डेबिट",
    ),
    "aadhaar": _words(
        "aadhaar", "aadhar", "adhaar", "adhar", "aadhaar card", "aadhar card", "uid", "uidai", "uid number",
        "e-kyc", "ekyc", "kyc", "aadhaar sankhya", "aadhar sankhya", "आधार",
    ),
    "pan": _words(
        "pan", "pan card", "pan no", "permanent account number", "income tax", "itr", "kyc", "e-kyc", "पैन",
    ),
    "iban": _words(
        "iban", "bank", "account", "acct", "a/c", "beneficiary", "swift", "bic", "wire", "transfer", "sepa",
        "konto", "kontonummer", "bankverbindung", "rekening", "cuenta", "compte", "conta", "khata", "खाता",
    ),
    "ssn": _words(
        "ssn", "ss#", "social security", "soc sec", "social", "seguro social", "itin", "tin",
    ),
    "email": _words(
        "email", "e-mail", "mail", "mail id", "email id", "correo", "courriel", "e-posta", "ईमेल", "मेल",
    ),
    "phone": _words(
        "phone", "ph", "mobile", "mob", "cell", "cellphone", "tel", "telephone", "contact", "call", "callback",
        "whatsapp", "sms", "reach", "dial", "number pe", "mera number", "mera no", "phone karo", "sampark",
        "teléfono", "telefono", "telefone", "celular", "móvil", "movil", "téléphone", "portable", "handy", "telefon",
        "फ़ोन", "फोन", "मोबाइल", "नंबर",
    ),
}  # fmt: skip

_ID_LABELS = (
    "order", "orders", "order id", "ticket", "tkt", "ref", "reference", "txn", "transaction", "utr", "rrn", "upi ref",
    "invoice", "inv", "bill", "receipt", "awb", "tracking", "shipment", "consignment", "booking", "pnr", "policy",
    "claim", "case", "sr", "complaint", "request", "imei", "serial", "sku", "model", "part", "batch", "item",
    "product", "coupon", "voucher", "code", "promo", "otp", "pin", "customer id", "cust id", "member id", "user id",
    "client id", "emp id", "employee id", "id", "payment id", "loan", "emi", "gst", "gstin", "cin", "lot", "version",
    "build",
)  # fmt: skip
_ACCOUNT_LABELS = ("account", "acct", "a/c", "loan account", "account number")


_LABEL_TAIL = ("no", "num", "number", "nr", "id")
"""Words that may stand between a label and its value: "Order no.", "Txn id" ("#" is punctuation: "Ref #")."""
_LABEL_TOKEN = re.compile(r"[^\W\d_]+(?:/[^\W\d_]+)?")
_LABEL_PUNCT = " \t\r\n:#=.(-"


def _label_set(words: tuple[str, ...]) -> frozenset[str]:
    return frozenset(" ".join(w.split()) for w in words)


_NEGATIVE: dict[str, frozenset[str]] = {
    "card": _label_set(_ID_LABELS + _ACCOUNT_LABELS),
    "aadhaar": _label_set(_ID_LABELS + _ACCOUNT_LABELS),
    "ssn": _label_set(_ID_LABELS + _ACCOUNT_LABELS),
    "phone": _label_set(_ID_LABELS + _ACCOUNT_LABELS),
    "pan": _label_set(_ID_LABELS),
    "iban": _label_set(tuple(w for w in _ID_LABELS if w not in ("id", "ref", "reference", "transaction"))),
}
_EXPIRY = re.compile(r"(?<!\d)(?:0[1-9]|1[0-2]) ?/ ?(?:\d{2}|20\d{2})(?![\d/])")
"""MM/YY or MM/YYYY right after a card number counts as a card keyword."""


def has_keyword(text: str, detector: str, start: int, end: int) -> bool:
    """A keyword of `detector` within KEYWORD_BEFORE characters before `start` or KEYWORD_AFTER after `end`."""
    keywords = _KEYWORDS.get(detector)
    if keywords is None:
        return False
    lo, hi = max(0, start - KEYWORD_BEFORE), min(len(text), end + KEYWORD_AFTER)
    before = _TOKEN.findall(text[lo:start].lower())
    if before and lo > 0 and text[lo - 1].isalnum():
        before = before[1:]  # the window began inside a word ("dis|card")
    after = _TOKEN.findall(text[end:hi].lower())
    if after and hi < len(text) and text[hi].isalnum():
        after = after[:-1]
    if keywords.found_in(before) or keywords.found_in(after):
        return True
    return detector == "card" and bool(_EXPIRY.search(text, end, min(len(text), end + 40)))


def has_id_label(text: str, detector: str, start: int) -> bool:
    """An identifier label ("order no.", "UTR", "coupon code", ...) is the last thing written before `start`."""
    labels = _NEGATIVE.get(detector)
    if labels is None or start == 0:
        return False
    window = text[max(0, start - LABEL_BEFORE) : start]
    stripped = window.rstrip(_LABEL_PUNCT)
    if not stripped or len(stripped) == len(window) or not stripped[-1].isalpha():
        return False  # nothing before, the value touches a word, or a number comes right before it
    tokens = _LABEL_TOKEN.findall(stripped.lower()[-LABEL_BEFORE:])
    if not tokens:
        return False
    if _labelled(tokens, labels):
        return True
    return tokens[-1] in _LABEL_TAIL and _labelled(tokens[:-1], labels)


def _labelled(tokens: list[str], labels: frozenset[str]) -> bool:
    return bool(tokens) and (tokens[-1] in labels or (len(tokens) > 1 and f"{tokens[-2]} {tokens[-1]}" in labels))


def confidence(text: str, detector: str, start: int, end: int, base: int) -> Confidence:
    """`base` (LOW or MEDIUM, from checksum and format), lowered to LOW by an identifier label right before the
    value, else raised one level by a keyword nearby."""
    if has_id_label(text, detector, start):
        return "low"
    if has_keyword(text, detector, start, end):
        return level_name(base + 1)
    return level_name(base)
