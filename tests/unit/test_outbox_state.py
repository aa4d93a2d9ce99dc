"""Hypothesis state machine: the outbox against a dict model, with crash-and-reopen as an action."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent_app.core.outbox import Outbox
from policy_client.schema import GENESIS_MAC, EventDraft, EventKind, Severity, verify_link
from policy_client.schema import Event as WireEvent
from policy_client.secrets import OutboxKeys, key_id_for

PENDING, SENT, DEAD = "pending", "sent", "dead"
KINDS = [EventKind.usb_mounted, EventKind.clipboard_sensitive, EventKind.capture_hotkey]


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="outbox-sm-"))
        self.generation = itertools.count()
        data_key = os.urandom(32)
        self.keys = OutboxKeys(key_id=key_id_for(data_key), data_key=data_key, chain_key=os.urandom(32))
        self.path = self.dir / f"gen{next(self.generation)}.db"
        self.box = Outbox(self.path, keys=self.keys)
        self.model: dict[int, tuple[dict[str, Any], str]] = {}
        self.serial = itertools.count()

    def pending_model(self) -> list[int]:
        return sorted(seq for seq, (_, state) in self.model.items() if state == PENDING)

    @rule(
        count=st.integers(0, 12),
        severity=st.sampled_from(list(Severity)),
        kind=st.sampled_from(KINDS),
    )
    def append(self, count: int, severity: Severity, kind: EventKind) -> None:
        payloads: list[dict[str, Any]] = [{"n": next(self.serial)} for _ in range(count)]
        seqs = self.box.append([EventDraft(kind=kind, severity=severity, data=p) for p in payloads])
        last = max(self.model, default=0)
        assert seqs == list(range(last + 1, last + 1 + count))
        for seq, payload in zip(seqs, payloads, strict=True):
            self.model[seq] = (payload, PENDING)

    @rule(limit=st.integers(1, 20))
    def pending(self, limit: int) -> None:
        got = self.box.pending(limit=limit)
        expected = self.pending_model()[:limit]
        assert [e["seq"] for e in got] == expected
        assert [e["data"] for e in got] == [self.model[s][0] for s in expected]

    @rule(limit=st.integers(1, 20), after=st.integers(0, 40))
    def pending_wire(self, limit: int, after: int) -> None:
        got = self.box.pending_wire(limit=limit, after=after)
        expected = [seq for seq in self.pending_model() if seq > after][:limit]
        assert [row.seq for row in got] == expected
        assert [json.loads(row.plaintext)["data"] for row in got] == [self.model[s][0] for s in expected]

    @precondition(lambda self: bool(self.pending_model()))
    @rule(data=st.data())
    def mark_sent(self, data: st.DataObject) -> None:
        chosen = data.draw(st.lists(st.sampled_from(self.pending_model()), unique=True, max_size=10))
        self.box.mark_sent(chosen)
        for seq in chosen:
            self.model[seq] = (self.model[seq][0], SENT)

    @precondition(lambda self: bool(self.pending_model()))
    @rule(data=st.data())
    def dead_letter(self, data: st.DataObject) -> None:
        chosen = data.draw(st.lists(st.sampled_from(self.pending_model()), unique=True, max_size=3))
        self.box.dead_letter(chosen, "400: refused")
        for seq in chosen:
            self.model[seq] = (self.model[seq][0], DEAD)

    @rule()
    def crash_and_reopen(self) -> None:
        """The files as a kill -9 leaves them (main + WAL, no -shm), opened by a fresh process."""
        target = self.dir / f"gen{next(self.generation)}.db"
        for suffix in ("", "-wal"):
            source = self.path.with_name(self.path.name + suffix)
            if source.exists():
                shutil.copyfile(source, target.with_name(target.name + suffix))
        self.box.close()  # only releases the old file; the copy is what "survived"
        self.path = target
        self.box = Outbox(self.path, keys=self.keys)
        assert self.box.recoveries == []

    @rule()
    def clean_reopen(self) -> None:
        self.box.close()
        self.box = Outbox(self.path, keys=self.keys)

    @invariant()
    def counters_match(self) -> None:
        assert self.box.depth() == len(self.pending_model())
        assert self.box.last_seq() == max(self.model, default=0)
        assert self.box.dead_letters() == [
            (s, "400: refused") for s, (_, st_) in sorted(self.model.items()) if st_ == DEAD
        ]

    def teardown(self) -> None:
        try:
            events = list(reversed(self.box.history(limit=100_000)))
            assert [e["seq"] for e in events] == list(range(1, len(self.model) + 1))  # gap-free, nothing lost
            prev = GENESIS_MAC
            for body in events:
                seq = body["seq"]
                assert body["data"] == self.model[seq][0]
                assert body["sent"] == (self.model[seq][1] == SENT)
                clean = {k: v for k, v in body.items() if k != "sent"}
                event = WireEvent.model_validate({**clean, "device_id": "dev"})
                assert verify_link(self.keys.chain_key, prev, event)
                prev = event.mac
        finally:
            self.box.close()
            shutil.rmtree(self.dir, ignore_errors=True)


OutboxMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestOutboxStateMachine = OutboxMachine.TestCase
