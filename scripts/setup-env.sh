#!/usr/bin/env bash
# Shared set-up for the quick-start scripts: system packages (Debian/Ubuntu) and the project venv.
# Sourced by scripts/demo.sh and scripts/test.sh; idempotent and quiet when everything is present.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DESKWARDEN_VENV:-$ROOT/.venv}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Qt's xcb platform plugin needs these; python3-venv for the venv.
RUNTIME_PKGS=(python3 python3-venv python3-dev libegl1 libgl1 libfontconfig1 libdbus-1-3 libxkbcommon-x11-0
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0
  libxcb-randr0 libxcb-xfixes0 libxcb-xkb1)
TEST_PKGS=(xvfb xclip xdotool x11-utils postgresql chromium trayer e2fsprogs util-linux)

# The stamp records the extras and a hash of pyproject.toml: a changed pyproject or an extra not yet installed
# reinstalls, with the union of the extras asked for now and before (so demo.sh after test.sh keeps ruff and mypy).
setup_venv() {
  local py="${PYTHON:-python3}"
  if [ ! -x "$VENV/bin/python" ]; then
    "$py" -m venv "$VENV"
  fi
  local stamp="$VENV/.deskwarden-installed"
  local asked="${1:-}" want have="" have_hash="" hash
  hash="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [ -f "$stamp" ]; then
    have="$(sed -n 's/^extras=//p' "$stamp")"
    have_hash="$(sed -n 's/^pyproject=//p' "$stamp")"
  fi
  want="$(printf '%s\n' ${asked//,/ } ${have//,/ } | sort -u | paste -sd, -)"
  if [ "$have_hash" != "$hash" ] || [ "$want" != "$have" ]; then
    echo "setup: installing the project with extras [$want]" >&2
    "$VENV/bin/python" -m pip install -q -U pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e "$ROOT[$want]"
    printf 'extras=%s\npyproject=%s\n' "$want" "$hash" >"$stamp"
  fi
}
