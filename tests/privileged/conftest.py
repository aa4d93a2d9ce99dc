"""Fixtures for tests/privileged: real desk users, the root-owned install they run, and an X display they may use.

They live in tests/support/desk_user.py; every fixture skips with a reason when not root or useradd/setpriv are missing.
"""

from __future__ import annotations

from tests.support.desk_user import (  # noqa: F401 - fixtures
    desk_display,
    desk_user,
    desk_user_factory,
    desk_users,
    user_python,
)
