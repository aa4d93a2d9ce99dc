"""`Finding`: one detected personal-data value, as the detectors produce it and masking and summaries read it.

A plain frozen value, safe from any thread. It carries offsets, a masked form and a confidence, never the raw value.
"""

from __future__ import annotations

from dataclasses import dataclass

from policy_client.schema import Confidence


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected value: its detector, its span in the scanned text, its masked form and how sure it is."""

    type: str
    start: int
    end: int
    masked: str
    confidence: Confidence = "medium"
