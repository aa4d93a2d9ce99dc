"""Builds the collectors of one process role from the registry's factories (`collectors.base.REGISTRY`).

Called once on the main thread by the service's runtime and by the session helper; light on imports so the
helper does not pull in the service's machinery.
"""

from __future__ import annotations

import dataclasses
import logging

from collectors.base import REGISTRY, Collector, CollectorContext, load_collector_factory

log = logging.getLogger(__name__)


def default_collectors(context: CollectorContext) -> dict[str, Collector]:
    """One instance of every registered collector that runs in `context.role`, wired where they cooperate."""
    instances: dict[str, Collector] = {}

    def clear_clipboard_image() -> bool:
        clipboard = instances.get("clipboard")
        return bool(clipboard is not None and clipboard.clear_image_if_present())  # type: ignore[attr-defined]

    context = dataclasses.replace(context, clear_clipboard_image=clear_clipboard_image)
    for name in REGISTRY:
        try:
            collector = load_collector_factory(name)(context)
        except Exception:
            log.exception("collector %s could not be created", name)
            continue
        if collector is not None:
            instances[name] = collector
    return instances
