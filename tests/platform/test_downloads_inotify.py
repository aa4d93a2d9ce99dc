"""Downloads collector against real inotify: browser-like sequences, content findings, quarantine
and restore. Linux only."""

from __future__ import annotations

import json
import queue
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stdnum import verhoeff

from collectors.base import Decision, Observation
from collectors.downloads import DownloadsCollector, restore
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
    assert obs.target == (downloads / "report.pdf").resolve()
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
        {"type": "aadhaar", "count": 2, "sample": "XXXXXXXX2346", "hash": data["findings"][0]["hash"]}  # type: ignore[index,call-overload]
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
    assert sidecar["original_path"] == str(obs.target)

    restored = restore(qid, quarantine_dir=qdir)
    assert restored == obs.target
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
        assert [f for f, _ in collector.watched] == [str(downloads)]
    finally:
        collector.stop()
