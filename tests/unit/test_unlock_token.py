"""Unlock tokens: issue/verify round trip, and every altered, misdirected, expired or garbage token refused."""

from __future__ import annotations

import re
import struct
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from policy_client.unlock_token import (
    MAX_INPUT_CHARS,
    SIGNING_DOMAIN,
    UnlockToken,
    UnlockTokenError,
    issue_unlock_token,
    verify_unlock_token,
)

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
DEVICE = "3f2a9c0d5e6b4a718293a4b5c6d7e8f9"
KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
TEXT, ISSUED = issue_unlock_token(KEY, device_id=DEVICE, scope="quit", minutes=60, expires_at=NOW + timedelta(hours=8))
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _verify(text: str, *, device_id: str = DEVICE, public_key: bytes = PUBLIC, now: datetime = NOW) -> UnlockToken:
    return verify_unlock_token(text, device_id=device_id, public_key=public_key, now=now)


def _canonical(text: str) -> str:
    """What the verifier reads: case, dashes and spaces dropped, Crockford look-alikes folded."""
    kept = "".join(c for c in text.upper() if c not in "- \t\r\n")
    return kept.translate(str.maketrans("OIL", "011"))


def _symbols(blob: bytes) -> str:
    bits = int.from_bytes(blob, "big")
    count = len(blob) * 8 // 5
    return "".join(CROCKFORD[(bits >> (5 * (count - 1 - i))) & 31] for i in range(count))


def _signed_blob(payload: bytes, *, device_id: str = DEVICE, domain: bytes = SIGNING_DOMAIN) -> str:
    return "DW1-" + _symbols(payload + KEY.sign(domain + device_id.encode() + b"\x00" + payload))


def test_issued_token_is_grouped_crockford_and_verifies() -> None:
    assert re.fullmatch(r"DW1(-[0-9A-HJKMNP-TV-Z]{5}){25}-[0-9A-HJKMNP-TV-Z]{3}", TEXT), TEXT
    assert len(TEXT) <= 160
    assert re.fullmatch(r"[0-9a-f]{16}", ISSUED.token_id)
    expected = UnlockToken(token_id=ISSUED.token_id, scope="quit", minutes=60, expires_at=NOW + timedelta(hours=8))
    assert expected == ISSUED
    assert _verify(TEXT) == ISSUED


def test_case_dashes_spaces_and_look_alikes_do_not_matter() -> None:
    body = TEXT.removeprefix("DW1-")
    assert _verify(TEXT.lower()) == ISSUED
    assert _verify(" dw1 " + body.replace("-", " ") + "\n") == ISSUED
    assert _verify("DW1" + body.replace("-", "")) == ISSUED
    assert _verify("DW1-" + body.replace("0", "o").replace("1", "l")) == ISSUED


def test_two_tokens_for_the_same_grant_have_different_ids() -> None:
    again, token = issue_unlock_token(
        KEY, device_id=DEVICE, scope="quit", minutes=60, expires_at=NOW + timedelta(hours=8)
    )
    assert again != TEXT
    assert token.token_id != ISSUED.token_id


@settings(max_examples=150, deadline=None)
@given(
    device_id=st.text(min_size=1, max_size=64),
    scope=st.sampled_from(["quit", "uninstall"]),
    minutes=st.integers(min_value=1, max_value=0xFFFF),
    seconds=st.integers(min_value=1, max_value=10 * 365 * 24 * 3600),
)
def test_round_trip(device_id: str, scope: str, minutes: int, seconds: int) -> None:
    expires_at = NOW + timedelta(seconds=seconds, microseconds=123)
    text, token = issue_unlock_token(
        KEY,
        device_id=device_id,
        scope=scope,  # type: ignore[arg-type]
        minutes=minutes,
        expires_at=expires_at,
    )
    assert token.expires_at == expires_at.replace(microsecond=0)
    assert (token.scope, token.minutes) == (scope, minutes)
    assert _verify(text, device_id=device_id) == token


_EDIT = st.tuples(
    st.sampled_from(["replace", "insert", "delete"]),
    st.integers(min_value=0, max_value=len(TEXT) - 1),
    st.characters(codec="utf-8"),
)


@settings(max_examples=600, deadline=None)
@given(edit=_EDIT)
def test_any_single_character_edit_is_refused_unless_it_reads_the_same(edit: tuple[str, int, str]) -> None:
    how, at, char = edit
    if how == "replace":
        changed = TEXT[:at] + char + TEXT[at + 1 :]
    elif how == "insert":
        changed = TEXT[:at] + char + TEXT[at:]
    else:
        changed = TEXT[:at] + TEXT[at + 1 :]
    if changed.isascii() and _canonical(changed) == _canonical(TEXT):
        assert _verify(changed) == ISSUED
    else:
        with pytest.raises(UnlockTokenError):
            _verify(changed)


def test_every_symbol_of_the_signature_and_payload_matters() -> None:
    body = TEXT.removeprefix("DW1-")
    for at, char in enumerate(body):
        if char == "-":
            continue
        other = CROCKFORD[(CROCKFORD.index(char) + 1) % 32]
        with pytest.raises(UnlockTokenError) as refused:
            _verify("DW1-" + body[:at] + other + body[at + 1 :])
        assert refused.value.reason in ("bad_signature", "unsupported_version"), at


def test_a_token_for_another_device_is_a_bad_signature() -> None:
    with pytest.raises(UnlockTokenError) as refused:
        _verify(TEXT, device_id=DEVICE[:-1] + "0")
    assert refused.value.reason == "bad_signature"
    with pytest.raises(UnlockTokenError):
        _verify(TEXT, device_id=DEVICE + "\x00")


def test_a_token_signed_by_another_key_is_a_bad_signature() -> None:
    other = Ed25519PrivateKey.generate()
    text, _token = issue_unlock_token(
        other, device_id=DEVICE, scope="uninstall", minutes=0, expires_at=NOW + timedelta(hours=1)
    )
    with pytest.raises(UnlockTokenError) as refused:
        _verify(text)
    assert refused.value.reason == "bad_signature"


def test_a_signature_without_the_unlock_domain_is_refused() -> None:
    """What the same key signs elsewhere (policy payloads) can never pass as an unlock token."""
    payload = struct.pack(">B8sBHI", 1, b"\x01" * 8, 2, 0, int((NOW + timedelta(hours=1)).timestamp()))
    assert _verify(_signed_blob(payload)).scope == "uninstall"
    for forged in (
        "DW1-" + _symbols(payload + KEY.sign(payload)),
        _signed_blob(payload, domain=b"deskwarden/policy/v1\x00"),
    ):
        with pytest.raises(UnlockTokenError) as refused:
            _verify(forged)
        assert refused.value.reason == "bad_signature"


def test_expired_at_the_expiry_instant() -> None:
    assert _verify(TEXT, now=ISSUED.expires_at - timedelta(microseconds=1)) == ISSUED
    for late in (ISSUED.expires_at, ISSUED.expires_at + timedelta(days=400)):
        with pytest.raises(UnlockTokenError) as refused:
            _verify(TEXT, now=late)
        assert refused.value.reason == "expired"


def test_other_versions_and_unknown_scopes_are_refused_even_when_signed() -> None:
    expiry = int((NOW + timedelta(hours=1)).timestamp())
    with pytest.raises(UnlockTokenError) as refused:
        _verify(_signed_blob(struct.pack(">B8sBHI", 2, b"\x02" * 8, 1, 5, expiry)))
    assert refused.value.reason == "unsupported_version"
    with pytest.raises(UnlockTokenError) as refused:
        _verify("DW2-" + TEXT.removeprefix("DW1-"))
    assert refused.value.reason == "unsupported_version"
    with pytest.raises(UnlockTokenError) as refused:
        _verify(_signed_blob(struct.pack(">B8sBHI", 1, b"\x03" * 8, 9, 5, expiry)))
    assert refused.value.reason == "malformed"


def test_input_is_bounded_before_it_is_decoded() -> None:
    padded = TEXT + " " * (MAX_INPUT_CHARS - len(TEXT))
    assert _verify(padded) == ISSUED
    with pytest.raises(UnlockTokenError) as refused:
        _verify(padded + " ")
    assert refused.value.reason == "malformed"
    with pytest.raises(UnlockTokenError):
        _verify("DW1-" + "0" * 100_000)


@pytest.mark.parametrize("text", ["", "DW1-", "DW1-ABCDE", "hello", "DW1-" + "U" * 128, TEXT + "0", "DWx-" + TEXT[4:]])
def test_malformed_examples(text: str) -> None:
    with pytest.raises(UnlockTokenError) as refused:
        _verify(text)
    assert refused.value.reason == "malformed"


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=400),
        st.text(alphabet=CROCKFORD + "-ILOilo ", max_size=200).map(lambda s: "DW1-" + s),
        st.binary(min_size=80, max_size=80).map(lambda b: "DW1-" + _symbols(b)),
    )
)
def test_garbage_only_ever_raises_unlock_token_error(text: str) -> None:
    with pytest.raises(UnlockTokenError) as refused:
        _verify(text)
    assert refused.value.reason in ("malformed", "unsupported_version", "bad_signature", "expired")


@pytest.mark.parametrize(
    ("scope", "minutes", "expires_at"),
    [
        ("quit", 0, NOW),
        ("quit", 0x10000, NOW),
        ("uninstall", -1, NOW),
        ("reboot", 5, NOW),
        ("quit", 5, NOW.replace(tzinfo=None)),
        ("quit", 5, datetime(2200, 1, 1, tzinfo=UTC)),
    ],
)
def test_issuing_refuses_what_cannot_be_encoded(scope: str, minutes: int, expires_at: datetime) -> None:
    with pytest.raises(ValueError, match=r"scope|minutes|expires_at"):
        issue_unlock_token(KEY, device_id=DEVICE, scope=scope, minutes=minutes, expires_at=expires_at)  # type: ignore[arg-type]


def test_caller_mistakes_are_value_errors_not_token_errors() -> None:
    with pytest.raises(ValueError, match="device_id"):
        issue_unlock_token(KEY, device_id="", scope="quit", minutes=5, expires_at=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        _verify(TEXT, now=NOW.replace(tzinfo=None))
    try:
        _verify(TEXT, public_key=b"short")
    except UnlockTokenError:
        pytest.fail("a wrong pinned key is a set-up error, not a bad token")
    except ValueError:
        pass
    else:
        pytest.fail("a 5-byte public key was accepted")
