#!/usr/bin/env bash
# Quick start, command 1: run DeskWarden (agent + embedded local endpoint on SQLite) on this machine.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup-env.sh"
apt_install "${RUNTIME_PKGS[@]}"
setup_venv server
exec "$VENV/bin/deskwarden" demo "$@"
