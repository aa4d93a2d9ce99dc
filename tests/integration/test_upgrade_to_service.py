"""The upgrade from the single-process agent to the privileged service, and the machine uninstall, against a real
endpoint: the per-user enrolment and its queue move into the service's state directory and are delivered exactly
once under the same device id; uninstalling needs an uninstall token signed by the endpoint and is reported."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent_app.core.autostart import EXIT_REFUSED
from agent_app.core.autostart.model import CommandResult
from agent_app.core.enrol import enrol_here
from agent_app.core.machine_install import install_machine, uninstall_machine
from agent_app.core.runtime import AgentRuntime
from agent_app.core.upgrade import PER_USER_DIR
from central.commands import issue_unlock_token
from collectors.base import UserHome
from policy_client.agent_config import load_config
from policy_client.schema import EventDraft, EventKind
from tests.support.endpoint import EndpointProcess
from tests.support.waiting import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the per-user layout moved here is Linux's"),
]

QUEUED = 40
EXE = ["/usr/bin/deskwarden"]


class OkRunner:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        self.calls.append(list(argv))
        return CommandResult(0)


def _old_agent_with_a_queue(endpoint: EndpointProcess, user_home: Path) -> tuple[str, Path]:
    """A per-user agent (keys in its key file, as on a desk without a keyring) with QUEUED events not delivered."""
    old = user_home.joinpath(*PER_USER_DIR)
    old.mkdir(parents=True)
    device_id = enrol_here(endpoint.url, endpoint.enroll_token(), home=old)
    endpoint.kill()
    runtime = AgentRuntime(old, collectors={})
    runtime.start()
    for n in range(QUEUED):
        runtime.record(EventDraft(kind=EventKind.violation_justified, data={"n": n}))
    assert runtime.flush(10)
    runtime.stop(reason="test")
    return device_id, old


def test_install_moves_a_per_user_agent_into_the_service_and_its_queue_arrives_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    endpoint = EndpointProcess(tmp_path / "server")
    endpoint.start()
    device_id, old = _old_agent_with_a_queue(endpoint, tmp_path / "asha")
    keyring_user = tmp_path / "ben"
    (keyring_user.joinpath(*PER_USER_DIR)).mkdir(parents=True)
    (keyring_user.joinpath(*PER_USER_DIR) / "agent.json").write_text("{}", encoding="utf-8")  # keys in a keyring
    service_home, root, runner = tmp_path / "service", tmp_path / "root", OkRunner()
    users = [UserHome("ben", str(keyring_user)), UserHome("asha", str(tmp_path / "asha"))]

    assert (
        install_machine(
            server=None,
            token=None,
            ca=None,
            state_dir=service_home,
            users=lambda: users,
            runner=runner,
            root=root,
            exe_argv=EXE,
        )
        == 0
    )

    config = load_config(service_home / "agent.json")
    assert config is not None
    assert config.device_id == device_id  # the same identity, no re-enrolment
    assert not old.exists(), "the per-user state must be retired so nothing sends from it again"
    assert (keyring_user.joinpath(*PER_USER_DIR) / "agent.json").exists()  # not movable, left alone
    assert (root / "etc/systemd/system/deskwarden.service").is_file()
    endpoint.start()
    api = endpoint.api_token()
    service = AgentRuntime(service_home, collectors={}, machine_secrets=True, mode="protected")
    service.start()
    try:
        wait_for(
            lambda: len(endpoint.events(api, kind="violation.justified")) >= QUEUED,
            timeout=60,
            what="the moved queue at the endpoint",
        )
    finally:
        service.stop(reason="test")
        stored = endpoint.events(api, device_id=device_id)
        endpoint.stop()
    assert all(count == 1 for count in Counter(e["seq"] for e in stored).values())
    numbers = Counter(e["data"]["n"] for e in stored if e["kind"] == "violation.justified")
    assert sorted(numbers) == list(range(QUEUED))
    assert set(numbers.values()) == {1}
    assert not [e for e in stored if e["kind"] == "agent.tamper" and e["data"].get("reason") == "unclean_stop"]


def test_machine_uninstall_needs_an_uninstall_token_and_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = EndpointProcess(tmp_path / "server")
    endpoint.start()
    service_home, root, runner = tmp_path / "service", tmp_path / "root", OkRunner()
    try:
        token = endpoint.enroll_token()
        assert (
            install_machine(
                server=endpoint.url,
                token=token,
                ca=None,
                state_dir=service_home,
                users=list,
                runner=runner,
                root=root,
                exe_argv=EXE,
            )
            == 0
        )
        config = load_config(service_home / "agent.json")
        assert config is not None
        unit = root / "etc/systemd/system/deskwarden.service"
        assert unit.is_file()

        assert uninstall_machine(unlock_token=None, state_dir=service_home, runner=runner, root=root) == EXIT_REFUSED
        quit_only = issue_unlock_token(endpoint.settings, config.device_id, scope="quit", minutes=5)
        assert uninstall_machine(unlock_token=quit_only, state_dir=service_home, runner=runner, root=root) == 3
        assert unit.is_file()
        good = issue_unlock_token(endpoint.settings, config.device_id, scope="uninstall")
        assert uninstall_machine(unlock_token=good, state_dir=service_home, runner=runner, root=root) == 0
        assert not unit.exists()
        assert "uninstall refused" in capsys.readouterr().err
        api = endpoint.api_token()
        kinds = Counter(e["kind"] for e in endpoint.events(api, device_id=config.device_id))
        assert kinds["agent.unlock_used"] == 1
        assert kinds["agent.stopped"] == 1
    finally:
        endpoint.stop()
