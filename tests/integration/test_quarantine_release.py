"""The quarantine release path end to end on Linux, as root like the service: a real endpoint process, the real
downloads collector on real inotify quarantining a desk user's file, an admin releasing (and deleting) files in the
console, the agent fetching the signed decision, giving the file back with its owner, and the console showing the
outcome. A command the endpoint did not sign, or one replayed, does nothing."""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent_app.core import paths
from agent_app.core.enrol import enrol_here
from agent_app.core.quarantine_commands import QuarantineCommands
from agent_app.core.runtime import AgentRuntime
from central.commands import create_user, publish_policy
from policy_client.agent_config import load_config
from policy_client.device_commands import QuarantineCommand, SignedCommand, sign_command
from policy_client.schema import EventDraft, utc_now
from policy_client.secrets import SecretStore, load_or_create_keys
from policy_client.transport import Transport
from tests.support.collectors import all_collectors
from tests.support.endpoint import EndpointProcess
from tests.support.waiting import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="real inotify is exercised on Linux"),
    pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() != 0, reason="restoring ownership needs root"),
]

DESK_UID = 61_241
PASSWORD = "correct horse battery 42"
CARDS_CSV = "name,card\nA. Kumar,4111 1111 1111 1111\nB. Rao,5500 0000 0000 0004\n"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _console(url: str, name: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=20, follow_redirects=False)
    form = client.get("/console/login")
    token = CSRF.search(form.text)
    assert token is not None
    answer = client.post("/console/login", data={"csrf_token": token.group(1), "username": name, "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    return client


def _decide(client: httpx.Client, device_id: str, quarantine_id: str, decision: str) -> httpx.Response:
    page = client.get(f"/console/devices/{device_id}")
    token = CSRF.search(page.text)
    assert token is not None
    return client.post(
        f"/console/devices/{device_id}/quarantine/{quarantine_id}/{decision}", data={"csrf_token": token.group(1)}
    )


def _drop(folder: Path, name: str) -> None:
    """A browser-like download: written under a partial name, renamed when complete, owned by the desk user."""
    partial = folder / f"{name}.crdownload"
    partial.write_text(CARDS_CSV)
    os.chown(partial, DESK_UID, DESK_UID)
    partial.chmod(0o640)
    partial.rename(folder / name)


def test_an_admin_releases_and_deletes_quarantined_downloads_and_the_console_shows_the_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    home, downloads = tmp_path / "agent", tmp_path / "Downloads"
    home.mkdir()
    downloads.mkdir()
    os.chown(downloads, DESK_UID, DESK_UID)
    endpoint = EndpointProcess(tmp_path / "server")
    endpoint.start()
    runtime: AgentRuntime | None = None
    clients: list[httpx.Client] = []
    try:
        create_user(endpoint.settings, "ada", role="admin", teams=[], password=PASSWORD)
        create_user(endpoint.settings, "sam", role="supervisor", teams=["floor-1"], password=PASSWORD)
        create_user(endpoint.settings, "sue", role="supervisor", teams=["floor-9"], password=PASSWORD)
        policy = {
            "version": 3,
            "controls": {
                "downloads": {"mode": "quarantine", "paths": [str(downloads)], "quarantine_on": "sensitive"},
                "usb": {"mode": "off"},
                "screen_capture": {"mode": "off"},
                "clipboard": {"mode": "off"},
            },
        }
        version = publish_policy(endpoint.settings, json.dumps(policy).encode())
        device_id = enrol_here(endpoint.url, endpoint.enroll_token("floor-1"), home=home)
        api = endpoint.api_token()
        keys = load_or_create_keys(SecretStore(home))
        collectors = {"downloads": all_collectors(home, keys)["downloads"]}
        runtime = AgentRuntime(home, collectors=collectors, command_poll_seconds=0.2)
        runtime.start()
        main = runtime

        def stored(kind: str) -> list[dict[str, Any]]:
            main.process_main_calls(timeout=0.01)
            return [e for e in endpoint.events(api, device_id=device_id) if e["kind"] == kind]

        wait_for(lambda: stored("policy.updated") != [] and main.policy.version == version, timeout=30, what="policy")
        _drop(downloads, "cards.csv")
        _drop(downloads, "more cards.csv")
        wait_for(lambda: len(stored("download.quarantined")) == 2, timeout=30, what="two quarantined downloads")
        by_name = {e["data"]["name"]: e["data"]["quarantine_id"] for e in stored("download.quarantined")}
        assert not (downloads / "cards.csv").exists()

        ada = _console(endpoint.url, "ada")
        clients.append(ada)
        listed = ada.get(f"/console/devices/{device_id}").text
        assert by_name["cards.csv"] in listed
        assert "4111 1111 1111 1111" not in listed

        # Only admins decide, and only about a file that device quarantined; a supervisor elsewhere sees nothing.
        sam = _console(endpoint.url, "sam")
        clients.append(sam)
        assert _decide(sam, device_id, by_name["cards.csv"], "release").status_code == 403
        sue = _console(endpoint.url, "sue")
        clients.append(sue)
        assert sue.get(f"/console/devices/{device_id}").status_code == 404
        bogus = _decide(ada, device_id, "20300101T000000Z-000000000000", "release")
        assert bogus.status_code == 404

        assert _decide(ada, device_id, by_name["cards.csv"], "release").status_code == 303
        assert _decide(ada, device_id, by_name["more cards.csv"], "delete").status_code == 303
        again = _decide(ada, device_id, by_name["cards.csv"], "delete")
        assert "err=" in again.headers["location"], "a second decision about the same file must be refused"

        wait_for(lambda: stored("download.released") and stored("download.deleted"), timeout=30, what="outcomes")
        [released] = stored("download.released")
        assert released["action"] == "allowed"
        assert released["data"]["quarantine_id"] == by_name["cards.csv"]
        restored = downloads / "cards.csv"
        assert restored.read_text() == CARDS_CSV
        assert (restored.stat().st_uid, restored.stat().st_gid) == (DESK_UID, DESK_UID)
        assert restored.stat().st_mode & 0o777 == 0o640
        assert stored("download.deleted")[0]["action"] == "allowed"
        quarantine_dir = paths.quarantine_dir(home)
        assert not (quarantine_dir / by_name["more cards.csv"]).exists()
        assert not (downloads / "more cards.csv").exists()

        # The released file is not taken for a new download: a later one is quarantined, the released one stays.
        _drop(downloads, "later.csv")
        wait_for(lambda: len(stored("download.quarantined")) == 3, timeout=30, what="the later download")
        assert restored.exists()
        assert len(stored("download.quarantined")) == 3

        def outcome_shown() -> bool:
            page = ada.get(f"/console/devices/{device_id}").text
            return page.count('data-status="done"') == 2

        wait_for(outcome_shown, timeout=30, what="both outcomes on the device page")
        audit = ada.get("/console/audit").text
        for action in ("quarantine.release", "quarantine.delete", "quarantine.release.done", "quarantine.delete.done"):
            assert f"<td>{action}</td>" in audit, action
    finally:
        for client in clients:
            client.close()
        if runtime is not None:
            runtime.stop(reason="test")
        endpoint.stop()


def _serve(endpoint: EndpointProcess, signed: SignedCommand, command: QuarantineCommand) -> None:
    """Put a command in the endpoint's register as it would be served, whoever signed it (a tampered database,
    or whatever a man in the middle could send)."""
    from central.runtime import open_store
    from central.store.console_tables import quarantine_commands

    db = open_store(endpoint.settings)
    try:
        with db.write() as conn:
            conn.execute(
                quarantine_commands.insert().values(
                    command_id=command.command_id,
                    device_id=command.device_id,
                    team="floor-1",
                    quarantine_id=command.quarantine_id,
                    action=command.action,
                    payload=signed.payload,
                    signature=signed.signature,
                    issued_by=command.issued_by,
                    issued_at=command.issued_at,
                    expires_at=command.expires_at + timedelta(days=1),  # served even when its payload has expired
                    status="pending",
                )
            )
    finally:
        db.dispose()


def test_a_forged_or_replayed_command_releases_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    endpoint = EndpointProcess(tmp_path / "server")
    endpoint.start()
    try:
        home = tmp_path / "agent"
        home.mkdir()
        device_id = enrol_here(endpoint.url, endpoint.enroll_token(), home=home)
        config = load_config(paths.config_path(home))
        assert config is not None
        from central.signing import load_or_create_signer

        real_key = load_or_create_signer(endpoint.settings.signing_key_path).private_key
        quarantine_dir = tmp_path / "quarantine"
        quarantine_dir.mkdir(mode=0o700)
        qid = "20300101T090000Z-0123456789ab"
        original = tmp_path / "Downloads" / "held.csv"

        def hold(text: str) -> None:
            (quarantine_dir / qid).write_text(text)
            sidecar = {"original_path": str(original), "original_mode": 0o600}
            (quarantine_dir / f"{qid}.json").write_text(json.dumps(sidecar))

        hold("held")

        def command(action: str, *, device: str = device_id, minutes: int = 60) -> QuarantineCommand:
            now = utc_now()
            return QuarantineCommand(
                command_id=os.urandom(8).hex(),
                device_id=device,
                action=action,  # type: ignore[arg-type]
                quarantine_id=qid,
                issued_by="mallory",
                issued_at=now,
                expires_at=now + timedelta(minutes=minutes),
            )

        recorded: list[EventDraft] = []
        secrets = SecretStore(home)
        applier = QuarantineCommands(
            transport=Transport(endpoint.url, credential=secrets.get("device_credential")),
            device_id=device_id,
            public_key=config.public_key_bytes(),
            quarantine_dir=quarantine_dir,
            state_dir=home,
            record=recorded.append,
            uploaded=lambda: None,
            interval=lambda: 60.0,
            clock=utc_now,
        )

        forged = command("release")
        _serve(endpoint, sign_command(Ed25519PrivateKey.generate(), forged), forged)
        expired = command("release", minutes=-1)
        _serve(endpoint, sign_command(real_key, expired), expired)
        assert applier.run_once() == 0
        assert (quarantine_dir / qid).exists()
        assert not original.exists()
        reasons = [(d.kind.value, d.data.get("reason"), d.data.get("detail")) for d in recorded]
        assert reasons == [("agent.tamper", "command_refused", "bad_signature")]

        genuine = command("release")
        _serve(endpoint, sign_command(real_key, genuine), genuine)
        assert applier.run_once() == 1
        assert original.read_text() == "held"
        # The endpoint serves it until the outcome event arrives: asked again, the service does nothing twice.
        original.unlink()
        hold("held again")
        assert applier.run_once() == 0, "a replayed command must not be carried out twice"
        assert not original.exists()
        applier.stop()
    finally:
        endpoint.stop()
