"""Print the agent's runtime requirements as a Windows CPython would need them, pinned to the versions this venv
resolved: one `name==version` a line (a requirement that only Windows needs, so not installed here, unpinned).

Run by scripts/windows-env.sh with the project venv's python: `pins.py PYPROJECT PYTHON_VERSION`. The dependency
closure follows each installed distribution's metadata, with markers evaluated for win32 / CPython PYTHON_VERSION.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Qt is pinned by scripts/windows-env.sh itself: the project's PySide6 needs Windows' ICU, which Wine 8 lacks.
LEFT_OUT = {"pyside6-essentials", "pyside6", "shiboken6"}


def windows_environment(python_version: str) -> dict[str, str]:
    env = dict(default_environment())
    env.update(
        sys_platform="win32",
        platform_system="Windows",
        os_name="nt",
        platform_machine="AMD64",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        python_version=".".join(python_version.split(".")[:2]),
        python_full_version=python_version if python_version.count(".") == 2 else python_version + ".0",
    )
    return env


def closure(requirements: list[str], env: dict[str, str]) -> list[str]:
    pins: dict[str, str] = {}
    queue = [(Requirement(text), "") for text in requirements]
    while queue:
        requirement, extra = queue.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({**env, "extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name in LEFT_OUT or name in pins:
            continue
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            pins[name] = f"{requirement.name}{requirement.specifier}"  # Windows only: not installed in this venv
            continue
        pins[name] = f"{dist.metadata['Name']}=={dist.version}"
        for text in dist.requires or []:
            child = Requirement(text)
            for wanted in requirement.extras or {""}:
                queue.append((child, wanted))
    return [pins[name] for name in sorted(pins)]


def main() -> int:
    pyproject, python_version = sys.argv[1], sys.argv[2]
    with open(pyproject, "rb") as handle:
        requirements = tomllib.load(handle)["project"]["dependencies"]
    for line in closure(requirements, windows_environment(python_version)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
