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
TEST_PKGS=(xvfb xclip xdotool x11-utils postgresql chromium trayer e2fsprogs util-linux zip)

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

# The desk-user install for tests/privileged: root-owned, world-readable, not user-writable, at a path every user can
# reach (the repo may sit in a 0700 directory and the default python3 under /root). A venv from Debian's python with
# the agent's base dependencies (rebuilt only when that list changes) plus a copy of the agent's packages, re-synced on
# every call so tests run the current code. The root service in those tests runs the same copy.
USER_PREFIX="${DESKWARDEN_USER_PREFIX:-/opt/deskwarden-test}"
USER_PYTHON="$USER_PREFIX/venv/bin/python"
USER_SRC_PKGS=(agent_app collectors policy_client assets)
USER_PKGS=(python3 python3-venv rsync passwd util-linux)

setup_user_venv() {
  if [ "$(id -u)" != 0 ]; then
    echo "setup: skipping the desk-user install in $USER_PREFIX (needs root)" >&2
    return 0
  fi
  apt_install "${USER_PKGS[@]}"
  mkdir -p "$USER_PREFIX"
  # One builder at a time (pytest-xdist workers and test.sh all call this); subshell scopes umask and lock.
  (
    umask 022
    exec 9>"$USER_PREFIX/.lock"
    flock 9
    chown root:root "$USER_PREFIX"
    chmod 0755 "$USER_PREFIX"
    local deps hash stamp="$USER_PREFIX/.deps-installed"
    deps="$(/usr/bin/python3 -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$ROOT/pyproject.toml")"
    hash="$(printf '%s\n%s\n' "$(/usr/bin/python3 -VV)" "$deps" | sha256sum | cut -d' ' -f1)"
    if [ ! -x "$USER_PYTHON" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$hash" ]; then
      echo "setup: building the desk-user venv in $USER_PREFIX/venv" >&2
      rm -rf "$USER_PREFIX/venv" "$stamp"
      /usr/bin/python3 -m venv "$USER_PREFIX/venv"
      printf '%s\n' "$deps" >"$USER_PREFIX/requirements.txt"
      "$USER_PYTHON" -m pip install -q --disable-pip-version-check -r "$USER_PREFIX/requirements.txt"
      local site
      site="$("$USER_PYTHON" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
      printf '%s\n' "$USER_PREFIX/src" >"$site/deskwarden-src.pth"
      printf '#!%s\nimport sys\nfrom agent_app.cli import main\nsys.exit(main())\n' "$USER_PYTHON" \
        >"$USER_PREFIX/venv/bin/deskwarden"
      chmod 0755 "$USER_PREFIX/venv/bin/deskwarden"
      chown -R root:root "$USER_PREFIX/venv"
      chmod -R u+rwX,go+rX,go-w "$USER_PREFIX/venv"
      printf '%s\n' "$hash" >"$stamp"
    fi
    mkdir -p "$USER_PREFIX/src"
    local pkg entry sources=()
    for pkg in "${USER_SRC_PKGS[@]}"; do sources+=("$ROOT/$pkg"); done
    for entry in "$USER_PREFIX/src"/*; do  # only the listed packages (never central) are importable here
      [[ " ${USER_SRC_PKGS[*]} " == *" $(basename "$entry") "* ]] || rm -rf "$entry"
    done
    # -p: a __pycache__ left on our side does not keep a package deleted upstream from being deleted here.
    rsync -a --delete --chown=root:root --chmod=u=rwX,go=rX --filter='-p __pycache__/' --filter='-p *.pyc' \
      "${sources[@]}" "$USER_PREFIX/src/"
    # The desk user cannot write __pycache__ here; compile as root so its imports stay fast.
    "$USER_PYTHON" -m compileall -q -j0 "$USER_PREFIX/src" >/dev/null
  )
}
