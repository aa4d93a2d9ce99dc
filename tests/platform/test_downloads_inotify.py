"""Downloads collector against real inotify: browser-like sequences, content findings, quarantine
and restore, and the service's view (several monitored homes, folders that appear later). Linux only."""

from __future__ import annotations

import json
import queue
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stdnum import verhoeff

from agent_app.core.decide import decide
from collectors.base import CollectorContext, Decision, Observation, UserHome
from collectors.downloads import DownloadsCollector, create, restore
from policy_client.schema import Action, Controls, DownloadsControl, PolicyDocument, Severity

pytestmark = [
    pytest.mark.platform,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux only"),
]

AADHAAR = ["234123412346", "98765432101" + verhoeff.calc_check_digit("98765432101")]


class QueueSink:
    def __init__(self) -> None:
        self.q: queue.Queue[Observation] = queue.Queue()

    def emit(self, observation: Observation) -> None:
        self.q.put(observation)

    def next(self, timeout: float = 5.0) -> Observation:
        return self.q.get(timeout=timeout)

    def assert_quiet(self, timeout: float = 0.5) -> None:
        with pytest.raises(queue.Empty):
            self.q.get(timeout=timeout)


def policy(folder: Path, **kw: Any) -> PolicyDocument:
    control = DownloadsControl.model_validate({"paths": [str(folder)], **kw})
    return PolicyDocument(version=1, controls=Controls(downloads=control))


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    folder = tmp_path / "Downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def running(tmp_path: Path, downloads: Path) -> Iterator[tuple[DownloadsCollector, QueueSink]]:
    collector = DownloadsCollector(quarantine_dir=tmp_path / "home" / "quarantine", hash_key=b"k" * 32)
    sink = QueueSink()
    collector.start(sink, policy(downloads, blocked_extensions=[".exe"]))
    try:
        yield collector, sink
    finally:
        collector.stop()
    assert collector.state.value == "stopped"


def test_browser_sequence_crdownload_then_rename_yields_one_event(
    running: tuple[DownloadsCollector, QueueSink], downloads: Path
) -> None:
    _, sink = running
    partial = downloads / "report.pdf.crdownload"
    with partial.open("wb") as fh:
        for _ in range(5):
            fh.write(b"%PDF-1.4 " + b"x" * 4096)
            fh.flush()
    partial.rename(downloads / "report.pdf")
    obs = sink.next()
    assert obs.draft.kind == "download.detected"
    assert obs.draft.severity == Severity.info
    data = obs.draft.data
    assert data["name"] == "report.pdf"
    assert data["extension"] == ".pdf"
    assert data["size_bytes"] == 5 * (9 + 4096)
    assert data["folder"] == str(downloads)
    assert data["blocked_extension"] is False
    assert obs.target.path == (downloads / "report.pdf").resolve()
    assert obs.draft.user == ""  # without monitored users the runtime's own user is meant
    sink.assert_quiet()


def test_part_and_tmp_files_are_never_reported(running: tuple[DownloadsCollector, QueueSink], downloads: Path) -> None:
    _, sink = running
    for name in ("a.zip.part", "b.tmp", "c.download", "d.crdownload"):
        (downloads / name).write_bytes(b"data")
    # Firefox: zero-byte placeholder with the final name, data in .part, then rename over it.
    (downloads / "setup.exe").write_bytes(b"")
    (downloads / "setup.exe.part").write_bytes(b"MZ" + b"\0" * 100)
    (downloads / "setup.exe.part").rename(downloads / "setup.exe")
    obs = sink.next()
    assert obs.draft.data["name"] == "setup.exe"
    assert obs.draft.data["blocked_extension"] is True
    assert obs.draft.severity == Severity.medium
    sink.assert_quiet()


def test_file_written_in_place_is_reported_once_when_closed(
    running: tuple[DownloadsCollector, QueueSink], downloads: Path
) -> None:
    _, sink = running
    with (downloads / "notes.txt").open("w") as fh:
        for i in range(50):
            fh.write(f"line {i}\n")
            fh.flush()
    obs = sink.next()
    assert obs.draft.data["name"] == "notes.txt"
    assert obs.draft.data["size_bytes"] == (downloads / "notes.txt").stat().st_size
    sink.assert_quiet()


def test_file_moved_in_from_elsewhere_is_reported(
    running: tuple[DownloadsCollector, QueueSink], downloads: Path, tmp_path: Path
) -> None:
    _, sink = running
    outside = tmp_path / "outside.csv"
    outside.write_text("a,b\n")
    outside.rename(downloads / "moved.csv")
    assert sink.next().draft.data["name"] == "moved.csv"


def test_csv_with_aadhaar_is_found_quarantined_and_restorable(
    running: tuple[DownloadsCollector, QueueSink], downloads: Path, tmp_path: Path
) -> None:
    collector, sink = running
    body = "name,uid\n" + "".join(f"person{i},{n}\n" for i, n in enumerate(AADHAAR))
    partial = downloads / "customers.csv.part"
    partial.write_text(body)
    partial.rename(downloads / "customers.csv")
    obs = sink.next()
    data = obs.draft.data
    assert obs.draft.severity == Severity.high
    assert data["findings"] == [
        {
            "type": "aadhaar",
            "count": 2,
            "confidence": "medium",
            "by_confidence": {"medium": 2},
            "sample": "XXXXXXXX2346",
            "hash": data["findings"][0]["hash"],  # type: ignore[index,call-overload]
        }
    ]
    assert not any(n in json.dumps(data) for n in AADHAAR)

    decision = Decision(action="quarantine", rule_id="downloads.sensitive", policy_version=1, severity=Severity.high)
    outcome = collector.enforce(obs.target, decision)
    assert outcome.action == Action.quarantined
    qid = outcome.data["quarantine_id"]
    qdir = tmp_path / "home" / "quarantine"
    assert not (downloads / "customers.csv").exists()
    assert stat.S_IMODE(qdir.stat().st_mode) == 0o700
    assert stat.S_IMODE((qdir / qid).stat().st_mode) == 0o600
    sidecar = json.loads((qdir / f"{qid}.json").read_text())
    assert sidecar["original_path"] == str(obs.target.path)

    restored = restore(qid, quarantine_dir=qdir)
    assert restored == obs.target.path
    assert restored.read_text() == body
    assert not (qdir / qid).exists()


def test_mode_off_reports_nothing_and_reconfigure_turns_it_on(tmp_path: Path, downloads: Path) -> None:
    collector = DownloadsCollector(quarantine_dir=tmp_path / "q")
    sink = QueueSink()
    collector.start(sink, policy(downloads, mode="off"))
    try:
        (downloads / "a.txt").write_text("hello")
        sink.assert_quiet()
        collector.reconfigure(policy(downloads, mode="audit"))
        # The watch is added on the collector thread; write until it sees a file (bounded by the deadline).
        for i in range(50):
            (downloads / f"b{i}.txt").write_text("hello")
            try:
                obs = sink.next(timeout=0.2)
                break
            except queue.Empty:
                continue
        else:
            pytest.fail("no event after switching the mode to audit")
        assert obs.draft.data["name"].startswith("b")  # type: ignore[union-attr]
    finally:
        collector.stop()


def test_missing_folder_is_skipped(tmp_path: Path, downloads: Path) -> None:
    collector = DownloadsCollector(quarantine_dir=tmp_path / "q")
    sink = QueueSink()
    doc = PolicyDocument(
        version=1, controls=Controls(downloads=DownloadsControl(paths=[str(tmp_path / "nope"), str(downloads)]))
    )
    collector.start(sink, doc)
    try:
        (downloads / "x.txt").write_text("x")
        sink.next()
        assert collector.skipped == [str(tmp_path / "nope")]
        assert [w.folder for w in collector.watched] == [str(downloads)]
    finally:
        collector.stop()


# --- the service: every monitored user's folders ------------------------------------------------------------


def _homes(tmp_path: Path, *users: str) -> list[UserHome]:
    homes = []
    for user in users:
        home = tmp_path / "home" / user
        (home / "Downloads").mkdir(parents=True)
        homes.append(UserHome(user, str(home)))
    return homes


def _service(tmp_path: Path, homes: list[UserHome], **kw: Any) -> DownloadsCollector:
    ctx = CollectorContext(
        role="service",
        hash_key=b"k" * 32,
        quarantine_dir=str(tmp_path / "var" / "quarantine"),
        monitored_homes=lambda: list(homes),
    )
    collector = create(ctx, **kw)
    assert isinstance(collector, DownloadsCollector)
    return collector


def test_two_monitored_homes_attribute_each_download_to_its_user(tmp_path: Path) -> None:
    homes = _homes(tmp_path, "ann", "bob")
    collector = _service(tmp_path, homes)
    sink = QueueSink()
    collector.start(sink, PolicyDocument(version=1))  # the default policy: "~/Downloads"
    try:
        assert sorted(w.user for w in collector.watched) == ["ann", "bob"]
        (Path(homes[0].home) / "Downloads" / "ann.txt").write_text("from ann")
        (Path(homes[1].home) / "Downloads" / "bob.txt").write_text("from bob")
        got = {o.draft.data["name"]: o for o in (sink.next(), sink.next())}
        assert got["ann.txt"].draft.user == "ann"
        assert got["bob.txt"].draft.user == "bob"
        assert {o.draft.data["folder"] for o in got.values()} == {"~/Downloads"}
        assert got["bob.txt"].target.path == (Path(homes[1].home) / "Downloads" / "bob.txt").resolve()
        sink.assert_quiet()

        decision = Decision(action="quarantine", rule_id="downloads.block", policy_version=1, severity=Severity.high)
        outcome = collector.enforce(got["ann.txt"].target, decision)
        assert outcome.action == Action.quarantined
        qdir = tmp_path / "var" / "quarantine"
        assert stat.S_IMODE(qdir.stat().st_mode) == 0o700
        assert (qdir / str(outcome.data["quarantine_id"])).read_text() == "from ann"
    finally:
        collector.stop()


def test_missing_folder_is_not_running_then_watched_once_created(tmp_path: Path) -> None:
    home = tmp_path / "home" / "ann"
    home.mkdir(parents=True)
    collector = _service(tmp_path, [UserHome("ann", str(home))])
    sink = QueueSink()
    collector.start(sink, PolicyDocument(version=1))
    try:
        assert collector.state.value == "unavailable"
        assert collector.skipped == ["~/Downloads (ann)"]
        (home / "Downloads").mkdir()
        assert collector.rescan().wait(5)
        assert collector.state.value == "running"
        (home / "Downloads" / "a.txt").write_text("hello")
        obs = sink.next()
        assert (obs.draft.user, obs.draft.data["name"]) == ("ann", "a.txt")
    finally:
        collector.stop()


def test_a_deleted_and_recreated_folder_is_watched_again(tmp_path: Path) -> None:
    [ann] = _homes(tmp_path, "ann")
    downloads = Path(ann.home) / "Downloads"
    collector = _service(tmp_path, [ann])
    sink = QueueSink()
    collector.start(sink, PolicyDocument(version=1))
    try:
        downloads.rmdir()
        assert collector.rescan().wait(5)
        assert collector.state.value == "unavailable"
        downloads.mkdir()
        assert collector.rescan().wait(5)
        assert collector.state.value == "running"
        (downloads / "again.txt").write_text("hello")
        assert sink.next().draft.data["name"] == "again.txt"
    finally:
        collector.stop()


@pytest.mark.skipif(shutil.which("zip") is None, reason="needs the zip CLI (scripts/setup-env.sh installs it)")
@pytest.mark.parametrize(("setting", "action"), [("audit", "audit"), ("quarantine", "quarantine")])
def test_a_password_protected_zip_is_reported_encrypted_and_policy_decides(
    tmp_path: Path, downloads: Path, setting: str, action: str
) -> None:
    """A real ZipCrypto archive (`zip -P`) holding Aadhaar numbers: reported as encrypted (nothing inside was read),
    and `encrypted_archives` decides whether it is only recorded or quarantined."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "customers.csv").write_text("name,uid\n" + "".join(f"p{i},{n}\n" for i, n in enumerate(AADHAAR)))
    subprocess.run(["zip", "-q", "-P", "s3cret", str(work / "c.zip"), "customers.csv"], cwd=work, check=True)
    control = {"mode": "audit", "encrypted_archives": setting}
    collector = DownloadsCollector(quarantine_dir=tmp_path / "home" / "quarantine", hash_key=b"k" * 32)
    sink = QueueSink()
    doc = policy(downloads, **control)
    collector.start(sink, doc)
    try:
        (work / "c.zip").rename(downloads / "customers.zip")
        obs = sink.next()
        data = obs.draft.data
        assert (data["encrypted"], data["encrypted_members"], data["findings"]) == (True, 1, [])
        assert obs.draft.severity == Severity.medium
        decision = decide(obs.draft, doc)
        assert decision.action == action
        outcome = collector.enforce(obs.target, decision)
        if action == "quarantine":
            assert decision.rule_id == "downloads.encrypted_quarantine"
            assert outcome.action == Action.quarantined
            assert not (downloads / "customers.zip").exists()
        else:
            assert outcome.action == Action.observed
            assert (downloads / "customers.zip").exists()
    finally:
        collector.stop()
