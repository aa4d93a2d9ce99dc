"""Webhook targets are public addresses unless the operator allows internal ones; names from devices are inert in
webhook text and stay on one log line."""

from __future__ import annotations

import logging

import pytest

from central.alerting.channels import describe, message_payload
from central.netguard import InternalTarget, Resolver, check_webhook_url
from central.safe_text import SingleLineLogs, chat_text, one_line


def _resolver(addresses: dict[str, list[str]]) -> Resolver:
    def resolve(host: str, _port: int) -> list[str]:
        return addresses[host]

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5432/",
        "http://localhost/hook",
        "http://10.0.0.8/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fd00::1]/",
        "http://0.0.0.0:22/",
        "https://rebound.example/hook",
    ],
)
def test_internal_targets_are_refused(url: str) -> None:
    resolver = _resolver(
        {
            "127.0.0.1": ["127.0.0.1"],
            "localhost": ["127.0.0.1", "::1"],
            "10.0.0.8": ["10.0.0.8"],
            "192.168.1.10": ["192.168.1.10"],
            "169.254.169.254": ["169.254.169.254"],
            "::1": ["::1"],
            "::ffff:127.0.0.1": ["::ffff:127.0.0.1"],
            "fd00::1": ["fd00::1"],
            "0.0.0.0": ["0.0.0.0"],  # noqa: S104 - the address under test, not a bind
            "rebound.example": ["203.0.113.7", "10.1.1.1"],  # one internal answer is enough
        }
    )
    with pytest.raises(InternalTarget, match="internal"):
        check_webhook_url(url, allow_internal=False, resolver=resolver)
    check_webhook_url(url, allow_internal=True, resolver=resolver)


def test_public_targets_pass() -> None:
    resolver = _resolver({"hooks.slack.com": ["34.195.5.10", "2600:1f18:24e6:b900::1"]})
    check_webhook_url("https://hooks.slack.com/services/T0/B0/x", allow_internal=False, resolver=resolver)


def test_an_unresolvable_host_is_refused() -> None:
    def failing(host: str, port: int) -> list[str]:
        raise InternalTarget(f"webhook host {host!r} does not resolve (gaierror)")

    with pytest.raises(InternalTarget, match="does not resolve"):
        check_webhook_url("https://nowhere.invalid/", allow_internal=False, resolver=failing)


HOSTILE = "desk-7\n<!channel> <https://evil.example|Reset your password> [click](https://evil.example) & more"


def test_webhook_text_neutralises_chat_markup_in_names() -> None:
    alert = {"id": 5, "kind": "tamper.agent_reported", "severity": "high", "hostname": HOSTILE, "team": "t<@U1>"}
    alert |= {"user": "eve\r\nINFO forged"}

    text = describe(alert)
    payload = message_payload(alert | {"url": "/console/alerts/5"}, base_url="https://dw.example")

    assert "\n" not in text
    assert "\r" not in text
    assert "<!channel>" not in text
    assert "<https://evil.example|" not in text
    assert "[click](" not in text
    assert "<@U1>" not in text
    assert "&lt;!channel&gt;" in text
    assert payload["text"].count("\n") == 1  # the text line, then the console link
    assert payload["text"].endswith("\nhttps://dw.example/console/alerts/5")


def test_chat_text_keeps_ordinary_names_and_bounds_length() -> None:
    assert chat_text("desk-7.collections") == "desk-7.collections"
    assert chat_text("Équipe 東京") == "Équipe 東京"
    assert len(chat_text("x" * 5000)) == 200


def test_a_log_record_with_a_newline_in_its_arguments_stays_on_one_line() -> None:
    record = logging.LogRecord(
        "central", logging.INFO, __file__, 1, "enrolled %s", ("desk\n2026 CRITICAL forged",), None
    )

    assert SingleLineLogs().filter(record)

    assert record.getMessage() == "enrolled desk\\n2026 CRITICAL forged"
    assert one_line("a\u2028b\x1b[31m") == "a\\u2028b\\x1b[31m"
