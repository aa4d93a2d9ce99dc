"""Clipboard collector: PII classification of copied text on the GUI thread, with mask and clear
enforcement; the macOS backend polls the pasteboard change count.

`ClipboardCollector` is started, stopped and signalled on the GUI thread.
"""

from __future__ import annotations

from collectors.clipboard.collector import ClipboardCollector

__all__ = ["ClipboardCollector"]
