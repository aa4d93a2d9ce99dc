"""Every collector of both processes in one test process: service-role and helper-role collectors side by side,
for tests that drive the whole engine in-process (the split itself is tested in tests/privileged)."""

from __future__ import annotations

from pathlib import Path

from agent_app.core import paths
from agent_app.core.collector_set import default_collectors
from agent_app.core.runtime import pii_hash_key
from collectors.base import Collector, CollectorContext
from policy_client.secrets import OutboxKeys


def all_collectors(home: Path, keys: OutboxKeys) -> dict[str, Collector]:
    found: dict[str, Collector] = {}
    for role in ("helper", "service"):  # the service's process scanner wins over the helper's hotkey half
        context = CollectorContext(
            role=role, hash_key=pii_hash_key(keys), quarantine_dir=str(paths.quarantine_dir(home))
        )
        found |= default_collectors(context)
    return found
