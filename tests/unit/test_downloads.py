"""Downloads collector logic without inotify: event routing, settling on platforms without close
events, inspection rules, enforcement outcomes, the quarantine folder, monitored users, the collector's state
when nothing is watched, and files the desk user controls (links, swapped folders)."""

from __future__ import annotations

import errno
import json
import os
import queue
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from watchdog.events import FileClosedEvent, FileCreatedEvent, FileModifiedEvent, FileMovedEvent
from watchdog.observers.polling import PollingObserver

from collectors.base import Collector, CollectorContext, CollectorState, Decision, Observation, UserHome
from collectors.downloads import DownloadsCollector, FileRef, create, quarantine_file, read_record, restore
from collectors.downloads.collector import WatchedFolder, _Arrival, _Cancel, _FolderHandler, home_relative
from collectors.downloads.files import FileChanged, FolderId
from collectors.downloads.inspect import inspect_download, is_partial_name
from policy_client.schema import Action, Controls, DownloadsControl, PolicyDocument, Severity

KEY = b"k" * 32


def state_of(collector: Collector) -> CollectorState:
    """The collector's state now (a call, so the type checker does not carry an earlier answer forward)."""
    return collector.state


def decision(action: str) -> Decision:
    return Decision(action=action, rule_id="downloads", policy_version=1, severity=Severity.medium)  # type: ignore[arg-type]


def policy(folder: Path, **kw: Any) -> PolicyDocument:
    control = DownloadsControl.model_validate({"paths": [str(folder)], **kw})
    return PolicyDocument(version=1, controls=Controls(downloads=control))


@pytest.mark.parametrize(
    ("name", "partial"),
    [("a.crdownload", True), ("a.PART", True), ("a.tmp", True), ("a.download", True), (".hidden", True),
     ("Unconfirmed 123.crdownload", True), ("a.pdf", False), ("part.pdf", False), ("a.tmp.pdf", False)],
)  # fmt: skip
def test_partial_names(name: str, partial: bool) -> None:
    assert is_partial_name(name) is partial


def test_handler_routes_events(tmp_path: Path) -> None:
    out: queue.Queue[object] = queue.Queue()
    watch = WatchedFolder("~/Downloads", "ann", FolderId.of(tmp_path))
    root = watch.id.path
    h = _FolderHandler(watch, out, use_close_events=True)
    h.dispatch(FileMovedEvent(f"{root}/a.crdownload", f"{root}/a.pdf"))
    h.dispatch(FileClosedEvent(f"{root}/b.txt"))
    h.dispatch(FileCreatedEvent(f"{root}/c.txt"))
    h.dispatch(FileModifiedEvent(f"{root}/c.txt"))
    h.dispatch(FileClosedEvent(f"{root}/sub/d.txt"))  # not a direct child
    h.dispatch(FileMovedEvent(f"{root}/e.txt", "/elsewhere/e.txt"))  # moved out
    items = [out.get_nowait() for _ in range(out.qsize())]
    assert items == [
        _Arrival(f"{root}/a.pdf", watch, settle=False),
        _Arrival(f"{root}/b.txt", watch, settle=False),
        _Arrival(f"{root}/c.txt", watch, settle=True),
        _Cancel(f"{root}/c.txt"),
    ]


def test_handler_without_close_events_settles_on_modify(tmp_path: Path) -> None:
    out: queue.Queue[object] = queue.Queue()
    watch = WatchedFolder("d", "", FolderId.of(tmp_path))
    h = _FolderHandler(watch, out, use_close_events=False)
    h.dispatch(FileModifiedEvent(f"{watch.id.path}/c.txt"))
    assert out.get_nowait() == _Arrival(f"{watch.id.path}/c.txt", watch, settle=True)


class ListSink:
    def __init__(self) -> None:
        self.q: queue.Queue[Observation] = queue.Queue()

    def emit(self, observation: Observation) -> None:
        self.q.put(observation)


def test_polling_observer_without_close_events_reports_once_settled(tmp_path: Path) -> None:
    # The macOS/Windows path: no close events; a file counts once it stops changing.
    folder = tmp_path / "dl"
    folder.mkdir()
    collector = DownloadsCollector(
        quarantine_dir=tmp_path / "q",
        hash_key=KEY,
        observer_factory=lambda: PollingObserver(timeout=0.05),
        use_close_events=False,
        settle_seconds=0.2,
    )
    sink = ListSink()
    collector.start(sink, policy(folder))
    try:
        (folder / "a.bin.part").write_bytes(b"x" * 10)
        (folder / "a.bin.part").rename(folder / "a.bin")
        (folder / "b.txt").write_text("hello")
        names = {sink.q.get(timeout=5).draft.data["name"], sink.q.get(timeout=5).draft.data["name"]}
        assert names == {"a.bin", "b.txt"}
        with pytest.raises(queue.Empty):
            sink.q.get(timeout=0.5)
    finally:
        collector.stop()


def test_inspection_flags_and_severity(tmp_path: Path) -> None:
    control = DownloadsControl(blocked_extensions=["exe", ".tar.gz"], max_size_mb=0.001)
    small = tmp_path / "a.txt"
    small.write_text("hi")
    plain = inspect_download(small, folder="~/D", size=2, sha256="0" * 64, control=control, key=KEY)
    assert plain.severity == Severity.info
    assert plain.data["blocked_extension"] is False
    assert plain.data["oversize"] is False
    assert plain.data["findings"] == []
    big = inspect_download(tmp_path / "x.TAR.GZ", folder="~/D", size=5000, sha256="0" * 64, control=control, key=KEY)
    assert big.severity == Severity.medium
    assert big.data["blocked_extension"] is True
    assert big.data["oversize"] is True
    assert big.data["extension"] == ".gz"


def test_inspection_scans_content_unless_disabled(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"card": "4111 1111 1111 1111"}')
    found = inspect_download(path, folder="d", size=1, sha256="0", control=DownloadsControl(), key=KEY)
    assert found.severity == Severity.high
    assert found.data["findings"][0]["sample"] == "XXXX XXXX XXXX 1111"
    off = inspect_download(path, folder="d", size=1, sha256="0", control=DownloadsControl(scan_content=False), key=KEY)
    assert off.data["findings"] == []


def test_inspection_masks_numbers_in_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "card 4111111111111111.pdf"
    path.write_bytes(b"%PDF")
    out = inspect_download(path, folder="d", size=4, sha256="0", control=DownloadsControl(), key=KEY)
    assert out.data["name"] == "card XXXXXXXXXXXX1111.pdf"


def test_inspection_marks_truncated_scans(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("y" * 1000)
    out = inspect_download(path, folder="d", size=1000, sha256="0", control=DownloadsControl(), key=KEY, max_chars=100)
    assert out.data["scan_truncated"] is True


@pytest.mark.parametrize(
    ("action", "expected"),
    [("warn", Action.warned), ("audit", Action.observed), ("ignore", Action.observed)],
)
def test_enforce_non_destructive(tmp_path: Path, action: str, expected: Action) -> None:
    f = tmp_path / "a.txt"
    f.write_text("x")
    ref = FileRef.of(f)
    assert DownloadsCollector(quarantine_dir=tmp_path / "q").enforce(ref, decision(action)).action == expected
    assert f.exists()


def test_enforce_delete_and_failure(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("x")
    collector = DownloadsCollector(quarantine_dir=tmp_path / "q")
    ref = FileRef.of(f)
    assert collector.enforce(ref, decision("delete")).action == Action.deleted
    assert not f.exists()
    failed = collector.enforce(ref, decision("delete"))
    assert failed.action == Action.failed
    assert "FileNotFoundError" in failed.data["error"]
    failed_q = collector.enforce(ref, decision("quarantine"))
    assert failed_q.action == Action.failed
    assert not list((tmp_path / "q").glob("*.json"))  # no orphan sidecar


def test_enforce_never_raises_on_a_bad_target(tmp_path: Path) -> None:
    collector = DownloadsCollector(quarantine_dir=tmp_path / "q")
    assert collector.enforce(None, decision("delete")).action == Action.failed
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    # Only a reported download is ever moved or deleted, never a path handed in as such.
    assert collector.enforce(plain, decision("delete")).action == Action.failed
    assert plain.exists()


def test_quarantine_modes_sidecar_and_restore_next_to_a_new_file(tmp_path: Path) -> None:
    f = tmp_path / "data.csv"
    f.write_text("payload")
    f.chmod(0o640)
    qdir = tmp_path / "home" / "quarantine"
    qid = quarantine_file(f, qdir, extra={"rule": "r1"})
    assert stat.S_IMODE(qdir.stat().st_mode) == 0o700
    assert stat.S_IMODE((qdir / qid).stat().st_mode) == 0o600
    assert stat.S_IMODE((qdir / f"{qid}.json").stat().st_mode) == 0o600
    record = read_record(qid, quarantine_dir=qdir)
    assert record["original_path"] == str(f)
    assert record["rule"] == "r1"
    assert json.loads((qdir / f"{qid}.json").read_text())["quarantine_id"] == qid
    f.write_text("a new file with the same name")
    back = restore(qid, quarantine_dir=qdir)
    assert back == tmp_path / "data (restored).csv"
    assert back.read_text() == "payload"
    assert stat.S_IMODE(back.stat().st_mode) == 0o640
    assert list(qdir.iterdir()) == []


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden"])
def test_restore_refuses_path_like_ids(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="not a quarantine id"):
        restore(bad, quarantine_dir=tmp_path)


def test_default_quarantine_dir_follows_deskwarden_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESKWARDEN_HOME", str(tmp_path))
    assert DownloadsCollector().quarantine_dir == tmp_path / "quarantine"


# --- monitored users, folder state and files the desk user controls ----------------------------------------


def _home(base: Path, user: str, *, downloads: bool = True) -> UserHome:
    home = base / "home" / user
    (home / "Downloads" if downloads else home).mkdir(parents=True)
    return UserHome(user, str(home))


def _configured(collector: DownloadsCollector, doc: PolicyDocument) -> DownloadsCollector:
    collector.reconfigure(doc)  # sets the snapshot without starting; _desired_watches reads it
    return collector


def test_home_relative() -> None:
    assert home_relative("~") == ""
    assert home_relative("~/Downloads") == "Downloads"
    assert home_relative("~\\Downloads") == "Downloads"
    assert home_relative("~bob/Downloads") is None
    assert home_relative("/srv/drop") is None


def test_tilde_expands_for_every_monitored_user_and_absolute_paths_name_their_owner(tmp_path: Path) -> None:
    ann, bob = _home(tmp_path, "ann"), _home(tmp_path, "bob", downloads=False)
    shared = tmp_path / "srv" / "drop"
    shared.mkdir(parents=True)
    inside_ann = Path(ann.home) / "Desktop"
    inside_ann.mkdir()
    owners: list[Path] = []

    def owner_of(path: Path) -> str:
        owners.append(path)
        return "carol"

    collector = DownloadsCollector(quarantine_dir=tmp_path / "q", homes=lambda: [ann, bob], owner_of=owner_of)
    doc = PolicyDocument(
        version=1,
        controls=Controls(downloads=DownloadsControl(paths=["~/Downloads", str(shared), str(inside_ann)])),
    )
    watches, skipped = _configured(collector, doc)._desired_watches()
    assert [(w.folder, w.user, w.root) for w in watches] == [
        ("~/Downloads", "ann", (Path(ann.home) / "Downloads").resolve()),
        (str(shared), "carol", shared.resolve()),
        (str(inside_ann), "ann", inside_ann.resolve()),  # inside a monitored home: that user, no owner lookup
    ]
    assert skipped == ["~/Downloads (bob)"]
    assert owners == [shared]


def test_one_folder_configured_twice_is_watched_once(tmp_path: Path) -> None:
    ann = _home(tmp_path, "ann")
    collector = DownloadsCollector(quarantine_dir=tmp_path / "q", homes=lambda: [ann])
    doc = PolicyDocument(
        version=1,
        controls=Controls(downloads=DownloadsControl(paths=["~/Downloads", f"{ann.home}/Downloads"])),
    )
    watches, skipped = _configured(collector, doc)._desired_watches()
    assert [(w.folder, w.user) for w in watches] == [("~/Downloads", "ann")]
    assert skipped == []


def test_a_failing_user_lookup_keeps_the_last_known_users(tmp_path: Path) -> None:
    ann = _home(tmp_path, "ann")
    answers: list[list[UserHome] | Exception] = [[ann], RuntimeError("logind went away")]

    def homes() -> list[UserHome]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    collector = _configured(DownloadsCollector(quarantine_dir=tmp_path / "q", homes=homes), PolicyDocument(version=1))
    assert [w.user for w in collector._desired_watches()[0]] == ["ann"]
    assert [w.user for w in collector._desired_watches()[0]] == ["ann"]


def _polling(tmp_path: Path, **kw: Any) -> DownloadsCollector:
    return DownloadsCollector(
        quarantine_dir=tmp_path / "q",
        hash_key=KEY,
        observer_factory=lambda: PollingObserver(timeout=0.05),
        use_close_events=False,
        settle_seconds=0.1,
        **kw,
    )


def test_no_existing_folder_is_unavailable_not_running_until_one_appears(tmp_path: Path) -> None:
    folder = tmp_path / "later"
    collector = _polling(tmp_path)
    sink = ListSink()
    collector.start(sink, policy(folder))
    try:
        assert state_of(collector) is CollectorState.unavailable
        assert collector.unavailable_reason == f"no download folder to watch: {folder}"
        folder.mkdir()
        assert collector.rescan().wait(5)
        assert state_of(collector) is CollectorState.running
        assert collector.unavailable_reason == ""
        (folder / "a.txt").write_text("now watched")
        assert sink.q.get(timeout=5).draft.data["name"] == "a.txt"
    finally:
        collector.stop()
    assert state_of(collector) is CollectorState.stopped


def test_no_monitored_user_is_unavailable(tmp_path: Path) -> None:
    collector = _polling(tmp_path, homes=list)
    collector.start(ListSink(), PolicyDocument(version=1))
    try:
        assert state_of(collector) is CollectorState.unavailable
        assert collector.unavailable_reason == "no monitored user"
    finally:
        collector.stop()


def test_users_are_re_read_periodically_so_a_later_login_is_watched(tmp_path: Path) -> None:
    ann = _home(tmp_path, "ann")
    users: list[UserHome] = []
    asked = threading.Event()

    def homes() -> list[UserHome]:
        asked.set()
        return list(users)

    collector = _polling(tmp_path, homes=homes, rescan_seconds=0.05)
    sink = ListSink()
    collector.start(sink, PolicyDocument(version=1))
    try:
        assert state_of(collector) is CollectorState.unavailable
        users.append(ann)
        asked.clear()
        assert asked.wait(5)  # asked again without anyone calling rescan()
        asked.clear()
        assert asked.wait(5)  # and once more, so the answer with ann has been applied
        assert [w.user for w in collector.watched] == ["ann"]
        assert state_of(collector) is CollectorState.running
        (Path(ann.home) / "Downloads" / "b.txt").write_text("hello")
        obs = sink.q.get(timeout=5)
        assert obs.draft.user == "ann"
        assert obs.draft.data["folder"] == "~/Downloads"
    finally:
        collector.stop()


def test_a_link_in_the_folder_is_never_read(tmp_path: Path) -> None:
    # In the service the collector reads as root: a link to a file the user cannot read must not be followed.
    folder = tmp_path / "dl"
    folder.mkdir()
    secret = tmp_path / "root-only.csv"
    secret.write_text("card,4111 1111 1111 1111\n")
    collector = _polling(tmp_path)
    sink = ListSink()
    collector.start(sink, policy(folder))
    try:
        (folder / "looks-harmless.csv").symlink_to(secret)
        (folder / "marker.txt").write_text("x")
        assert sink.q.get(timeout=5).draft.data["name"] == "marker.txt"
        with pytest.raises(queue.Empty):
            sink.q.get(timeout=0.3)
    finally:
        collector.stop()


def test_a_folder_swapped_for_a_link_after_the_report_is_not_touched(tmp_path: Path) -> None:
    folder = tmp_path / "dl"
    folder.mkdir()
    (folder / "passwd").write_text("reported")
    ref = FileRef.of(folder / "passwd")
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    (elsewhere / "passwd").write_text("system file")
    folder.rename(tmp_path / "dl.old")
    folder.symlink_to(elsewhere)
    collector = DownloadsCollector(quarantine_dir=tmp_path / "q")
    for action in ("quarantine", "delete"):
        outcome = collector.enforce(ref, decision(action))
        assert outcome.action == Action.failed
        assert "FileChanged" in str(outcome.data["error"])
    assert (elsewhere / "passwd").read_text() == "system file"
    assert not list((tmp_path / "q").glob("*.json"))


def test_a_file_replaced_after_the_report_is_not_touched(tmp_path: Path) -> None:
    f = tmp_path / "report.csv"
    f.write_text("reported")
    ref = FileRef.of(f)
    f.unlink()
    f.write_text("another file under the same name")
    outcome = DownloadsCollector(quarantine_dir=tmp_path / "q").enforce(ref, decision("delete"))
    assert outcome.action == Action.failed
    assert f.exists()


def test_quarantine_across_filesystems_copies_then_removes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "data.csv"
    f.write_text("payload")
    qdir = tmp_path / "service" / "quarantine"
    real_rename = os.rename

    def rename(src: Any, dst: Any, **kw: Any) -> None:
        if str(dst).startswith(str(qdir)):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_rename(src, dst, **kw)

    monkeypatch.setattr(os, "rename", rename)
    qid = quarantine_file(FileRef.of(f), qdir)
    assert not f.exists()
    assert (qdir / qid).read_text() == "payload"
    assert stat.S_IMODE((qdir / qid).stat().st_mode) == 0o600


def test_restore_refuses_a_folder_now_reached_through_a_link(tmp_path: Path) -> None:
    folder = tmp_path / "dl"
    folder.mkdir()
    (folder / "evil").write_text("payload")
    qdir = tmp_path / "q"
    qid = quarantine_file(FileRef.of(folder / "evil"), qdir)
    target = tmp_path / "cron.d"
    target.mkdir()
    folder.rmdir()
    folder.symlink_to(target)
    with pytest.raises(FileChanged):
        restore(qid, quarantine_dir=qdir)
    assert list(target.iterdir()) == []
    assert (qdir / qid).exists()


def test_service_factory_uses_the_service_quarantine_dir_and_monitored_users(tmp_path: Path) -> None:
    ann = _home(tmp_path, "ann")
    qdir = tmp_path / "var" / "lib" / "deskwarden" / "quarantine"
    ctx = CollectorContext(role="service", hash_key=KEY, quarantine_dir=str(qdir), monitored_homes=lambda: [ann])
    collector = create(ctx)
    assert isinstance(collector, DownloadsCollector)
    assert collector.quarantine_dir == qdir
    assert [w.user for w in _configured(collector, PolicyDocument(version=1))._desired_watches()[0]] == ["ann"]
    assert create(CollectorContext(role="helper", hash_key=KEY)) is None
    f = Path(ann.home) / "Downloads" / "a.exe"
    f.write_bytes(b"MZ")
    assert collector.enforce(FileRef.of(f), decision("quarantine")).action == Action.quarantined
    assert stat.S_IMODE(qdir.stat().st_mode) == 0o700
