"""Two endpoint hosts behind a load balancer, one PostgreSQL: the layout docs/deploy-endpoint.md describes
("Several processes or hosts").

Host A runs `deskwarden server --workers 2`, host B a single worker; each has its own data directory holding
copies of the same two key files. The test plays the load balancer, sending each request of one agent to the
next host in turn: every event is stored once, the chain holds across hosts, a replay on the other host counts
as duplicates, another event under a stored seq is refused with 409 on either host, the policy B serves is signed
with the key A announced at enrolment, and an alert ingested through B reaches a supervisor's stream on A.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from central import commands
from central.runtime import open_store, prepare
from central.settings import ServerSettings
from central.simulate import SimulatedAgent
from central.store import tables
from central.store.alerts import CHAIN_BROKEN, SEQ_GAP, SEQ_REUSE
from central.store.sealing import KEY_FILE
from policy_client.schema import EventKind, Severity
from tests.support.endpoint import EndpointProcess
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.integration]


@pytest.fixture
def hosts(tmp_path: Path, pg_url: str) -> Iterator[tuple[ServerSettings, list[str]]]:
    a = EndpointProcess(tmp_path / "host-a", db_url=pg_url, workers=2)
    prepare(a.settings).db.dispose()  # first start: schema, policy signing key, sealing key, first policy
    (tmp_path / "host-b").mkdir(mode=0o700)
    b = EndpointProcess(tmp_path / "host-b", db_url=pg_url)
    for key in (a.settings.signing_key_path, a.settings.data_dir / KEY_FILE):
        shutil.copy2(key, b.settings.data_dir / key.name)
    with a, b:
        yield a.settings, [a.url, b.url]


def test_one_agent_across_two_hosts(hosts: tuple[ServerSettings, list[str]]) -> None:
    settings, urls = hosts
    token = commands.issue_enroll_token(settings, "team-a", timedelta(hours=1))
    api_token = commands.create_api_token(settings, "two-hosts", "admin")
    agent = SimulatedAgent()
    enrolled = httpx.post(
        f"{urls[0]}/v1/enroll",
        json={"token": token, "hostname": "desk-1", "os": "linux", "user": "u", "chain_key": agent.chain_key_b64},
        timeout=10,
    )
    assert enrolled.status_code == 200, enrolled.text
    agent.device_id = enrolled.json()["device_id"]
    headers = {"Authorization": f"Bearer {enrolled.json()['credential']}", "Content-Type": "application/json"}

    # The policy host B serves is signed with the key host A announced.
    policy = httpx.get(f"{urls[1]}/v1/policy", headers=headers, timeout=10)
    assert policy.status_code == 200, policy.text
    assert policy.json()["key_id"] == enrolled.json()["policy_key_id"]

    # Batches alternate between the hosts, as a round-robin balancer sends them; the chain runs across both.
    batches = [agent.batch(agent.events(25)) for _ in range(8)]
    for n, batch in enumerate(batches):
        sent = httpx.post(f"{urls[n % 2]}/v1/events", content=batch.model_dump_json(), headers=headers, timeout=20)
        assert sent.status_code == 200, sent.text
        assert sent.json() == {"accepted": 25, "duplicates": 0}
    # A retry landing on the other host is a duplicate, not a second copy.
    replay = httpx.post(f"{urls[1]}/v1/events", content=batches[2].model_dump_json(), headers=headers, timeout=20)
    assert replay.json() == {"accepted": 0, "duplicates": 25}
    # Another event under a stored seq is refused on either host.
    impostor = SimulatedAgent(device_id=agent.device_id, chain_key=agent.chain_key)
    for url in urls:
        reused = httpx.post(
            f"{url}/v1/events", content=impostor.batch(impostor.events(1)).model_dump_json(), headers=headers
        )
        assert reused.status_code == 409, reused.text
        impostor.seq, impostor.mac = 0, "0" * 64
    beat = httpx.post(f"{urls[1]}/v1/heartbeat", json={"user": "u", "policy_version": 1}, headers=headers)
    assert beat.status_code == 200, beat.text

    # An alert ingested through host B reaches a supervisor's stream on host A (PostgreSQL NOTIFY).
    arrived = threading.Event()
    opened = threading.Event()
    tamper = agent.next_event(kind=EventKind.agent_tamper, severity=Severity.high, action="observed")

    def listen() -> None:
        stream_headers = {"Authorization": f"Bearer {api_token}"}
        with httpx.stream("GET", f"{urls[0]}/v1/alerts/stream", headers=stream_headers, timeout=30) as sse:
            lines = sse.iter_lines()
            next(lines)
            opened.set()
            for line in lines:
                if line.startswith("data:") and json.loads(line[5:]).get("event_seq") == tamper.seq:
                    arrived.set()
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(20)
    sent = httpx.post(f"{urls[1]}/v1/events", content=agent.batch([tamper]).model_dump_json(), headers=headers)
    assert sent.status_code == 200, sent.text
    assert arrived.wait(20), "the alert raised through host B never reached the stream on host A"

    db = open_store(settings)
    try:
        with db.read() as conn:
            e, a = tables.events, tables.alerts
            stored = conn.execute(
                select(func.count(), func.count(func.distinct(e.c.seq))).where(e.c.device_id == agent.device_id)
            ).one()
            kinds = sorted(str(k) for k in conn.scalars(select(a.c.kind).where(a.c.device_id == agent.device_id)))
    finally:
        db.dispose()
    assert tuple(stored) == (201, 201)
    assert CHAIN_BROKEN not in kinds
    assert SEQ_GAP not in kinds
    assert kinds.count(SEQ_REUSE) == 2


def test_a_device_revoked_from_the_cli_is_refused_by_every_worker_of_both_hosts(
    hosts: tuple[ServerSettings, list[str]],
) -> None:
    """Each worker caches verified device credentials; a revocation made elsewhere (here the CLI, a process of its own)
    must reach them all: writes are refused at once by their own transaction, reads within the cache's recheck."""
    settings, urls = hosts
    token = commands.issue_enroll_token(settings, "team-a", timedelta(hours=1))
    agent = SimulatedAgent()
    enrolled = httpx.post(
        f"{urls[0]}/v1/enroll",
        json={"token": token, "hostname": "desk-2", "os": "linux", "user": "u", "chain_key": agent.chain_key_b64},
        timeout=10,
    )
    assert enrolled.status_code == 200, enrolled.text
    headers = {"Authorization": f"Bearer {enrolled.json()['credential']}"}
    probes = 8  # enough requests per host that each of host A's two workers serves some
    for url in urls:
        for _ in range(probes):
            assert httpx.get(f"{url}/v1/policy", headers=headers, timeout=10).status_code == 200

    assert commands.revoke_device(settings, enrolled.json()["device_id"])

    for url in urls:
        for _ in range(probes):
            beat = httpx.post(f"{url}/v1/heartbeat", json={"policy_version": 1}, headers=headers, timeout=10)
            assert beat.status_code == 401, beat.text

    def refused_everywhere() -> bool:
        return all(
            httpx.get(f"{url}/v1/policy", headers=headers, timeout=10).status_code == 401
            for url in urls
            for _ in range(probes)
        )

    wait_for(refused_everywhere, timeout=5, what="every worker to refuse the revoked credential")
