"""Folders held by descriptor (daemon/folders.py): what is in them opened without a link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.base.errors import FolderError
from daemon.base.folders import Folder, problem_of


def test_sub_opens_a_folder_in_it_and_makes_one_when_asked(tmp_path: Path) -> None:
    with Folder.at(tmp_path) as root:
        with root.sub("made", create=True, mode=0o700) as made:
            assert made.shown == tmp_path / "made"
            assert made.identity() == (
                os.stat(tmp_path / "made").st_dev,
                os.stat(tmp_path / "made").st_ino,
            )
        assert (tmp_path / "made").stat().st_mode & 0o777 == 0o700
        with pytest.raises(FileNotFoundError):
            root.sub("missing")
        assert root.find("missing") is None


@pytest.mark.parametrize("target", ["elsewhere", "nowhere"])
def test_sub_never_follows_a_link_even_with_create(tmp_path: Path, target: str) -> None:
    (tmp_path / "elsewhere").mkdir()
    drop = tmp_path / "drop"
    drop.mkdir()
    os.symlink(tmp_path / target, drop / "sent")
    with Folder.at(drop) as root, pytest.raises(FolderError) as caught:
        root.sub("sent", create=True)
    assert "is a symbolic link to" in caught.value.reason
    assert not (tmp_path / "nowhere").exists(), "nothing made at the link's target"
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_sub_refuses_a_file_where_a_folder_belongs(tmp_path: Path) -> None:
    (tmp_path / "failed").write_text("x")
    with Folder.at(tmp_path) as root, pytest.raises(FolderError) as caught:
        root.sub("failed", create=True)
    assert "is not a folder" in caught.value.reason


def test_problem_of_names_a_link_or_a_file_and_passes_a_folder_or_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "sent").mkdir()
    os.symlink("/etc", tmp_path / "failed")
    os.mkfifo(tmp_path / "held")
    with Folder.at(tmp_path) as root:
        assert problem_of(root, "sent") is None
        assert problem_of(root, "absent") is None
        assert "symbolic link to /etc" in (problem_of(root, "failed") or "")
        assert "not a folder" in (problem_of(root, "held") or "")


def test_a_held_folder_is_the_same_folder_wherever_it_is_moved(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    with Folder.at(tmp_path / "drop") as root:
        held = root.identity()
        assert held == (os.stat(tmp_path / "drop").st_dev, os.stat(tmp_path / "drop").st_ino)
        os.rename(tmp_path / "drop", tmp_path / "moved")
        (tmp_path / "drop").mkdir()
        assert os.stat(tmp_path / "drop").st_ino != held[1], "a new folder at the path"
        assert root.where() == str(tmp_path / "moved")
        with root.sub("sent", create=True):
            pass
    assert (tmp_path / "moved" / "sent").is_dir() and not (tmp_path / "drop" / "sent").exists()


def test_at_a_missing_folder_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FolderError) as caught:
        Folder.at(tmp_path / "gone")
    assert "does not exist" in caught.value.reason and "mounted" in caught.value.reason
