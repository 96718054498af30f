"""The dropped-ZIP check: only CSVs and message.properties, no escapes, links or bombs."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from daemon.checks import dropped_zip as zipcheck
from daemon.checks.dropped_zip import duplicate_entries, zip_problems

USERS = b"user_id,login_id,first_name,last_name,email,status\n"


def make_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def test_zip_problems_none_for_csvs_and_properties(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "a.zip", {"users.csv": USERS, "message.properties": b"a=b\n"})
    assert zip_problems(path) == []


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("../users.csv", "leaves the archive"),
        ("/etc/users.csv", "leaves the archive"),
        ("a/../../users.csv", "leaves the archive"),
        ("notes.txt", "not a CSV file"),
        ("inner.zip", "not a CSV file"),
        ("users.csv.done", "not a CSV file"),
    ],
)
def test_zip_problems_name_each_bad_entry(tmp_path: Path, name: str, words: str) -> None:
    path = make_zip(tmp_path / "a.zip", {"users.csv": USERS, name: b"x"})
    [problem] = zip_problems(path)
    assert words in problem and f'"{name}"' in problem


def test_zip_problems_refuse_a_link_entry(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("users.csv")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/shadow")
    [problem] = zip_problems(path)
    assert "symbolic link" in problem


def test_zip_problems_refuse_a_bomb(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "a.zip", {"users.csv": USERS + b"\0" * (8 << 20)})
    [problem] = zip_problems(path)
    assert "bomb" in problem


def test_zip_problems_refuse_too_much_in_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zipcheck, "MAX_TOTAL_BYTES", 100)
    path = make_zip(tmp_path / "a.zip", {"users.csv": USERS * 3})
    [problem] = zip_problems(path)
    assert "unpack to" in problem


def test_zip_problems_not_a_zip_or_empty(tmp_path: Path) -> None:
    garbage = tmp_path / "g.zip"
    garbage.write_bytes(b"this is no zip")
    assert "not a ZIP" in zip_problems(garbage)[0]
    empty = make_zip(tmp_path / "e.zip", {})
    assert "holds no file" in zip_problems(empty)[0]


def test_duplicate_entries_names_two_entries_of_one_base_name(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a/users.csv", "user_id\n")
        archive.writestr("b/users.csv", "user_id\n")
        archive.writestr("courses.csv", "course_id\n")
        archive.writestr("__MACOSX/courses.csv", "junk")  # skipped by the server too
    why = duplicate_entries(path)
    assert why is not None and '"users.csv"' in why and "courses.csv" not in why


def test_duplicate_entries_none_when_each_name_is_its_own(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("users.csv", "user_id\n")
        archive.writestr("courses.csv", "course_id\n")
    assert duplicate_entries(path) is None


def test_zip_problems_an_entry_name_java_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("users.csv", "user_id\n")
    raw = path.read_bytes().replace(b"users.csv", b"user\xe9.csv")  # same length, no UTF-8 flag
    path.write_bytes(raw)
    [problem] = zip_problems(path)
    assert "not UTF-8" in problem
