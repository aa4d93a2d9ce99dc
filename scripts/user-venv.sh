#!/usr/bin/env bash
# Builds or re-syncs the desk-user install for tests/privileged (see setup_user_venv in setup-env.sh) and prints
# the path of its python. Needs root; tests/support/desk_user.py calls it once per test session.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup-env.sh"
setup_user_venv
echo "$USER_PYTHON"
