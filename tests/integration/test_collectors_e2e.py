"""All device controls end to end on Linux: real collectors in a real agent runtime, enforcing a signed policy
published on a real endpoint, with the results read back through the endpoint's read API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from agent_app.core.enrol import enrol_here
from agent_app.core.runtime import AgentRuntime
from central.commands import publish_policy
from policy_client.secrets import SecretStore, load_or_create_keys
from tests.support.collectors import all_collectors
from tests.support.endpoint import EndpointProcess
from tests.support.waiting import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="real collectors are exercised on Linux"),
    pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() != 0, reason="loop mounts need root"),
    pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="mkfs.ext4 not installed"),
    pytest.mark.skipif(shutil.which("zip") is None, reason="zip not installed (scripts/setup-env.sh installs it)"),
]

DESK_UID = 61_237
AADHAAR_CSV = "name,aadhaar\nA. Kumar,2341 2341 2346\nB. Rao,4991 1866 5246\n"


@pytest.fixture
def loop_image(tmp_path: Path) -> Path:
    image = tmp_path / "stick.img"
    with image.open("wb") as handle:
        handle.truncate(8 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-L", "STICK", str(image)], check=True)
    return image


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return any(line.split(" ")[4] == str(path) for line in handle)


def test_usb_downloads_and_capture_are_enforced_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loop_image: Path
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    home, media, downloads = tmp_path / "agent", tmp_path / "media", tmp_path / "Downloads"
    for folder in (home, media, downloads):
        folder.mkdir()
    endpoint = EndpointProcess(tmp_path / "server")
    endpoint.start()
    mount_point = media / f"stick-{uuid.uuid4().hex[:6]}"
    # The service spares system accounts' processes, so the capture tool runs as an unprivileged uid (no account
    # needed), from a directory that uid can reach (tmp_path's parents are root-only).
    tools = Path(tempfile.mkdtemp(prefix="dw-tools-"))
    tools.chmod(0o755)
    tool = tools / "flameshot"
    shutil.copy("/bin/sleep", tool)
    tool.chmod(0o755)
    runtime: AgentRuntime | None = None
    process: subprocess.Popen[bytes] | None = None
    try:
        policy = {
            "version": 5,
            "controls": {
                "usb": {"mode": "block", "media_roots": [str(media)]},
                "downloads": {
                    "mode": "quarantine",
                    "paths": [str(downloads)],
                    "quarantine_on": "sensitive",
                    "encrypted_archives": "quarantine",
                },
                "screen_capture": {"mode": "block"},
                "clipboard": {"mode": "off"},
            },
        }
        version = publish_policy(endpoint.settings, json.dumps(policy).encode())
        device_id = enrol_here(endpoint.url, endpoint.enroll_token(), home=home)
        api = endpoint.api_token()
        keys = load_or_create_keys(SecretStore(home))
        runtime = AgentRuntime(home, collectors=all_collectors(home, keys))
        runtime.start()
        # The headless main loop's job: run what the uploader thread posts (policy reconfiguration).
        main = runtime

        def policy_applied() -> bool:
            main.process_main_calls()
            return main.policy.version == version and main.status().collectors.get("usb") == "running"

        wait_for(policy_applied, timeout=30, what="the published policy in force")

        mount_point.mkdir()
        subprocess.run(["mount", "-o", "loop", str(loop_image), str(mount_point)], check=True)
        (downloads / "customers.csv.crdownload").write_text(AADHAAR_CSV)
        (downloads / "customers.csv.crdownload").rename(downloads / "customers.csv")
        # A password-protected archive (ZipCrypto, as `zip -P` writes it): its content cannot be checked.
        packing = tmp_path / "packing"
        packing.mkdir()
        (packing / "customers.csv").write_text(AADHAAR_CSV)
        subprocess.run(["zip", "-q", "-P", "s3cret", "locked.zip", "customers.csv"], cwd=packing, check=True)
        (packing / "locked.zip").rename(downloads / "locked.zip")
        process = subprocess.Popen([str(tool), "300"], user=DESK_UID, group=DESK_UID, extra_groups=[])

        def kinds() -> set[str]:
            main.process_main_calls()
            return {event["kind"] for event in endpoint.events(api, device_id=device_id)}

        wanted = {"usb.blocked", "download.quarantined", "capture.tool_terminated"}
        wait_for(lambda: wanted <= kinds(), timeout=30, what=f"{wanted} at the endpoint (have {kinds()})")

        def quarantined() -> dict[str, Any]:
            main.process_main_calls()
            events = endpoint.events(api, device_id=device_id)
            return {str(e["data"]["name"]): e for e in events if e["kind"] == "download.quarantined"}

        wait_for(lambda: len(quarantined()) == 2, timeout=30, what=f"two quarantined downloads (have {quarantined()})")
        locked = quarantined()["locked.zip"]
        assert locked["rule"] == {"id": "downloads.encrypted_quarantine", "policy_version": version}
        assert (locked["data"]["encrypted"], locked["data"]["encrypted_members"]) == (True, 1)
        assert locked["data"]["findings"] == []
        assert not (downloads / "locked.zip").exists()

        stored = {event["kind"]: event for event in endpoint.events(api, device_id=device_id)}
        stored["download.quarantined"] = quarantined()["customers.csv"]
        usb = stored["usb.blocked"]
        assert usb["action"] == "blocked"
        assert usb["data"]["filesystem"] == "ext4"
        assert usb["rule"] == {"id": "usb.block", "policy_version": version}
        assert not _mounted(mount_point), "the blocked volume is still mounted"

        download = stored["download.quarantined"]
        assert download["data"]["name"] == "customers.csv"
        assert [f["type"] for f in download["data"]["findings"]] == ["aadhaar"]
        assert not (downloads / "customers.csv").exists()
        raw = json.dumps(list(stored.values()))
        assert "2341 2341 2346" not in raw, "a raw Aadhaar number left the device"
        assert "234123412346" not in raw, "a raw Aadhaar number left the device"

        assert stored["capture.tool_terminated"]["data"]["name"] == "flameshot"
        assert stored["capture.tool_terminated"]["data"]["pid"] == process.pid, stored["capture.tool_terminated"]
        process.wait(10)  # raises TimeoutExpired if the tool was left running
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)
        if runtime is not None:
            runtime.stop(reason="test")
        if _mounted(mount_point):
            subprocess.run(["umount", "-l", str(mount_point)], check=False)
        endpoint.stop()
        shutil.rmtree(tools, ignore_errors=True)
