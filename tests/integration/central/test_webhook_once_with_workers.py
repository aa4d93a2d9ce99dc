"""`deskwarden server --workers 3` on a real PostgreSQL: every alert reaches a real webhook receiver exactly once.

Three uvicorn worker processes each run an alert router; agents post alert-raising events concurrently, so
the routers race for the same alerts. The claim used to trust `rowcount` (-1 through psycopg 3): 2-3 deliveries.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from central import commands
from central.alerting.rules import RuleSpec, save_rule
from central.runtime import open_store
from central.settings import ServerSettings
from central.simulate import SimulatedAgent
from central.store.console_tables import alert_outbox, alert_workflow
from policy_client.schema import EventKind, Severity, utc_now
from tests.support.endpoint import EndpointProcess
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.integration]

DEVICES = 4
ALERTS_PER_DEVICE = 40  # in one batch each: 160 alerts routed while the other workers poll


class WebhookReceiver:
    """A local Slack-style webhook: counts deliveries per alert id."""

    def __init__(self) -> None:
        self.deliveries: Counter[int] = Counter()
        self._lock = threading.Lock()
        receiver = self

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                alert_id = int(json.loads(body)["alert"]["id"])
                with receiver._lock:
                    receiver.deliveries[alert_id] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> Counter[int]:
        with self._lock:
            return Counter(self.deliveries)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hook:
        yield hook


@pytest.fixture
def workers(tmp_path: Path, pg_url: str) -> Iterator[tuple[ServerSettings, str]]:
    """Three worker processes of one `deskwarden server` on the test's PostgreSQL database."""
    env = {"DESKWARDEN_ALLOW_INTERNAL_WEBHOOKS": "1"}
    with EndpointProcess(tmp_path / "server", db_url=pg_url, workers=3, env=env) as endpoint:
        yield endpoint.settings, endpoint.url


def _enrol(url: str, settings: ServerSettings, hostname: str) -> tuple[SimulatedAgent, dict[str, str]]:
    token = commands.issue_enroll_token(settings, "team-a", timedelta(hours=1))
    agent = SimulatedAgent()
    answer = httpx.post(
        f"{url}/v1/enroll",
        json={"token": token, "hostname": hostname, "os": "linux", "user": "u", "chain_key": agent.chain_key_b64},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    agent.device_id = answer.json()["device_id"]
    return agent, {"Authorization": f"Bearer {answer.json()['credential']}", "Content-Type": "application/json"}


def _post_tamper(url: str, agent: SimulatedAgent, headers: dict[str, str], count: int, reason: str) -> None:
    """One batch of `count` alert-raising events: one router routes them one by one while the others poll."""
    events = [
        agent.next_event(
            kind=EventKind.agent_tamper, severity=Severity.high, action="observed", data={"reason": f"{reason}-{n}"}
        )
        for n in range(count)
    ]
    sent = httpx.post(f"{url}/v1/events", content=agent.batch(events).model_dump_json(), headers=headers, timeout=20)
    assert sent.status_code == 200, sent.text


def test_every_alert_reaches_the_webhook_once_with_three_workers(
    workers: tuple[ServerSettings, str], receiver: WebhookReceiver
) -> None:
    settings, url = workers
    db = open_store(settings)
    try:
        with db.write() as conn:
            spec = {"name": "page", "kinds": ["*"], "dedupe_seconds": 0}
            spec["channels"] = [{"type": "webhook", "url": receiver.url}]
            save_rule(conn, RuleSpec.model_validate(spec), now=utc_now())
        agents = [_enrol(url, settings, f"desk-{i}") for i in range(DEVICES)]
        with ThreadPoolExecutor(DEVICES) as pool:
            for done in [
                pool.submit(_post_tamper, url, agent, headers, ALERTS_PER_DEVICE, f"probe-{i}")
                for i, (agent, headers) in enumerate(agents)
            ]:
                done.result()
        total = DEVICES * ALERTS_PER_DEVICE
        wait_for(lambda: len(receiver.snapshot()) >= total, timeout=60, what=f"{total} distinct alerts delivered")

        # A last alert, raised after all the others were delivered: once it is delivered too, every router
        # has long finished any racing claim of the earlier ones (each claim commits in milliseconds).
        last_agent, last_headers = agents[0]
        _post_tamper(url, last_agent, last_headers, 1, "marker")
        wait_for(lambda: len(receiver.snapshot()) >= total + 1, timeout=60, what="the marker alert delivered")

        def outbox_settled() -> bool:
            with db.read() as conn:
                undelivered = conn.execute(
                    select(func.count()).select_from(alert_outbox).where(alert_outbox.c.delivered_at.is_(None))
                ).scalar_one()
            return int(undelivered) == 0

        wait_for(outbox_settled, timeout=60, what="every queued delivery sent")
        with db.read() as conn:
            routed = conn.execute(select(func.count()).select_from(alert_workflow)).scalar_one()
            queued = conn.execute(select(func.count()).select_from(alert_outbox)).scalar_one()
    finally:
        db.dispose()

    deliveries = receiver.snapshot()
    repeated = {alert_id: n for alert_id, n in deliveries.items() if n > 1}
    assert repeated == {}, f"{len(repeated)} of {len(deliveries)} alerts delivered more than once: {repeated}"
    assert len(deliveries) == total + 1
    assert (routed, queued) == (total + 1, total + 1)
