"""What goes into the agent bundle: hidden imports derived from the collector registry and keyring backends,
data files, excluded packages and the version stamp. Read by deskwarden.spec on the build machine's main thread.
"""

from __future__ import annotations

import importlib.util
import pkgutil
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "deskwarden"

EXCLUDES: tuple[str, ...] = (
    # the central endpoint and its server stack: the agent bundle never serves
    "central",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "psycopg",
    "psycopg_binary",
    "argon2",
    "multipart",
    "python_multipart",
    "jinja2",
    "markdown_it",
    "httpx",
    "anyio",
    "aiosmtpd",
    # development and test tooling
    "tkinter",
    "_tkinter",
    "unittest",
    "doctest",
    "pytest",
    "_pytest",
    "hypothesis",
    "mypy",
    "IPython",
    "setuptools",
    "pip",
    # Qt modules the tray never uses (each pulls large Qt libraries)
    "PySide6.QtNetwork",
    "PySide6.QtQml",
    "PySide6.QtQuick",
    "PySide6.QtQuickWidgets",
    "PySide6.QtQuick3D",
    "PySide6.QtSql",
    "PySide6.QtTest",
    "PySide6.QtOpenGL",
    "PySide6.QtOpenGLWidgets",
    "PySide6.QtDesigner",
    "PySide6.QtHelp",
    "PySide6.QtUiTools",
    "PySide6.QtXml",
    "PySide6.QtConcurrent",
    "PySide6.QtPrintSupport",
    "PySide6.QtPdf",
    "PySide6.QtDBus",
)

KEYRING_BACKENDS = {
    "linux": ("keyring.backends.SecretService", "keyring.backends.kwallet", "keyring.backends.libsecret"),
    "win32": ("keyring.backends.Windows",),
    "darwin": ("keyring.backends.macOS",),
}
ALWAYS = (
    "keyring.backends.fail",
    "keyring.backends.null",
    "keyring.backends.chainer",
    # dynamic imports of the agent itself (commands are imported inside their handlers)
    "agent_app.run",
    "agent_app.core.selftest",
    "agent_app.core.autostart",
    "agent_app.core.autostart.linux",
    "agent_app.core.autostart.windows",
    "agent_app.core.autostart.macos",
    "agent_app.core.enrol",
    "agent_app.core.status",
    "agent_app.demo",
)


_QT = "PySide6/Qt/"
_DROP_PLATFORMS = ("eglfs", "linuxfb", "minimalegl", "vkkhrdisplay", "vnc", "directfb")
_DROP_IMAGE_FORMATS = ("libqgif", "libqjpeg", "libqtga", "libqtiff", "libqwbmp", "libqwebp")
DROP_PREFIXES: tuple[str, ...] = (
    _QT + "translations/",  # Qt's own dialog strings; the agent's texts are its own
    _QT + "plugins/egldeviceintegrations/",
    _QT + "plugins/generic/",  # evdev input for kiosk framebuffers
    _QT + "plugins/platformthemes/libqgtk3",  # pulls GTK 3, cairo, pango; the portal theme remains
    _QT + "plugins/wayland-graphics-integration-client/libvulkan",
    *(f"{_QT}plugins/platforms/libq{name}" for name in _DROP_PLATFORMS),
    *(f"{_QT}plugins/imageformats/{name}" for name in _DROP_IMAGE_FORMATS),
    _QT + "lib/libQt6EglFs",
)
# System libraries that only the dropped GTK platform theme needs (checked with ldd on Debian 12).
GTK_ONLY_LIBS: frozenset[str] = frozenset(
    [
        "libgtk-3.so.0",
        "libgdk-3.so.0",
        "libatk-1.0.so.0",
        "libatk-bridge-2.0.so.0",
        "libatspi.so.0",
        "libcairo-gobject.so.2",
        "libcairo.so.2",
        "libpango-1.0.so.0",
        "libpangocairo-1.0.so.0",
        "libpangoft2-1.0.so.0",
        "libgdk_pixbuf-2.0.so.0",
        "libepoxy.so.0",
        "libpixman-1.so.0",
        "libthai.so.0",
        "libdatrie.so.1",
        "libfribidi.so.0",
        "libgraphite2.so.3",
        "libXcomposite.so.1",
        "libXcursor.so.1",
        "libXdamage.so.1",
        "libXinerama.so.1",
        "libXrandr.so.2",
        "libXi.so.6",
        "libwayland-egl.so.1",
    ]
)


def keep_in_bundle(dest: str) -> bool:
    """Whether a collected file (its path inside the bundle) ships; drops what the agent never loads."""
    dest = dest.replace("\\", "/")
    if dest.startswith(DROP_PREFIXES):
        return False
    return "/" in dest or dest not in GTK_ONLY_LIBS


def version() -> str:
    """agent_app.__version__, read without importing the package (the spec runs in PyInstaller's process)."""
    text = (ROOT / "agent_app" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise RuntimeError("agent_app/__init__.py has no __version__")
    return match.group(1)


def registry_modules() -> list[str]:
    """The module of every registered collector (collectors.base.REGISTRY is static data)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from collectors.base import REGISTRY

    return sorted({target.partition(":")[0] for target in REGISTRY.values()})


def _package_dirs(package: str) -> list[Path]:
    """Directories of a package, located from the top-level package's spec without importing any of it."""
    top, *rest = package.split(".")
    spec = importlib.util.find_spec(top)  # a top-level name is located, not imported
    if spec is None or not spec.submodule_search_locations:
        return []
    dirs = [Path(p) for p in spec.submodule_search_locations]
    for part in rest:
        dirs = [d / part for d in dirs if (d / part / "__init__.py").is_file()]
    return dirs


def _submodules(package: str) -> list[str]:
    """Every submodule of a package, found from its files without importing them (so every OS's backends)."""
    found: list[str] = []
    for info in pkgutil.iter_modules([str(d) for d in _package_dirs(package)], prefix=package + "."):
        found.append(info.name)
        if info.ispkg:
            found.extend(_submodules(info.name))
    return found


def _exists(module: str) -> bool:
    package, _, name = module.rpartition(".")
    dirs = _package_dirs(package) if package else [Path(p) for p in sys.path if p]
    return any((d / name / "__init__.py").is_file() or (d / f"{name}.py").is_file() for d in dirs)


def hidden_imports(*, platform: str = sys.platform) -> list[str]:
    """Collector modules with their per-OS backend submodules, keyring backends, and lazily imported commands."""
    names: set[str] = set(ALWAYS)
    for module in registry_modules():
        if not _exists(module):
            continue  # a registered collector not written yet: selftest reports it as missing
        names.add(module)
        names.update(_submodules(module))  # a collector package: every OS backend in it
        parent = module.rpartition(".")[0]
        if parent != "collectors":  # a collector module inside a package: its siblings too
            names.update(_submodules(parent))
    names.update(_submodules("collectors.pii"))
    os_key = "linux" if platform.startswith("linux") else platform
    names.update(KEYRING_BACKENDS.get(os_key, ()))
    # pynput picks its backend at import time; its own hook imports pynput, which fails without a display.
    other = {"linux": ("win32", "darwin"), "win32": ("xorg", "uinput", "darwin"), "darwin": ("xorg", "uinput", "win32")}
    names.update(n for n in _submodules("pynput") if not any(token in n for token in other.get(os_key, ())))
    names.update(_submodules("watchdog.observers"))
    return sorted(names)


def datas() -> list[tuple[str, str]]:
    """(source, destination in bundle): assets (icons, default policy) and the autostart templates."""
    return [(str(ROOT / "assets"), "assets"), (str(ROOT / "installer" / "templates"), "templates")]


def icon(*, platform: str = sys.platform) -> str | None:
    suffix = {"win32": ".ico", "darwin": ".icns"}.get(platform, ".png")
    path = ROOT / "assets" / "icons" / f"deskwarden{suffix}"
    return str(path) if path.exists() else None


def windows_version_file(target: Path) -> Path:
    """A VSVersionInfo file for the Windows executables, stamped with the package version."""
    parts = [int(p) for p in re.findall(r"\d+", version())[:4]]
    parts += [0] * (4 - len(parts))
    numbers = ", ".join(str(p) for p in parts)
    text = f"""VSVersionInfo(
  ffi=FixedFileInfo(filevers=({numbers}), prodvers=({numbers}), mask=0x3f, flags=0x0, OS=0x40004,
                    fileType=0x1, subtype=0x0, date=(0, 0)),
  kids=[
    StringFileInfo([StringTable('040904B0', [
      StringStruct('CompanyName', 'DeskWarden'),
      StringStruct('FileDescription', 'DeskWarden desktop compliance agent'),
      StringStruct('FileVersion', '{version()}'),
      StringStruct('InternalName', '{NAME}'),
      StringStruct('OriginalFilename', '{NAME}.exe'),
      StringStruct('ProductName', 'DeskWarden'),
      StringStruct('ProductVersion', '{version()}')])]),
    VarFileInfo([VarStruct('Translation', [1033, 1200])])
  ]
)
"""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
