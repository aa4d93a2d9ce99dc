"""Downloads collector: watches the policy's download folders (watchdog), reports finished files
with a PII summary, and quarantines or deletes them on the pipeline's decision.

`DownloadsCollector` is started from the agent's main thread and owns its worker thread.
"""

from __future__ import annotations

from collectors.downloads.collector import DownloadsCollector
from collectors.downloads.quarantine import default_quarantine_dir, quarantine_file, read_record, restore

__all__ = ["DownloadsCollector", "default_quarantine_dir", "quarantine_file", "read_record", "restore"]
