"""The runtime owns the alerting thread's wake-up: an ingest commit that wrote an alert routes it at once, not at
the next poll (here 60 s away), through `Runtime.alert_wake` rather than any module-level registry."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from sqlalchemy import select

from central.settings import ServerSettings
from central.store.console_tables import alert_workflow
from policy_client.schema import EventKind, Severity
from tests.integration.central.console.live import serve_console
from tests.support.waiting import wait_for

POLL_S = 60.0


def test_an_ingested_alert_is_routed_at_once_not_at_the_next_poll(tmp_path: Path) -> None:
    with serve_console(ServerSettings(data_dir=tmp_path / "server", port=0), poll_s=POLL_S) as console:
        agent, headers = console.enroll(team="floor-1")
        # Let the thread's first pass (at start) go by, so only a wake-up can route what comes next.
        console.state.alerting.tick()
        event = agent.next_event(kind=EventKind.agent_tamper, severity=Severity.high, data={"what": "test"})
        sent = time.monotonic()
        answer = httpx.post(
            f"{console.url}/v1/events",
            content=agent.batch([event]).model_dump_json(),
            headers=headers | {"Content-Type": "application/json"},
        )
        assert answer.status_code == 200, answer.text

        def routed() -> bool:
            with console.runtime.db.read() as conn:
                return conn.execute(select(alert_workflow.c.alert_id)).first() is not None

        wait_for(routed, timeout=POLL_S / 4, what="the alert routed after the ingest commit")
        assert time.monotonic() - sent < POLL_S / 4
