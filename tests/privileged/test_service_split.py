"""The person at the desk cannot switch DeskWarden off: each attack a standard user could try against the old
single-process agent, tried against the root service and refused by the real OS, plus the controls end to end
through the split (service as root, helper as a real `useradd` user under Xvfb)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.privileged.split import CARD, SplitDesk, as_user_python, make_split_desk
from tests.support.desk_user import DeskUser, run_as, spawn_as
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.privileged, pytest.mark.integration]


@pytest.fixture
def desk(tmp_path: Path, user_python: Path, desk_display: str) -> Iterator[SplitDesk]:
    yield from make_split_desk(tmp_path, user_python, desk_display)


def _client_code(socket: Path, body: str) -> str:
    """A hostile helper of the user's own: raw protocol frames over the service's socket."""
    return (
        "import json, socket, struct\n"
        f"s = socket.socket(socket.AF_UNIX); s.connect({str(socket)!r})\n"
        "def send(m):\n"
        "    b = json.dumps(m).encode(); s.sendall(struct.pack('>I', len(b)) + b)\n"
        "def recv():\n"
        "    while True:\n"
        "        n = struct.unpack('>I', s.recv(4, socket.MSG_WAITALL))[0]\n"
        "        m = json.loads(s.recv(n, socket.MSG_WAITALL))\n"
        "        if m.get('type') == 'reply': return m\n"
        "send({'v': 1, 'type': 'hello', 'id': 1, 'role': 'query'}); hello = recv()\n" + body
    )


# --- the service's state and process -------------------------------------------------------------------------


def test_a_desk_user_cannot_read_write_or_delete_the_service_state(desk: SplitDesk, desk_user: DeskUser) -> None:
    state = desk.state
    assert (state / "outbox.db").exists()
    assert (state / "agent.json").exists()
    for argv in (
        ["ls", str(state)],
        ["cat", str(state / "secrets.json")],
        ["cat", str(state / "agent.json")],
        ["rm", "-f", str(state / "outbox.db")],
        ["cp", "/etc/hostname", str(state / "agent.json")],
        ["mkdir", str(state / "policy" / "planted")],
    ):
        done = run_as(desk_user, argv)
        assert done.returncode != 0, argv
        assert "Permission denied" in done.stderr, (argv, done.stderr)
    assert (state / "outbox.db").exists()
    assert (state / "agent.json").read_text(encoding="utf-8").startswith("{")


def test_a_desk_user_cannot_signal_trace_or_replace_the_service(desk: SplitDesk, desk_user: DeskUser) -> None:
    assert desk.service is not None
    pid = desk.service.pid
    for sig in ("TERM", "KILL", "STOP"):
        done = run_as(desk_user, ["kill", f"-{sig}", str(pid)])
        assert done.returncode != 0
        assert "not permitted" in done.stderr, done.stderr
    trace = as_user_python(
        desk,
        desk_user,
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"r = libc.ptrace(16, {pid}, None, None)\nprint(r, ctypes.get_errno())\n",
    )
    result, errno = trace.stdout.split()
    assert result == "-1"
    assert int(errno) == 1
    assert run_as(desk_user, ["cat", f"/proc/{pid}/environ"]).returncode != 0
    code = desk.python.parent.parent / "lib"
    assert run_as(desk_user, ["touch", str(desk.python)]).returncode != 0
    assert run_as(desk_user, ["sh", "-c", f"echo x > {code}/planted.py"]).returncode != 0
    assert desk.service.poll() is None, "the service must still run"


def test_uninstall_as_a_desk_user_is_refused(desk: SplitDesk, desk_user: DeskUser) -> None:
    done = run_as(desk_user, [str(desk.python), "-m", "agent_app", "uninstall", "--state-dir", str(desk.state)])
    assert done.returncode != 0
    assert desk.service is not None
    assert desk.service.poll() is None


# --- what a helper may say --------------------------------------------------------------------------------------


def test_a_helper_cannot_claim_another_user_or_record_service_events(desk: SplitDesk, desk_user: DeskUser) -> None:
    marker = uuid.uuid4().hex
    code = _client_code(
        desk.socket,
        "send({'v': 1, 'type': 'record', 'id': 2, 'events': [{'kind': 'violation.justified', 'user': 'root',"
        f" 'data': {{'marker': {marker!r}}}}}]}})\nprint(json.dumps(recv()))\n"
        "send({'v': 1, 'type': 'record', 'id': 3, 'events': [{'kind': 'agent.stopped', 'data': {}}]})\n"
        "print(json.dumps(recv()))\n",
    )
    done = as_user_python(desk, desk_user, code)
    assert done.returncode == 0, done.stderr
    first, second = (line for line in done.stdout.splitlines() if line.startswith("{"))
    assert '"ok": true' in first
    assert '"forbidden_kind"' in second
    wait_for(
        lambda: any(e["data"].get("marker") == marker for e in desk.events(kind="violation.justified")),
        timeout=30,
        what="the recorded justification at the endpoint",
    )
    (stored,) = [e for e in desk.events(kind="violation.justified") if e["data"].get("marker") == marker]
    assert stored["user"] == desk_user.name  # the OS said who, not the message
    assert not [e for e in desk.events(kind="agent.stopped") if e["user"] == desk_user.name]


def test_a_forged_unlock_token_is_refused_and_a_real_one_is_reported(desk: SplitDesk, desk_user: DeskUser) -> None:
    forge = _client_code(
        desk.socket,
        "from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey\n"
        "from datetime import datetime, timedelta, timezone\n"
        "from policy_client.unlock_token import issue_unlock_token\n"
        f"text, _ = issue_unlock_token(Ed25519PrivateKey.generate(), device_id={desk.device_id!r}, scope='uninstall',"
        " minutes=600, expires_at=datetime.now(timezone.utc) + timedelta(hours=1))\n"
        "send({'v': 1, 'type': 'quit', 'id': 2, 'token': text}); print(json.dumps(recv()))\n",
    )
    done = as_user_python(desk, desk_user, forge)
    assert done.returncode == 0, done.stderr
    assert '"allowed": false' in done.stdout
    from central.commands import issue_unlock_token

    real = issue_unlock_token(desk.endpoint.settings, desk.device_id, scope="quit", minutes=5)
    use = _client_code(
        desk.socket, f"send({{'v': 1, 'type': 'quit', 'id': 2, 'token': {real!r}}}); print(json.dumps(recv()))\n"
    )
    assert '"allowed": true' in as_user_python(desk, desk_user, use).stdout
    assert '"allowed": false' in as_user_python(desk, desk_user, use).stdout  # a token works once
    wait_for(lambda: desk.events(kind="agent.unlock_used"), timeout=30, what="the token's use at the endpoint")
    (used,) = desk.events(kind="agent.unlock_used")
    assert used["user"] == desk_user.name
    assert used["data"]["scope"] == "quit"
    assert not [a for a in desk.alerts() if a["kind"] == "tamper.unlock_forged"]


# --- the helper ------------------------------------------------------------------------------------------------


def test_stopping_the_helper_alerts_within_10_s_and_the_service_starts_it_again(
    desk: SplitDesk, desk_user: DeskUser
) -> None:
    helper = desk.start_helper(desk_user)
    # The console names the person at the desk from the OS (the helper's peer), never root, the service's login.
    wait_for(lambda: desk.device()["user"] == desk_user.name, timeout=30, what="the desk user on the devices list")
    assert desk.device()["mode"] == "protected"
    done = run_as(desk_user, ["kill", "-KILL", str(helper.pid)])
    assert done.returncode == 0, done.stderr
    wait_for(
        lambda: any(a["kind"] == "tamper.helper_stopped" for a in desk.alerts()),
        timeout=10,
        what="a tamper.helper_stopped alert at the endpoint",
    )
    (event,) = [e for e in desk.events(kind="agent.tamper") if e["data"].get("reason") == "helper_stopped"]
    assert event["user"] == desk_user.name
    wait_for(lambda: desk_user.name in desk.helper_users(), timeout=30, what="the restarted helper")
    restarted = subprocess.run(["pgrep", "-u", str(desk_user.uid), "-f", "agent_app"], capture_output=True, text=True)
    assert restarted.stdout.split()
    assert str(helper.pid) not in restarted.stdout.split()


def test_a_card_number_copied_in_the_session_is_masked_and_recorded_with_the_os_user(
    desk: SplitDesk, desk_user: DeskUser
) -> None:
    if shutil.which("xclip") is None:
        pytest.skip("xclip is not installed")
    desk.start_helper(desk_user)
    copy = spawn_as(desk_user, ["xclip", "-selection", "clipboard"], display=desk.display, stdin=subprocess.PIPE)
    assert copy.stdin is not None
    copy.stdin.write(f"card {CARD} thanks")
    copy.stdin.close()

    def pasted() -> str:
        return run_as(desk_user, ["xclip", "-selection", "clipboard", "-o"], display=desk.display, timeout=5).stdout

    wait_for(lambda: "1111" in pasted() and CARD not in pasted(), timeout=20, what="the clipboard to be masked")
    wait_for(lambda: desk.events(kind="clipboard.sensitive"), timeout=30, what="clipboard.sensitive at the endpoint")
    (event,) = desk.events(kind="clipboard.sensitive")
    assert event["user"] == desk_user.name
    assert event["action"] == "masked"
    assert CARD not in str(event)
    assert CARD.replace(" ", "") not in str(event)


# --- service-side controls, per user ---------------------------------------------------------------------------


def test_downloads_of_two_users_are_quarantined_out_of_reach_and_attributed(
    desk: SplitDesk, desk_users: tuple[DeskUser, DeskUser]
) -> None:
    for user in desk_users:
        downloads = user.home / desk.downloads
        assert run_as(user, ["mkdir", "-p", str(downloads)]).returncode == 0
    # The service re-reads the desk users periodically; wait until it watches both new homes.
    wait_for(
        lambda: desk.status().get("collectors", {}).get("downloads") == "running", timeout=60, what="downloads watched"
    )
    # Until the service has re-read the desk users, a file may land unwatched: keep offering new files (unique
    # names) until each user's first one is quarantined, then every offered file must be gone.
    offered: dict[str, set[str]] = {user.name: set() for user in desk_users}
    for user in desk_users:
        wait_for(
            lambda user=user: _offer_a_download(desk, user, offered[user.name]),
            timeout=90,
            what=f"{user.name}'s download to be quarantined",
        )
    events = desk.events(kind="download.quarantined")
    assert {e["user"] for e in events} == {u.name for u in desk_users}
    for event in events:
        assert event["data"]["name"] in offered[event["user"]]  # attributed to the owner of the folder it was in
    for user in desk_users:
        wait_for(
            lambda user=user: not list((user.home / desk.downloads).glob("customers-*.csv")),
            timeout=60,
            what=f"every offered file of {user.name} to be quarantined",
        )
        assert run_as(user, ["ls", str(desk.state / "quarantine")]).returncode != 0


def _offer_a_download(desk: SplitDesk, user: DeskUser, offered: set[str]) -> bool:
    if [e for e in desk.events(kind="download.quarantined") if e["user"] == user.name]:
        return True
    sheet = user.home / desk.downloads / f"customers-{uuid.uuid4().hex[:8]}.csv"
    offered.add(sheet.name)
    run_as(user, ["sh", "-c", f"printf 'name,card\\nA,{CARD}\\nB,5500 0000 0000 0004\\n' > {sheet}.part"])
    run_as(user, ["mv", f"{sheet}.part", str(sheet)])
    return False


def test_a_capture_tool_started_by_the_user_is_terminated_by_the_service(desk: SplitDesk, desk_user: DeskUser) -> None:
    tool = desk_user.home / desk.capture_tool
    shutil.copy("/bin/sleep", tool)
    os.chown(tool, desk_user.uid, desk_user.gid)
    proc = spawn_as(desk_user, [str(tool), "300"])
    wait_for(lambda: proc.poll() is not None, timeout=30, what="the capture tool to be terminated")
    assert proc.returncode in (-signal.SIGTERM, -signal.SIGKILL)
    wait_for(lambda: desk.events(kind="capture.tool_terminated"), timeout=30, what="capture.tool_terminated")
    (event,) = desk.events(kind="capture.tool_terminated")
    assert event["user"] == desk_user.name


def test_a_usb_stick_under_the_users_media_folder_is_unmounted(
    desk: SplitDesk, desk_user: DeskUser, tmp_path: Path
) -> None:
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 not installed")
    image = tmp_path / "stick.img"
    with image.open("wb") as handle:
        handle.truncate(8 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-L", "STICK", str(image)], check=True)
    mount_point = desk.media_root / desk_user.name / f"STICK-{uuid.uuid4().hex[:6]}"
    mount_point.mkdir(parents=True)
    try:
        subprocess.run(["mount", "-o", "loop", str(image), str(mount_point)], check=True)
        wait_for(lambda: not os.path.ismount(mount_point), timeout=30, what="the stick to be unmounted")
        wait_for(lambda: desk.events(kind="usb.blocked"), timeout=30, what="usb.blocked at the endpoint")
        (event,) = desk.events(kind="usb.blocked")
        assert event["user"] == desk_user.name
    finally:
        if os.path.ismount(mount_point):
            subprocess.run(["umount", "-l", str(mount_point)], check=False)
        shutil.rmtree(mount_point.parent, ignore_errors=True)


def test_two_desk_users_at_once_each_get_their_own_attribution(
    desk: SplitDesk, desk_users: tuple[DeskUser, DeskUser]
) -> None:
    markers = {user.name: uuid.uuid4().hex for user in desk_users}
    clients = [
        spawn_as(
            user,
            [
                str(desk.python),
                "-c",
                _client_code(
                    desk.socket,
                    "send({'v': 1, 'type': 'record', 'id': 2, 'events': [{'kind': 'policy.acknowledged', 'user': "
                    f"{desk_users[1 - index].name!r}, 'data': {{'marker': {markers[user.name]!r}}}}}]}}); recv()\n",
                ),
            ],
        )
        for index, user in enumerate(desk_users)
    ]
    for client in clients:
        assert client.wait(30) == 0
    wait_for(
        lambda: {e["data"].get("marker") for e in desk.events(kind="policy.acknowledged")} >= set(markers.values()),
        timeout=30,
        what="both users' acknowledgements at the endpoint",
    )
    for event in desk.events(kind="policy.acknowledged"):
        marker = event["data"].get("marker")
        if marker in markers.values():
            assert markers[event["user"]] == marker  # each claimed the other; the OS said who
