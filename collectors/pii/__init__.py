"""On-device PII detection and masking, used by the clipboard and downloads collectors and `deskwarden scan`.

Pure functions, safe from any thread (the clipboard calls them on the GUI thread for small text and
on a worker for large text; downloads on its collector thread). Nothing here logs or returns raw values.
"""

from __future__ import annotations

from collectors.pii.confidence import CONFIDENCE_LEVELS, DEFAULT_MIN_CONFIDENCE, confidence_at_least
from collectors.pii.detectors import ALL, DEFAULT_LIMIT_CHARS, ScanResult, mask_text, scan, scan_text
from collectors.pii.findings import Finding
from collectors.pii.masking import keyed_hash, mask, normalise, summarize

__all__ = [
    "ALL",
    "CONFIDENCE_LEVELS",
    "DEFAULT_LIMIT_CHARS",
    "DEFAULT_MIN_CONFIDENCE",
    "Finding",
    "ScanResult",
    "confidence_at_least",
    "keyed_hash",
    "mask",
    "mask_text",
    "normalise",
    "scan",
    "scan_text",
    "summarize",
]
