"""Example budgets of the fuzz tests: small in CI, large with DESKWARDEN_LONG=1. Imported by tests only."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

LONG = os.environ.get("DESKWARDEN_LONG", "") not in ("", "0")


def budget(ci_examples: int) -> settings:
    """Hypothesis settings with `ci_examples` examples in CI (20x that in a long run), no deadline."""
    return settings(
        max_examples=ci_examples * 20 if LONG else ci_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        derandomize=False,
    )
