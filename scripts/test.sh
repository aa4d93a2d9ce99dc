#!/usr/bin/env bash
# Quick start, command 2: run every check (ruff, mypy, the whole pytest suite) with the services it needs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup-env.sh"
apt_install "${RUNTIME_PKGS[@]}" "${TEST_PKGS[@]}"
setup_venv server,dev
setup_user_venv
echo "== Windows under Wine (scripts/windows-env.sh; cached in /var/cache/deskwarden-wine)"
bash "$ROOT/scripts/windows-env.sh" >/dev/null
cd "$ROOT"

# A throwaway PostgreSQL cluster for the endpoint tests (stopped on exit).
source "$ROOT/scripts/pg-test-server.sh"
start_test_postgres
trap stop_test_postgres EXIT

export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
export PYTHON_KEYRING_BACKEND=keyring.backends.fail.Keyring
export DESKWARDEN_CHROMIUM="${DESKWARDEN_CHROMIUM:-$(command -v chromium || true)}"

echo "== ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
echo "== import rules (lint-imports; contracts in pyproject.toml)"
"$VENV/bin/lint-imports"
echo "== mypy --strict"
"$VENV/bin/mypy" agent_app collectors policy_client central
echo "== mypy --platform win32 / darwin"
"$VENV/bin/mypy" --platform win32 collectors agent_app/core
"$VENV/bin/mypy" --platform darwin collectors agent_app/core
echo "== pytest"
"$VENV/bin/pytest" -n "${DESKWARDEN_TEST_WORKERS:-2}" --durations=15 "$@"
