"""`deskwarden selftest`: start every collector that can run here with the default policy, record one event
through a real pipeline and outbox, stop everything and print a JSON report. Runs on the main thread.

Used by the bundle test and by IT after a rollout; it needs no source tree, no keychain and no endpoint, and
keeps its state in a scratch directory under the agent home that it removes afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from agent_app import __version__

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 10.0
SELFTEST_KIND = "agent.heartbeat"


def _gui_application() -> Any:
    """A QGuiApplication (offscreen unless a platform is chosen) so GUI-thread collectors can start; None without Qt."""
    try:
        from PySide6.QtGui import QGuiApplication
    except ImportError as exc:
        log.warning("Qt unavailable for the self-test: %s", exc)
        return None
    existing = QGuiApplication.instance()
    if existing is not None:
        return existing
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    return QGuiApplication(sys.argv[:1])


def run_selftest(home: Path) -> int:
    """Prints the report; 0 when the event was recorded, no collector failed and every registered one loaded."""
    home.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="selftest-", dir=home))
    try:
        report = _run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0 if report["ok"] else 1


def _run(work: Path) -> dict[str, Any]:
    from agent_app.core import paths
    from agent_app.core.collector_set import default_collectors
    from agent_app.core.outbox import Outbox
    from agent_app.core.paths import assets_dir, login_name
    from agent_app.core.pipeline import Pipeline
    from agent_app.core.supervisor import CollectorSupervisor
    from collectors.base import REGISTRY, CollectorContext
    from policy_client.policy_store import PolicyStore
    from policy_client.schema import EventDraft, EventKind
    from policy_client.secrets import KEY_BYTES, OutboxKeys, key_id_for

    started = time.monotonic()
    threads_before = set(threading.enumerate())
    app = _gui_application()
    data_key = os.urandom(KEY_BYTES)  # throwaway keys: the self-test never touches the keychain
    keys = OutboxKeys(key_id=key_id_for(data_key), data_key=data_key, chain_key=os.urandom(KEY_BYTES))
    default_policy = assets_dir() / "policy" / "default.json"
    policy = PolicyStore(paths.policy_dir(work), trusted_keys={}, default_path=default_policy).current()
    outbox_file = paths.outbox_path(work)
    collectors: dict[str, Any] = {}
    for role in ("service", "helper"):  # the bundle carries both processes: every collector must build
        context = CollectorContext(role=role, hash_key=keys.data_key, quarantine_dir=str(paths.quarantine_dir(work)))
        collectors |= default_collectors(context)
    supervisor: CollectorSupervisor | None = None
    pipeline = Pipeline(
        outbox_factory=lambda: Outbox(outbox_file, keys=keys),
        policy=lambda: policy,
        collector=lambda name: supervisor.get(name) if supervisor else None,
        user=login_name(),
    )
    supervisor = CollectorSupervisor(collectors, sink=pipeline, record=pipeline.record)
    pipeline.start()
    try:
        supervisor.apply(policy)
        states = supervisor.states()
        pipeline.record(EventDraft(kind=EventKind(SELFTEST_KIND), data={"selftest": True}))
        flushed = pipeline.flush(FLUSH_TIMEOUT_S)
    finally:
        supervisor.stop_all()
        pipeline.stop()
    reader = Outbox(outbox_file, keys=keys, check=False)
    try:
        queued = reader.pending()
    finally:
        reader.close()
    recorded = flushed and any(e.get("kind") == SELFTEST_KIND and e.get("data") == {"selftest": True} for e in queued)
    missing = sorted(set(REGISTRY) - set(collectors))
    for name in missing:
        states[name] = "missing"
    failed = sorted(name for name, state in states.items() if state == "failed")
    left = sorted(t.name for t in set(threading.enumerate()) - threads_before if t.is_alive())
    return {
        "ok": bool(recorded and not failed and not missing),
        "version": __version__,
        "frozen": bool(getattr(sys, "frozen", False)),
        "platform": f"{sys.platform} {platform.machine()}",
        "python": platform.python_version(),
        "qt": app is not None,
        "policy_version": policy.version,
        "default_policy": str(default_policy) if default_policy.is_file() else None,
        "collectors": states,
        "missing": missing,
        "failed": failed,
        "event_recorded": recorded,
        "events_in_outbox": len(queued),
        "threads_left": left,
        "seconds": round(time.monotonic() - started, 3),
    }
