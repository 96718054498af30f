"""retention: which dated folders under sent/ expire, and pruning them."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.base.folders import Folder
from daemon.spool.retention import PRUNE_EVERY_SECONDS, Pruner, expired_folders, prune_sent

TODAY = date(2026, 11, 23)


def make_sent(root: Path, *names: str) -> Path:
    sent = root / "sent"
    for name in names:
        (sent / name / "20261101T000000.000000Z-ab").mkdir(parents=True)
        (sent / name / "20261101T000000.000000Z-ab" / "users.csv").write_text("x\n")
    return sent


def test_retention_expires_only_dated_folders_older_than_the_days(tmp_path: Path) -> None:
    sent = make_sent(tmp_path, "2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23", "notes")
    with Folder.at(sent) as held:
        assert expired_folders(held, TODAY, 2) == ["2026-11-20"]
        assert expired_folders(held, TODAY, 1) == ["2026-11-20", "2026-11-21"]


def test_retention_off_or_missing_folder_expires_nothing(tmp_path: Path) -> None:
    sent = make_sent(tmp_path, "2020-01-01")
    with Folder.at(sent) as held:
        assert expired_folders(held, TODAY, 0) == []
    (tmp_path / "empty").mkdir()
    with Folder.at(tmp_path / "empty") as root:
        assert prune_sent("music", root, TODAY, 1) == 0  # no sent/ at all


def outside_folder(tmp_path: Path) -> Path:
    """A folder outside the drop folder holding `keep.csv`, for links to point at."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.csv").write_text("keep\n")
    return elsewhere


def test_retention_never_follows_or_removes_a_link_or_a_file_named_like_a_date(
    tmp_path: Path,
) -> None:
    sent = make_sent(tmp_path, "2020-01-01")
    elsewhere = outside_folder(tmp_path)
    os.symlink(elsewhere, sent / "2020-01-02")
    (sent / "2020-01-03").write_text("a file\n")
    (sent / "2020-13-01").mkdir()  # not a date

    with Folder.at(tmp_path) as root:
        assert prune_sent("music", root, TODAY, 30) == 1
    assert sorted(p.name for p in sent.iterdir()) == ["2020-01-02", "2020-01-03", "2020-13-01"]
    assert (elsewhere / "keep.csv").read_text() == "keep\n"


def test_retention_never_prunes_through_a_sent_folder_that_is_a_link(tmp_path: Path) -> None:
    outside = make_sent(tmp_path / "outside", "2020-01-01")
    drop = tmp_path / "drop"
    drop.mkdir()
    os.symlink(outside, drop / "sent")
    with capture_logs() as logs, Folder.at(drop) as root:
        assert prune_sent("music", root, TODAY, 1) == 0
    assert (outside / "2020-01-01" / "20261101T000000.000000Z-ab" / "users.csv").exists()
    assert [entry["event"] for entry in logs] == ["sent_prune_refused"]
    assert "symbolic link" in logs[0]["reason"]


def test_retention_removes_a_link_inside_a_dated_folder_never_what_it_points_to(
    tmp_path: Path,
) -> None:
    sent = make_sent(tmp_path, "2020-01-01")
    elsewhere = outside_folder(tmp_path)
    os.symlink(elsewhere, sent / "2020-01-01" / "20261101T000000.000000Z-ab" / "escape")
    os.symlink(elsewhere, sent / "2020-01-01" / "escape-too")
    with Folder.at(tmp_path) as root:
        assert prune_sent("music", root, TODAY, 30) == 1
    assert not (sent / "2020-01-01").exists()
    assert (elsewhere / "keep.csv").read_text() == "keep\n"


def test_retention_logs_each_pruned_folder_with_its_batches(tmp_path: Path) -> None:
    sent = make_sent(tmp_path, "2026-10-01", "2026-10-02", "2026-11-23")
    with capture_logs() as logs, Folder.at(tmp_path) as root:
        assert prune_sent("music", root, TODAY, 30) == 2
    pruned = [entry for entry in logs if entry["event"] == "sent_pruned"]
    assert [Path(entry["folder"]).name for entry in pruned] == ["2026-10-01", "2026-10-02"]
    assert all(entry["batches"] == 1 and entry["group"] == "music" for entry in pruned)
    assert [p.name for p in sent.iterdir()] == ["2026-11-23"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root removes from a read-only folder")
def test_retention_a_folder_that_cannot_be_removed_is_logged_and_kept(tmp_path: Path) -> None:
    sent = make_sent(tmp_path, "2026-10-01")
    day = sent / "2026-10-01"
    day.chmod(0o500)
    try:
        with capture_logs() as logs, Folder.at(tmp_path) as root:
            assert prune_sent("music", root, TODAY, 30) == 0
    finally:
        day.chmod(0o700)
    assert (day / "20261101T000000.000000Z-ab" / "users.csv").exists()
    assert [entry["event"] for entry in logs] == ["sent_prune_failed"]


def test_pruner_prunes_each_folder_given_once_an_hour(tmp_path: Path) -> None:
    music = tmp_path / "music"
    (music / "sent" / "2026-01-01").mkdir(parents=True)
    pruner = Pruner(lambda: datetime(2026, 11, 23, tzinfo=UTC))
    with Folder.at(music) as root:
        pruner.run([("music", root)], 0.0, 30)
        assert not (music / "sent" / "2026-01-01").exists()
        (music / "sent" / "2026-01-02").mkdir()
        pruner.run([("music", root)], PRUNE_EVERY_SECONDS - 1, 30)
        assert (music / "sent" / "2026-01-02").exists(), "not before its hour"
        pruner.run([("music", root)], PRUNE_EVERY_SECONDS, 30)
        assert not (music / "sent" / "2026-01-02").exists()
