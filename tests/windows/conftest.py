"""Fixtures for tests/windows: a Windows desk under Wine (tests/windows/harness.py) and a real endpoint on loopback.

The environment comes from `bash scripts/windows-env.sh`; without it the tests skip with a reason, and fail in CI
(CI=true), where .ci/run builds it first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.endpoint import EndpointProcess
from tests.windows.harness import WineDesk, env_dir
from tests.xvfb import xvfb_display


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.wine)


@pytest.fixture(scope="module")
def wine_desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WineDesk]:
    env = env_dir()
    if env is None:
        message = "no Windows-under-Wine environment: run `bash scripts/windows-env.sh`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with xvfb_display() as display:
        desk = WineDesk(env, tmp_path_factory.mktemp("wine"), display=display)
        try:
            yield desk
        finally:
            desk.close()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EndpointProcess]:
    server = EndpointProcess(tmp_path_factory.mktemp("endpoint"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
