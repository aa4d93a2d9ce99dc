"""GUI tests run on the offscreen platform unless a test starts its own Xvfb in a subprocess."""

from __future__ import annotations

import os

# Must happen before pytest-qt creates the QApplication.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
