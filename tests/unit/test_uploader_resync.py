"""Outbox.resync: the queued events move past the endpoint's chain head when the outbox no longer matches it.

Checked against what the endpoint verifies: each moved event links to its predecessor with the chain key,
the first one from the endpoint's last mac, the jump is an explicit `agent.loss`, and no local seq is reused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_app.core.outbox import HIGH_WATER_SUFFIX, Outbox
from policy_client.schema import Event as WireEvent
from policy_client.schema import EventDraft, EventKind, Severity, chain_link, event_digest, verify_link
from policy_client.secrets import OutboxKeys, key_id_for

ENDPOINT_MAC = "5e" * 32


@pytest.fixture
def keys() -> OutboxKeys:
    data_key = os.urandom(32)
    return OutboxKeys(key_id=key_id_for(data_key), data_key=data_key, chain_key=os.urandom(32))


@pytest.fixture
def box(tmp_path: Path, keys: OutboxKeys) -> Iterator[Outbox]:
    outbox = Outbox(tmp_path / "outbox.db", keys=keys)
    yield outbox
    outbox.close()


def _drafts(count: int, *, kind: EventKind = EventKind.download_quarantined) -> list[EventDraft]:
    return [EventDraft(kind=kind, severity=Severity.high, action="quarantined", data={"n": n}) for n in range(count)]


def _wire(body: dict[str, Any]) -> WireEvent:
    return WireEvent.model_validate({**body, "device_id": "dev-1"})


def _assert_chained_from(keys: OutboxKeys, prev: str, bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        event = _wire(body)
        assert verify_link(keys.chain_key, prev, event), f"seq {event.seq} does not chain"
        prev = event.mac


def test_an_outbox_behind_the_endpoint_continues_after_its_head_chained_from_its_mac(
    box: Outbox, keys: OutboxKeys, tmp_path: Path
) -> None:
    box.append(_drafts(3))
    before = box.pending()

    report = box.resync(40, ENDPOINT_MAC)

    assert report is not None
    assert (report.base, report.loss_seq, report.moved) == (40, 41, {1: 42, 2: 43, 3: 44})
    after = box.pending()
    assert [e["seq"] for e in after] == [41, 42, 43, 44]
    loss, *moved = after
    assert loss["kind"] == "agent.loss"
    assert loss["data"] == {
        "reason": "seq_resync",
        "endpoint_last_seq": 40,
        "local_head": 3,
        "resent": 3,
        "first_seq": 4,
        "last_seq": 40,
    }
    # Same events (id, time, content); only seq and mac changed.
    keep = ("id", "ts", "kind", "severity", "action", "data")
    assert [{k: e[k] for k in keep} for e in moved] == [{k: e[k] for k in keep} for e in before]
    _assert_chained_from(keys, ENDPOINT_MAC, after)
    assert box.last_seq() == 44
    assert (tmp_path / f"outbox.db{HIGH_WATER_SUFFIX}").read_text().split()[0] == f"{44:020d}"
    # Nothing left at the old seqs, and the next append continues the new chain.
    [nxt] = box.append(_drafts(1))
    assert nxt == 45
    _assert_chained_from(keys, after[-1]["mac"], box.pending()[-1:])


def test_an_outbox_that_matches_the_endpoint_is_left_alone(box: Outbox) -> None:
    box.append(_drafts(5))
    sent = box.pending()
    box.mark_sent([e["seq"] for e in sent[:3]])
    head = sent[2]
    assert box.resync(3, head["mac"]) is None
    assert box.resync(3, head["mac"], force=True) is None  # nothing queued at a seq the endpoint holds
    assert [e["seq"] for e in box.pending()] == [4, 5]


def test_a_second_resync_with_the_same_head_changes_nothing(box: Outbox) -> None:
    box.append(_drafts(2))
    assert box.resync(10, ENDPOINT_MAC) is not None
    pending = box.pending()
    assert box.resync(10, ENDPOINT_MAC) is None
    assert box.pending() == pending


def test_a_forked_outbox_ahead_of_the_endpoint_rewrites_from_its_head_without_a_gap(
    box: Outbox, keys: OutboxKeys
) -> None:
    """Lost outbox, then more events offline than the endpoint had: every seq above its head is ours and queued."""
    box.append(_drafts(8))

    report = box.resync(5, ENDPOINT_MAC)  # our event 5 has another mac than the endpoint's

    assert report is not None
    assert (report.base, report.loss_seq) == (5, 6)
    after = box.pending()
    assert [e["seq"] for e in after] == list(range(6, 15))
    assert "first_seq" not in after[0]["data"]
    _assert_chained_from(keys, ENDPOINT_MAC, after)


def test_after_a_409_seqs_used_here_are_never_reused_and_the_gap_is_explicit(box: Outbox, keys: OutboxKeys) -> None:
    box.append(_drafts(6))
    box.dead_letter([6], "HTTP 422: refused")  # a seq above the endpoint's head that stays in local history
    endpoint_mac = box.history(limit=100)[-3]["mac"]  # the endpoint holds our 1..3 ...
    box.mark_sent([1, 2, 3])

    report = box.resync(3, endpoint_mac, force=True)
    assert report is None  # ... and nothing queued collides: a 409 for these would be someone else's

    other = "7a" * 32  # now say the endpoint holds another event at 3 (two agents on one credential)
    report = box.resync(3, other, force=True)
    assert report is not None
    assert (report.base, report.loss_seq, report.moved) == (6, 7, {4: 8, 5: 9})
    loss, *moved = box.pending()
    assert loss["data"]["first_seq"] == 4
    assert loss["data"]["last_seq"] == 6
    _assert_chained_from(keys, _mac_at(box, 6), [loss, *moved])


def _mac_at(box: Outbox, seq: int) -> str:
    return next(str(e["mac"]) for e in box.history(limit=1000) if e["seq"] == seq)


def test_the_first_moved_event_verifies_as_the_endpoint_checks_it(box: Outbox, keys: OutboxKeys) -> None:
    box.append(_drafts(1))
    box.resync(7, ENDPOINT_MAC)
    loss = box.pending()[0]
    body = {k: v for k, v in _wire(loss).model_dump(mode="json").items() if k not in ("device_id", "mac")}
    assert chain_link(keys.chain_key, ENDPOINT_MAC, 8, event_digest(body)) == loss["mac"]
