"""Is a group folder one dropd can work (daemon/spool/folder_checks.py)?"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.spool.folder_checks import folder_problems


def test_folder_problems_none_for_a_good_folder(tmp_path: Path) -> None:
    for name in ("sent", "failed", ".dropd/work"):
        (tmp_path / name).mkdir(parents=True)
    assert folder_problems(tmp_path) == []


def test_folder_problems_a_missing_folder(tmp_path: Path) -> None:
    [problem] = folder_problems(tmp_path / "nope")
    assert problem == f"{tmp_path / 'nope'} does not exist; create it or fix the group's folder"


def test_folder_problems_a_file_is_no_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert "is not a folder" in folder_problems(tmp_path / "file")[0]
    (tmp_path / "sent").write_text("x")
    [problem] = folder_problems(tmp_path)
    assert problem.startswith(f"{tmp_path / 'sent'} is not a folder")


def test_folder_problems_a_linked_folder_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert folder_problems(tmp_path / "link") == []


@pytest.mark.parametrize("name", ["sent", "failed", "held", ".dropd"])
def test_folder_problems_a_link_where_dropd_files_batches_is_named(
    tmp_path: Path, name: str
) -> None:
    (tmp_path / "elsewhere").mkdir()
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / name).symlink_to(tmp_path / "elsewhere")
    [problem] = folder_problems(drop)
    assert problem.startswith(f"{drop / name} is a symbolic link to {tmp_path / 'elsewhere'}")
    assert "never writes through a link" in problem


def test_folder_problems_unwritable_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sent").mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    [problem] = folder_problems(tmp_path)
    assert (
        problem == f"{tmp_path} is not writable: permission denied; give dropd's user write access"
    )


def test_folder_problems_another_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "failed").mkdir()
    real_stat = os.stat

    def stat(path: Path, **options: bool) -> os.stat_result:
        info = real_stat(path, **options)
        if Path(path).name != "failed":
            return info
        fields = list(info)
        fields[2] += 1  # st_dev
        return os.stat_result(fields)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "lstat", lambda path: stat(path, follow_symlinks=False))
    [problem] = folder_problems(tmp_path)
    assert problem.startswith(f"{tmp_path / 'failed'} is on another file system than {tmp_path}")
