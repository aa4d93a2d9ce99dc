"""What a copy of the data directory's database gives a reader: no channel secret (sealed with a key kept in a
0600 file beside it), no device, API, personal or enrolment token (SHA-256 hashes only). The directory is 0700
and its files 0600 whatever the umask."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from central import commands
from central.runtime import open_store
from central.settings import ServerSettings
from central.simulate import SimulatedAgent
from central.store.console_config import ConsoleConfig, load_config, save_config
from central.store.console_tables import console_settings
from central.store.engine import open_database
from central.store.sealing import SealedSecretError
from policy_client.schema import utc_now
from tests.support.endpoint import EndpointProcess

SMTP_PASSWORD = "smtp-Pa55word-7d1e"
WEBHOOK_SECRET = "whsec-3f9a0c1b2d"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _everything_in(db_file: Path) -> bytes:
    """Every byte a reader of the database files gets (main file, WAL and shared memory)."""
    return b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*") if p.is_file())


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what a default server account has: new files world-readable
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes")
@pytest.mark.usefixtures("loose_umask")
def test_the_servers_data_dir_is_0700_and_its_files_0600(tmp_path: Path) -> None:
    endpoint = EndpointProcess(tmp_path / "server")  # makes the directory (0755 under this umask) for its log
    endpoint.start()
    try:
        data = endpoint.settings.data_dir
        assert _mode(data) == 0o700
        for name in ("central.db", "central.db-wal", "central.db-shm", "policy_signing.key", "secrets.key"):
            assert _mode(data / name) == 0o600, name
    finally:
        endpoint.stop()


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes")
@pytest.mark.usefixtures("loose_umask")
def test_an_existing_world_readable_data_dir_is_tightened_at_start(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "server")
    settings.data_dir.mkdir(mode=0o755)
    open_database(settings.database_url).dispose()  # an older version's files
    for path in [settings.data_dir, *settings.data_dir.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)

    open_store(settings).dispose()

    assert _mode(settings.data_dir) == 0o700
    assert _mode(settings.data_dir / "central.db") == 0o600


def test_channel_secrets_are_not_in_the_database_and_the_console_still_uses_them(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "server")
    db = open_store(settings)
    try:
        save_config(db, ConsoleConfig(smtp_password=SMTP_PASSWORD, webhook_secret=WEBHOOK_SECRET), now=utc_now())
        loaded = load_config(db)
    finally:
        db.dispose()

    raw = _everything_in(settings.data_dir / "central.db")
    assert SMTP_PASSWORD.encode() not in raw
    assert WEBHOOK_SECRET.encode() not in raw
    assert (loaded.smtp_password, loaded.webhook_secret) == (SMTP_PASSWORD, WEBHOOK_SECRET)


def test_the_database_without_the_key_file_does_not_open_the_secrets(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "server")
    db = open_store(settings)
    save_config(db, ConsoleConfig(smtp_password=SMTP_PASSWORD), now=utc_now())
    db.dispose()
    stolen = tmp_path / "stolen"
    stolen.mkdir()
    for part in settings.data_dir.glob("central.db*"):
        (stolen / part.name).write_bytes(part.read_bytes())

    copy = open_store(replace(settings, data_dir=stolen))  # a new, different key is made for the copy
    try:
        with pytest.raises(SealedSecretError):
            load_config(copy)
    finally:
        copy.dispose()
    with sqlite3.connect(stolen / "central.db") as conn:
        values = dict(conn.execute("SELECT key, value FROM console_settings").fetchall())
    assert SMTP_PASSWORD not in values["smtp_password"]


def test_secrets_an_older_version_stored_in_clear_are_sealed_at_the_next_start(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "server")
    open_store(settings).dispose()
    legacy = open_database(settings.database_url)  # no secrets key: writes the values as they are
    save_config(legacy, ConsoleConfig(webhook_secret=WEBHOOK_SECRET), now=utc_now())
    legacy.dispose()
    assert WEBHOOK_SECRET.encode() in _everything_in(settings.data_dir / "central.db")

    db = open_store(settings)
    try:
        assert load_config(db).webhook_secret == WEBHOOK_SECRET
        with db.read() as conn:
            stored = conn.execute(console_settings.select().where(console_settings.c.key == "webhook_secret")).one()
    finally:
        db.dispose()
    assert str(stored.value).startswith("sealed:v1:")
    assert WEBHOOK_SECRET.encode() not in _everything_in(settings.data_dir / "central.db")


def test_tokens_and_device_credentials_are_stored_only_as_hashes(tmp_path: Path) -> None:
    endpoint = EndpointProcess(tmp_path / "server")
    endpoint.start()
    try:
        enroll = commands.issue_enroll_token(endpoint.settings, "team-a", timedelta(hours=1))
        api = commands.create_api_token(endpoint.settings, "reader", "auditor")
        agent = SimulatedAgent()
        answer = httpx.post(
            f"{endpoint.url}/v1/enroll",
            json={"token": enroll, "hostname": "d", "os": "linux", "user": "u", "chain_key": agent.chain_key_b64},
        )
        credential = answer.json()["credential"]
    finally:
        endpoint.stop()

    raw = _everything_in(endpoint.settings.data_dir / "central.db")
    for secret in (enroll, api, credential):
        assert secret.encode() not in raw
