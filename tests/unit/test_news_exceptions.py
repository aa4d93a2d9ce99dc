"""USB exception news: what a policy update (or the clock) changed for this PC's exceptions, in plain words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agent_app.core.news_exceptions import (
    ExceptionChange,
    active_exceptions,
    active_lines,
    change_message,
    device_labels,
    exception_changes,
    exceptions_ended,
    until_phrase,
)
from policy_client.schema import Controls, PolicyDocument, UsbControl, UsbException

NOW = datetime(2025, 3, 3, 13, 0, tzinfo=UTC)
ME = "dev-7f3a"


def exc(
    hours: float = 4,
    *,
    device: str | None = ME,
    vendor: str = "0781",
    product: str = "5581",
    serial: str | None = "4C53",
) -> UsbException:
    return UsbException(
        vendor_id=vendor,
        product_id=product,
        serial=serial,
        expires_at=NOW + timedelta(hours=hours),
        device_id=device,
        reviewed_at=NOW,
    )


def pol(*exceptions: UsbException, version: int = 7) -> PolicyDocument:
    return PolicyDocument(version=version, controls=Controls(usb=UsbControl(mode="block", exceptions=list(exceptions))))


def kinds(changes: list[ExceptionChange]) -> list[str]:
    return [change.change for change in changes]


def test_an_approval_for_this_pc_is_news() -> None:
    granted = exc(4)
    changes = exception_changes(pol(), pol(granted, version=8), device_id=ME, now=NOW)
    assert kinds(changes) == ["granted"]
    assert changes[0].exception == granted
    title, body = change_message(changes[0], now=NOW, tz=UTC, labels={("0781", "5581", "4C53"): "SANDISK"})
    assert title == "USB exception approved"
    assert body == "Your exception for the USB stick “SANDISK” (0781:5581) was approved until 17:00."


def test_an_approval_for_another_pc_is_not() -> None:
    assert exception_changes(pol(), pol(exc(device="dev-other")), device_id=ME, now=NOW) == []


def test_an_exception_for_every_pc_applies_here_with_its_own_wording() -> None:
    changes = exception_changes(pol(), pol(exc(device=None, serial=None)), device_id=ME, now=NOW)
    assert kinds(changes) == ["granted"]
    _, body = change_message(changes[0], now=NOW, tz=UTC)
    assert body == "The USB stick 0781:5581 may be used on this PC until 17:00."


def test_unchanged_exceptions_and_unrelated_policy_changes_are_quiet() -> None:
    same = exc(4)
    assert exception_changes(pol(same), pol(same, version=9), device_id=ME, now=NOW) == []


def test_an_approval_that_arrives_already_expired_is_not_announced() -> None:
    assert exception_changes(pol(), pol(exc(-1)), device_id=ME, now=NOW) == []


def test_longer_and_shorter_exceptions() -> None:
    extended = exception_changes(pol(exc(2)), pol(exc(2), exc(6)), device_id=ME, now=NOW)
    assert kinds(extended) == ["extended"]
    assert extended[0].previous_expiry == NOW + timedelta(hours=2)
    assert change_message(extended[0], now=NOW, tz=UTC)[1] == (
        "Your exception for the USB stick 0781:5581 now lasts until 19:00."
    )
    assert kinds(exception_changes(pol(exc(6)), pol(exc(2)), device_id=ME, now=NOW)) == ["shortened"]


def test_removed_or_cut_short_exception_is_withdrawn() -> None:
    withdrawn = exception_changes(pol(exc(4)), pol(), device_id=ME, now=NOW)
    assert kinds(withdrawn) == ["withdrawn"]
    assert change_message(withdrawn[0], now=NOW, tz=UTC) == (
        "USB exception withdrawn",
        "Your exception for the USB stick 0781:5581 was withdrawn; the usual USB rules apply again.",
    )
    assert kinds(exception_changes(pol(exc(4)), pol(exc(-0.5)), device_id=ME, now=NOW)) == ["withdrawn"]


def test_cleaning_out_an_exception_that_already_ended_is_not_news() -> None:
    assert exception_changes(pol(exc(-1)), pol(), device_id=ME, now=NOW) == []


def test_approval_again_after_the_first_one_ended_is_a_grant() -> None:
    changes = exception_changes(pol(exc(-1)), pol(exc(-1), exc(3)), device_id=ME, now=NOW)
    assert kinds(changes) == ["granted"]


def test_serial_and_any_serial_exceptions_are_different_grants() -> None:
    changes = exception_changes(pol(exc(2)), pol(exc(2), exc(3, serial=None)), device_id=ME, now=NOW)
    assert kinds(changes) == ["granted"]
    assert changes[0].exception.serial is None


def test_ids_compare_without_case() -> None:
    assert exception_changes(pol(exc(2, vendor="abcd")), pol(exc(2, vendor="ABCD")), device_id=ME, now=NOW) == []


def test_not_enrolled_sees_only_exceptions_for_every_pc() -> None:
    changes = exception_changes(pol(), pol(exc(2), exc(2, device=None, product="0001")), device_id=None, now=NOW)
    assert [c.exception.product_id for c in changes] == ["0001"]


def test_the_clock_ends_exceptions_between_two_checks() -> None:
    policy = pol(exc(1), exc(3, product="0002"))
    assert exceptions_ended(policy, device_id=ME, since=NOW, now=NOW + timedelta(minutes=59)) == []
    ended = exceptions_ended(policy, device_id=ME, since=NOW + timedelta(minutes=59), now=NOW + timedelta(hours=1))
    assert kinds(ended) == ["ended"]
    assert change_message(ended[0], now=NOW, tz=UTC)[0] == "USB exception ended"
    later = exceptions_ended(policy, device_id=ME, since=NOW + timedelta(hours=1), now=NOW + timedelta(hours=2))
    assert later == [], "announced once"


def test_active_exceptions_and_menu_lines() -> None:
    policy = pol(exc(-1), exc(5, product="0002"), exc(2), exc(1, device="dev-other"))
    assert [e.product_id for e in active_exceptions(policy, device_id=ME, now=NOW)] == ["5581", "0002"]
    assert active_lines(policy, device_id=ME, now=NOW, tz=UTC, labels={("0781", "5581", None): "SANDISK"}) == [
        "Allowed until 15:00: the USB stick “SANDISK” (0781:5581)",
        "Allowed until 18:00: the USB stick 0781:0002",
    ]


def test_until_names_the_day_when_it_is_not_today() -> None:
    assert until_phrase(NOW + timedelta(hours=2), now=NOW, tz=UTC) == "15:00"
    assert until_phrase(NOW + timedelta(days=1), now=NOW, tz=UTC) == "2025-03-04 13:00"


def test_device_labels_come_from_usb_history_newest_first() -> None:
    history: list[dict[str, Any]] = [
        {"kind": "usb.blocked", "data": {"vendor_id": "0781", "product_id": "5581", "serial": "4C53", "label": "NEW"}},
        {"kind": "usb.mounted", "data": {"vendor_id": "0781", "product_id": "5581", "serial": "4C53", "label": "OLD"}},
        {"kind": "usb.mounted", "data": {"vendor_id": "ABCD", "product_id": "0001", "serial": None, "label": "KEY"}},
        {"kind": "clipboard.sensitive", "data": {"label": "not a stick"}},
        {"kind": "usb.mounted", "data": {"vendor_id": "1111", "product_id": "2222", "label": "  "}},
        {"kind": "usb.mounted", "data": "damaged"},
    ]
    assert device_labels(history) == {
        ("0781", "5581", "4C53"): "NEW",
        ("0781", "5581", None): "NEW",
        ("abcd", "0001", None): "KEY",
    }
