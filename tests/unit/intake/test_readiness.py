"""Tests of which dropped files are ready (daemon/intake.py): names, scans, markers, settling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.config.model import DoneMarkers
from daemon.intake.readiness import (
    FileKind,
    FileSeen,
    ReadyFile,
    SettleTracker,
    classify,
    index_markers,
    is_temporary,
    markers_for,
    markers_in,
    orphan_markers,
    ready_files,
    scan_folder,
    unreadable,
)

SETTLE = 10.0


def seen(name: str, size: int = 10, mtime_ns: int = 1, kind: FileKind | None = None) -> FileSeen:
    """A scan's view of one file; the kind follows the name unless given."""
    found = kind or classify(name)
    assert found is not None
    return FileSeen(name, size, mtime_ns, found)


def names(ready: list[ReadyFile]) -> list[str]:
    return sorted(r.name for r in ready)


def settle_at(
    scans: list[tuple[float, list[FileSeen]]], mode: DoneMarkers = DoneMarkers.AUTO
) -> list[ReadyFile]:
    """Feed timed scans to one tracker and return what the last one finds ready."""
    tracker = SettleTracker()
    ready: list[ReadyFile] = []
    for now, scan in scans:
        tracker.observe(scan, now)
        ready = ready_files(scan, tracker, now, SETTLE, mode)
    return ready


# -- classify -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        ".hidden.csv",
        ".users.csv.swp",
        "~users.csv",
        "~$lock.csv",
        "users.csv.tmp",
        "users.tmp",
        "users.csv.part",
        "users.csv.partial",
        "users.csv.filepart",
        "users.csv.crdownload",
        "users.csv.swp",
        "USERS.CSV.TMP",
        "users.csv.Part",
    ],
)
def test_classify_temporary_names_are_never_taken(name: str) -> None:
    assert is_temporary(name)
    assert classify(name) is None


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("users.csv", FileKind.CSV),
        ("Enrollments.CSV", FileKind.CSV),
        ("message.properties", FileKind.PROPERTIES),
        ("Message.Properties", FileKind.PROPERTIES),  # the server finds it in any case
        ("upload.zip", FileKind.ZIP),
        ("UPLOAD.ZIP", FileKind.ZIP),
        ("users.csv.done", FileKind.MARKER),
        ("users.done", FileKind.MARKER),
        ("notes.txt", FileKind.OTHER),
        ("other.properties", FileKind.OTHER),
        ("README", FileKind.OTHER),
        ("users.csv.bak", FileKind.OTHER),
    ],
)
def test_classify_kinds_by_name(name: str, kind: FileKind) -> None:
    assert classify(name) is kind


@pytest.mark.parametrize("name", ["users.csv", "message.properties", "a~b.csv", "tmp.csv"])
def test_classify_ordinary_names_are_not_temporary(name: str) -> None:
    assert not is_temporary(name)


# -- scan_folder ----------------------------------------------------------------------------


def test_scan_folder_lists_regular_files_with_size_and_kind(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_bytes(b"12345")
    (tmp_path / "users.csv.done").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"x")

    found = {f.name: f for f in scan_folder(tmp_path)}

    assert sorted(found) == ["notes.txt", "users.csv", "users.csv.done"]
    assert found["users.csv"].size == 5
    assert found["users.csv"].kind is FileKind.CSV
    assert found["users.csv"].mtime_ns == (tmp_path / "users.csv").stat().st_mtime_ns
    assert found["users.csv.done"].kind is FileKind.MARKER
    assert found["notes.txt"].kind is FileKind.OTHER


def test_scan_folder_skips_links_fifos_folders_and_temporary_names(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    outside = tmp_path / "secret.csv"
    outside.write_text("user_id\n")
    (drop / "real.csv").write_text("a\n")
    (drop / "link.csv").symlink_to(outside)
    (drop / "inner.csv").symlink_to(drop / "real.csv")
    (drop / "dangling.csv").symlink_to(tmp_path / "missing.csv")
    os.mkfifo(drop / "pipe.csv")
    (drop / "folder.csv").mkdir()
    (drop / "users.csv.part").write_text("a\n")
    (drop / ".hidden.csv").write_text("a\n")

    assert [f.name for f in scan_folder(drop)] == ["real.csv"]


def test_scan_folder_of_a_missing_folder_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        scan_folder(tmp_path / "gone")


# -- markers_for ----------------------------------------------------------------------------


def test_markers_for_finds_name_done_and_stem_done() -> None:
    present = ["users.csv.done", "users.done", "courses.done"]
    assert set(markers_for("users.csv", present)) == {"users.csv.done", "users.done"}
    assert markers_for("courses.csv", present) == ("courses.done",)
    assert markers_for("sections.csv", present) == ()


def test_markers_for_a_name_without_a_dot_lists_its_marker_once() -> None:
    assert markers_for("README", ["README.done"]) == ("README.done",)


@pytest.mark.parametrize(
    "name",
    ["users.csv", "USERS.csv", "courses.csv", "README", "a.b.csv", "sections.csv", "x.done"],
)
def test_markers_in_an_index_agrees_with_markers_for(name: str) -> None:
    present = [
        "users.csv.done",
        "users.DONE",
        "Users.done",
        "courses.done",
        "README.done",
        "a.b.done",
        "a.b.csv.done",
        "x.done.done",
    ]
    assert markers_in(name, index_markers(present)) == markers_for(name, present)


def test_ready_files_with_a_marker_beside_each_of_many_files() -> None:
    # One look-up per file: 5,000 files with 5,000 markers is no 25 million comparisons.
    scan = [seen(f"f{n}.csv") for n in range(5000)]
    scan += [seen(f"f{n}.csv.done") for n in range(5000)]
    ready = settle_at([(0.0, scan)], DoneMarkers.REQUIRED)
    assert len(ready) == 5000
    assert all(r.markers == (f"{r.name}.done",) for r in ready)
    assert orphan_markers([*scan, seen("lost.done")]) == ["lost.done"]


# -- SettleTracker --------------------------------------------------------------------------


def test_settle_tracker_settles_after_settle_seconds_unchanged() -> None:
    tracker = SettleTracker()
    tracker.observe([seen("users.csv")], 100.0)
    tracker.observe([seen("users.csv")], 105.0)

    assert not tracker.settled("users.csv", 109.9, SETTLE)
    assert tracker.settled("users.csv", 110.0, SETTLE)
    assert tracker.next_settle_at(SETTLE) == 110.0
    assert tracker.watched() == 1


def test_settle_tracker_next_settle_at_after_skips_files_already_settled() -> None:
    # A settled file that waits for its marker must not keep the scheduler's timer at "now".
    tracker = SettleTracker()
    tracker.observe([seen("waits.csv")], 0.0)
    tracker.observe([seen("waits.csv"), seen("new.csv")], 7.0)
    assert tracker.next_settle_at(SETTLE) == 10.0
    assert tracker.next_settle_at(SETTLE, after=10.0) == 17.0
    assert tracker.next_settle_at(SETTLE, after=17.0) is None


def test_settle_tracker_restarts_when_size_or_mtime_changes() -> None:
    tracker = SettleTracker()
    tracker.observe([seen("users.csv", size=10)], 0.0)
    tracker.observe([seen("users.csv", size=20)], 8.0)
    assert not tracker.settled("users.csv", 12.0, SETTLE)
    assert tracker.settled("users.csv", 18.0, SETTLE)

    tracker.observe([seen("users.csv", size=20, mtime_ns=2)], 18.0)
    assert not tracker.settled("users.csv", 27.0, SETTLE)
    assert tracker.settled("users.csv", 28.0, SETTLE)


def test_settle_tracker_forgets_vanished_and_claimed_files() -> None:
    tracker = SettleTracker()
    tracker.observe([seen("a.csv"), seen("b.csv")], 0.0)
    tracker.observe([seen("a.csv")], 1.0)
    assert not tracker.settled("b.csv", 100.0, SETTLE)

    tracker.forget("a.csv")
    assert not tracker.settled("a.csv", 100.0, SETTLE)
    assert tracker.watched() == 0
    assert tracker.next_settle_at(SETTLE) is None


def test_settle_tracker_file_back_after_vanishing_settles_again() -> None:
    tracker = SettleTracker()
    tracker.observe([seen("a.csv")], 0.0)
    tracker.observe([], 5.0)
    tracker.observe([seen("a.csv")], 6.0)
    assert not tracker.settled("a.csv", 15.0, SETTLE)
    assert tracker.settled("a.csv", 16.0, SETTLE)


# -- ready_files ----------------------------------------------------------------------------


def test_ready_files_file_unchanged_for_settle_seconds_is_ready() -> None:
    scan = [seen("users.csv")]
    assert settle_at([(0.0, scan), (9.0, scan)]) == []
    ready = settle_at([(0.0, scan), (10.0, scan)])
    assert ready == [ReadyFile("users.csv", 10, 1, FileKind.CSV, ())]


def test_ready_files_growing_file_restarts_its_settle() -> None:
    scans = [
        (0.0, [seen("users.csv", size=10)]),
        (6.0, [seen("users.csv", size=20)]),
        (12.0, [seen("users.csv", size=30, mtime_ns=2)]),
        (21.0, [seen("users.csv", size=30, mtime_ns=2)]),
    ]
    assert settle_at(scans) == []
    ready = settle_at([*scans, (22.0, [seen("users.csv", size=30, mtime_ns=2)])])
    assert names(ready) == ["users.csv"]
    assert ready[0].size == 30


def test_ready_files_file_present_at_start_is_watched_the_full_settle_time() -> None:
    # An old mtime does not make a file ready: dropd may have started mid-copy.
    tracker = SettleTracker()
    old = [seen("users.csv", mtime_ns=1)]
    tracker.observe(old, 5000.0)
    assert ready_files(old, tracker, 5000.0, SETTLE, DoneMarkers.AUTO) == []
    assert ready_files(old, tracker, 5009.9, SETTLE, DoneMarkers.AUTO) == []
    assert names(ready_files(old, tracker, 5010.0, SETTLE, DoneMarkers.AUTO)) == ["users.csv"]


def test_ready_files_unobserved_file_is_not_ready() -> None:
    assert ready_files([seen("users.csv")], SettleTracker(), 1e9, SETTLE, DoneMarkers.AUTO) == []


def test_ready_files_auto_marker_makes_ready_at_once() -> None:
    scan = [seen("users.csv"), seen("users.csv.done"), seen("courses.csv")]
    ready = settle_at([(0.0, scan)], DoneMarkers.AUTO)
    assert ready == [ReadyFile("users.csv", 10, 1, FileKind.CSV, ("users.csv.done",))]


def test_ready_files_auto_stem_marker_counts_too() -> None:
    ready = settle_at([(0.0, [seen("users.csv"), seen("users.done")])], DoneMarkers.AUTO)
    assert [(r.name, r.markers) for r in ready] == [("users.csv", ("users.done",))]


def test_ready_files_auto_without_marker_waits_for_settle() -> None:
    scan = [seen("users.csv"), seen("courses.csv"), seen("users.csv.done")]
    assert names(settle_at([(0.0, scan), (10.0, scan)])) == ["courses.csv", "users.csv"]


def test_ready_files_required_waits_for_marker_however_long_it_settles() -> None:
    scan = [seen("users.csv")]
    assert settle_at([(0.0, scan), (1e6, scan)], DoneMarkers.REQUIRED) == []

    with_marker = [*scan, seen("users.done")]
    ready = settle_at([(0.0, scan), (1.0, with_marker)], DoneMarkers.REQUIRED)
    assert [(r.name, r.markers) for r in ready] == [("users.csv", ("users.done",))]


def test_ready_files_off_ignores_markers_for_readiness_but_attaches_them() -> None:
    scan = [seen("users.csv"), seen("users.csv.done"), seen("users.done")]
    assert settle_at([(0.0, scan)], DoneMarkers.OFF) == []

    ready = settle_at([(0.0, scan), (10.0, scan)], DoneMarkers.OFF)
    assert len(ready) == 1
    assert ready[0].name == "users.csv"
    assert set(ready[0].markers) == {"users.csv.done", "users.done"}


@pytest.mark.parametrize("mode", [DoneMarkers.AUTO, DoneMarkers.REQUIRED])
def test_ready_files_an_older_marker_does_not_count(mode: DoneMarkers) -> None:
    # A marker left from an earlier drop, then the file written in place after it.
    scan = [seen("users.csv", mtime_ns=500), seen("users.csv.done", mtime_ns=100)]
    assert settle_at([(0.0, scan)], mode) == []
    ready = settle_at([(0.0, scan), (10.0, scan)], mode)
    if mode is DoneMarkers.AUTO:  # judged by settle time, the old marker travelling along
        assert [(r.name, r.markers) for r in ready] == [("users.csv", ("users.csv.done",))]
    else:  # it waits for a new marker
        assert ready == []


def test_ready_files_a_marker_as_new_as_its_file_counts() -> None:
    # Files and markers written within one tick of the kernel's clock share a time.
    scan = [seen("users.csv", mtime_ns=500), seen("users.done", mtime_ns=500)]
    assert names(settle_at([(0.0, scan)], DoneMarkers.REQUIRED)) == ["users.csv"]


def test_ready_files_one_new_marker_is_enough_beside_an_old_one() -> None:
    scan = [
        seen("users.csv", mtime_ns=500),
        seen("users.csv.done", mtime_ns=100),
        seen("users.done", mtime_ns=900),
    ]
    [ready] = settle_at([(0.0, scan)], DoneMarkers.AUTO)
    assert ready.markers == ("users.csv.done", "users.done")


def test_unreadable_names_owner_and_mode_and_is_none_for_a_readable_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "users.csv").write_bytes(b"x")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert unreadable(fd, "users.csv") is None
        assert unreadable(fd, "gone.csv") is None  # the claim finds it gone
        os.mkfifo(tmp_path / "pipe.csv")
        assert unreadable(fd, "pipe.csv") is not None  # never waited on, never read
        os.symlink(tmp_path / "users.csv", tmp_path / "link.csv")
        why = unreadable(fd, "link.csv")
        assert why is not None and why.startswith('"link.csv" cannot be read')
    finally:
        os.close(fd)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file whatever its mode")
def test_unreadable_a_private_file_of_another_says_whose_and_which_mode(tmp_path: Path) -> None:
    (tmp_path / "private.csv").write_bytes(b"x")
    (tmp_path / "private.csv").chmod(0)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        why = unreadable(fd, "private.csv") or ""
    finally:
        os.close(fd)
    assert "cannot be read by dropd's user" in why and "mode 0000" in why


@pytest.mark.parametrize("mode", list(DoneMarkers))
def test_ready_files_markers_are_never_ready_on_their_own(mode: DoneMarkers) -> None:
    scan = [seen("gone.csv.done"), seen("users.done")]
    assert settle_at([(0.0, scan), (100.0, scan)], mode) == []


def test_ready_files_from_a_real_folder(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("user_id\n")
    (tmp_path / "courses.csv").write_text("course_id\n")
    (tmp_path / "courses.csv.done").write_text("")
    (tmp_path / "users.csv.tmp").write_text("")
    tracker = SettleTracker()

    scan = scan_folder(tmp_path)
    tracker.observe(scan, 0.0)
    first = ready_files(scan, tracker, 0.0, SETTLE, DoneMarkers.AUTO)
    assert [(r.name, r.markers) for r in first] == [("courses.csv", ("courses.csv.done",))]

    scan = scan_folder(tmp_path)
    tracker.observe(scan, 10.0)
    assert names(ready_files(scan, tracker, 10.0, SETTLE, DoneMarkers.AUTO)) == [
        "courses.csv",
        "users.csv",
    ]


def test_orphan_markers_are_those_without_their_file() -> None:
    seen = [
        FileSeen("users.csv", 1, 1, FileKind.CSV),
        FileSeen("users.csv.done", 0, 1, FileKind.MARKER),
        FileSeen("courses.done", 0, 1, FileKind.MARKER),
        FileSeen("sections.csv.DONE", 0, 1, FileKind.MARKER),
    ]
    assert orphan_markers(seen) == ["courses.done", "sections.csv.DONE"]
