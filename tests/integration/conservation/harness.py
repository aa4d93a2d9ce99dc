"""Conservation harness: a producer and fault driver for real agent and endpoint processes, and the judge.

Everything here runs on the test's thread; the proxy and the agents' stdout readers have their own threads.
"""

from __future__ import annotations

import os
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from agent_app.core import paths
from agent_app.core.enrol import enrol_here
from agent_app.core.outbox import read_depth
from tests.support.agent_process import TEST_KIND, AgentProcess, payload
from tests.support.endpoint import EndpointProcess
from tests.support.proxy import CALM, STORMY, FaultProxy
from tests.support.waiting import wait_for

LONG = os.environ.get("DESKWARDEN_LONG", "") not in ("", "0")
FAST_RETRY = {"backoff_base": 0.02, "backoff_cap": 0.3}
BAD_ALERTS = ("tamper.chain_broken", "tamper.seq_gap")
_PAUSE = threading.Event()  # never set: wait() on it is a random kill point, not synchronisation


@dataclass(frozen=True)
class Plan:
    kills: int
    agents: int = 2
    seed: int = 0
    max_burst: int = 40
    endpoint_share: float = 0.35
    """Of the kills, the share aimed at the endpoint (the rest at a random agent)."""

    @staticmethod
    def for_ci(seed: int) -> Plan:
        if LONG:
            return Plan(kills=int(os.environ.get("DESKWARDEN_LONG_KILLS", "600")), agents=3, seed=seed, max_burst=200)
        return Plan(kills=50, agents=2, seed=seed)


@dataclass
class Report:
    agent_kills: int = 0
    endpoint_kills: int = 0
    raised: int = 0
    acked: int = 0
    stored: int = 0
    duplicates_seen: int = 0
    faults: dict[str, int] = field(default_factory=dict)

    @property
    def kills(self) -> int:
        return self.agent_kills + self.endpoint_kills


def _drained(outbox: Path) -> bool:
    return read_depth(outbox) == 0


class Harness:
    def __init__(self, root: Path, *, db_url: str | None, plan: Plan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.endpoint = EndpointProcess(root / "server", db_url=db_url)
        self.proxy = FaultProxy(self.endpoint.settings.port, seed=plan.seed)
        self.agents: list[AgentProcess] = []
        self.root = root
        self.next_n = 1
        self.report = Report()
        self.api = ""

    # --- set up and tear down ----------------------------------------------------------------------

    def __enter__(self) -> Harness:
        self.endpoint.start()
        self.proxy.start()
        self.api = self.endpoint.api_token()
        token = self.endpoint.enroll_token()
        for index in range(self.plan.agents):
            home = self.root / f"agent-{index}"
            home.mkdir()
            enrol_here(self.proxy.url, token, home=home)
            agent = AgentProcess(home, uploader_options=FAST_RETRY)
            agent.start()
            self.agents.append(agent)
        return self

    def __exit__(self, *exc: object) -> None:
        for agent in self.agents:
            agent.stop()
        self.proxy.stop()
        self.endpoint.stop()

    # --- producer and fault driver ------------------------------------------------------------------

    def storm(self) -> Report:
        """Raise bursts on random agents while killing agents and the endpoint at random points."""
        self.proxy.set_mix(STORMY)
        while self.report.kills < self.plan.kills:
            agent = self.rng.choice(self.agents)
            count = self.rng.randint(1, self.plan.max_burst)
            agent.send_raise(self.next_n, count)
            self.next_n += count
            _PAUSE.wait(self.rng.uniform(0.0, 0.25))
            roll = self.rng.random()
            if roll < self.plan.endpoint_share:
                self.endpoint.kill()
                if self.rng.random() < 0.3:  # stay down while the agents keep raising
                    self.rng.choice(self.agents).send_raise(self.next_n, self.plan.max_burst)
                    self.next_n += self.plan.max_burst
                    _PAUSE.wait(self.rng.uniform(0.05, 0.3))
                self.endpoint.start()
                self.report.endpoint_kills += 1
            else:
                victim = self.rng.choice(self.agents)
                victim.kill()
                victim.start()
                self.report.agent_kills += 1
        self.report.faults = self.proxy.counts()
        return self.report

    def calm_and_drain(self, *, timeout: float = 120.0) -> dict[str, int]:
        """Faults off; a fresh event on every agent must arrive and every queue must empty."""
        self.proxy.set_mix(CALM)
        fresh: dict[str, int] = {}
        for agent in self.agents:
            if not agent.alive:
                agent.start()
            agent.raise_events(self.next_n, 1)
            assert agent.device_id is not None
            fresh[agent.device_id] = self.next_n
            self.next_n += 1
        for agent in self.agents:
            outbox = paths.outbox_path(agent.home)
            wait_for(partial(_drained, outbox), timeout=timeout, what=f"agent {agent.home.name} to drain")
        for device_id, n in fresh.items():
            wait_for(
                partial(self._has_stored, device_id, n),
                timeout=timeout,
                what=f"fresh event {n} of {device_id} at the endpoint",
            )
        return fresh

    def _has_stored(self, device_id: str, n: int) -> bool:
        return n in self._stored_numbers(device_id)

    def _stored_numbers(self, device_id: str) -> set[int]:
        events = self.endpoint.events(self.api, device_id=device_id, kind=TEST_KIND)
        return {int(e["data"]["n"]) for e in events}

    # --- judge ---------------------------------------------------------------------------------------

    def judge(self) -> list[str]:
        """Every problem found (empty when conservation held)."""
        problems: list[str] = []
        alerts = self.endpoint.alerts(self.api)
        for agent in self.agents:
            device = agent.device_id
            assert device is not None
            stored = self.endpoint.events(self.api, device_id=device)
            self.report.stored += len(stored)
            seqs = Counter(int(e["seq"]) for e in stored)
            twice = sorted(seq for seq, n in seqs.items() if n > 1)
            if twice:
                problems.append(f"{device}: seqs stored twice: {twice[:20]}")
            if sorted(seqs) != list(range(1, max(seqs, default=0) + 1)):
                missing = sorted(set(range(1, max(seqs) + 1)) - set(seqs))
                problems.append(f"{device}: seq gaps once drained: {missing[:20]}")
            tests = [e for e in stored if e["kind"] == TEST_KIND]
            numbers = Counter(int(e["data"]["n"]) for e in tests)
            again = sorted(n for n, c in numbers.items() if c > 1)
            if again:
                problems.append(f"{device}: events stored twice: {again[:20]}")
            acked = agent.acked_snapshot
            self.report.acked += len(acked)
            self.report.raised += len(agent.raised)
            lost = sorted(acked - set(numbers))
            if lost:
                problems.append(f"{device}: {len(lost)} acknowledged events never stored: {lost[:20]}")
            strangers = sorted(set(numbers) - agent.raised)
            if strangers:
                problems.append(f"{device}: stored events this agent never raised: {strangers[:20]}")
            damaged = [int(e["data"]["n"]) for e in tests if e["data"] != payload(int(e["data"]["n"]))]
            if damaged:
                problems.append(f"{device}: payload differs for events {damaged[:20]}")
            bad_kinds = Counter(e["kind"] for e in stored if e["kind"] in ("agent.dead_letter", "agent.loss"))
            if bad_kinds:
                problems.append(f"{device}: unexpected {dict(bad_kinds)}")
            broken = [a for a in alerts if a.get("device_id") == device and a["kind"] in BAD_ALERTS]
            if broken:
                problems.append(f"{device}: chain alerts {[(a['kind'], a.get('data')) for a in broken[:5]]}")
        return problems
