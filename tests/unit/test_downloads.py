"""Downloads collector logic without inotify: event routing, settling on platforms without close
events, inspection rules, enforcement outcomes and the quarantine folder."""

from __future__ import annotations

import json
import queue
import stat
from pathlib import Path
from typing import Any

import pytest
from watchdog.events import FileClosedEvent, FileCreatedEvent, FileModifiedEvent, FileMovedEvent
from watchdog.observers.polling import PollingObserver

from collectors.base import Decision, Observation
from collectors.downloads import DownloadsCollector, quarantine_file, read_record, restore
from collectors.downloads.collector import _Arrival, _Cancel, _FolderHandler
from collectors.downloads.inspect import inspect_download, is_partial_name
from policy_client.schema import Action, Controls, DownloadsControl, PolicyDocument, Severity

KEY = b"k" * 32


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
    root = str(tmp_path)
    h = _FolderHandler("~/Downloads", root, out, use_close_events=True)
    h.dispatch(FileMovedEvent(f"{root}/a.crdownload", f"{root}/a.pdf"))
    h.dispatch(FileClosedEvent(f"{root}/b.txt"))
    h.dispatch(FileCreatedEvent(f"{root}/c.txt"))
    h.dispatch(FileModifiedEvent(f"{root}/c.txt"))
    h.dispatch(FileClosedEvent(f"{root}/sub/d.txt"))  # not a direct child
    h.dispatch(FileMovedEvent(f"{root}/e.txt", "/elsewhere/e.txt"))  # moved out
    items = [out.get_nowait() for _ in range(out.qsize())]
    assert items == [
        _Arrival(f"{root}/a.pdf", "~/Downloads", settle=False),
        _Arrival(f"{root}/b.txt", "~/Downloads", settle=False),
        _Arrival(f"{root}/c.txt", "~/Downloads", settle=True),
        _Cancel(f"{root}/c.txt"),
    ]


def test_handler_without_close_events_settles_on_modify(tmp_path: Path) -> None:
    out: queue.Queue[object] = queue.Queue()
    h = _FolderHandler("d", str(tmp_path), out, use_close_events=False)
    h.dispatch(FileModifiedEvent(f"{tmp_path}/c.txt"))
    assert out.get_nowait() == _Arrival(f"{tmp_path}/c.txt", "d", settle=True)


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
    assert DownloadsCollector(quarantine_dir=tmp_path / "q").enforce(f, decision(action)).action == expected
    assert f.exists()


def test_enforce_delete_and_failure(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("x")
    collector = DownloadsCollector(quarantine_dir=tmp_path / "q")
    assert collector.enforce(f, decision("delete")).action == Action.deleted
    assert not f.exists()
    failed = collector.enforce(f, decision("delete"))
    assert failed.action == Action.failed
    assert "FileNotFoundError" in failed.data["error"]
    failed_q = collector.enforce(f, decision("quarantine"))
    assert failed_q.action == Action.failed
    assert not list((tmp_path / "q").glob("*.json"))  # no orphan sidecar


def test_enforce_never_raises_on_a_bad_target(tmp_path: Path) -> None:
    outcome = DownloadsCollector(quarantine_dir=tmp_path / "q").enforce(None, decision("delete"))
    assert outcome.action == Action.failed


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
