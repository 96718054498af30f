"""A dropped ZIP unpacked as the server takes it: by base name, macOS's files left out, only
CSVs and message.properties, no escapes, links or bombs."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from daemon.checks import dropped_zip as zipcheck
from daemon.checks.dropped_zip import TakenEntry, Unpacking, is_macos_junk, unpack_zip
from unit.zips import zip_of

USERS = b"user_id,login_id,first_name,last_name,email,status\n"
COURSES = b"course_id,short_name,long_name,account_id,term_id,status\n"


def make_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def unpack(tmp_path: Path, entries: dict[str, bytes]) -> tuple[Unpacking, Path]:
    """Unpack a ZIP of `entries` into a fresh folder; the outcome and the folder."""
    folder = tmp_path / "unpacked"
    folder.mkdir()
    return unpack_zip(make_zip(tmp_path / "a.zip", entries), folder), folder


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_unpack_takes_csvs_and_properties_as_they_are(tmp_path: Path) -> None:
    done, folder = unpack(tmp_path, {"users.csv": USERS, "message.properties": b"a=b\n"})
    assert done == Unpacking(
        (
            TakenEntry("users.csv", "users.csv", len(USERS)),
            TakenEntry("message.properties", "message.properties", 4),
        )
    )
    assert files_in(folder) == {"users.csv": USERS, "message.properties": b"a=b\n"}


def test_unpack_takes_entries_in_folders_by_base_name(tmp_path: Path) -> None:
    done, folder = unpack(tmp_path, {"export/2026/users.csv": USERS, "courses.csv": COURSES})
    assert [(e.path, e.name) for e in done.entries] == [
        ("export/2026/users.csv", "users.csv"),
        ("courses.csv", "courses.csv"),
    ]
    assert files_in(folder) == {"users.csv": USERS, "courses.csv": COURSES}
    assert (done.twice, done.problems) == (None, ())


def test_unpack_takes_an_absolute_entry_by_base_name(tmp_path: Path) -> None:
    # The server resolves `/users.csv` inside its folder: a base name like any other.
    done, folder = unpack(tmp_path, {"/users.csv": USERS})
    assert [(e.path, e.name) for e in done.entries] == [("/users.csv", "users.csv")]
    assert files_in(folder) == {"users.csv": USERS}


def test_unpack_leaves_macos_junk_out_and_lists_it(tmp_path: Path) -> None:
    done, folder = unpack(
        tmp_path,
        {
            "export/users.csv": USERS,
            "__MACOSX/export/._users.csv": b"\0\5\26\7 AppleDouble",
            "export/.DS_Store": b"\0\0\0\1Bud1",
            "._courses.csv": b"\0\5\26\7",
        },
    )
    assert done.left_out == ("__MACOSX/export/._users.csv", "export/.DS_Store", "._courses.csv")
    assert files_in(folder) == {"users.csv": USERS}
    assert (done.twice, done.problems) == (None, ())


@pytest.mark.parametrize(
    ("path", "junk"),
    [
        ("__MACOSX/users.csv", True),
        ("a/__MACOSX/b/users.csv", True),
        ("._users.csv", True),
        ("x/.DS_Store", True),
        ("users.csv", False),
        ("MACOSX/users.csv", False),
        ("a._users.csv", False),
    ],
)
def test_is_macos_junk(path: str, junk: bool) -> None:
    assert is_macos_junk(path) is junk


def test_unpack_of_two_entries_of_one_base_name_names_both(tmp_path: Path) -> None:
    done, _ = unpack(
        tmp_path,
        {
            "a/users.csv": USERS,
            "b/users.csv": USERS,
            "courses.csv": COURSES,
            "__MACOSX/courses.csv": b"junk",  # left out, so no second courses.csv
        },
    )
    assert done.twice is not None
    assert '"users.csv"' in done.twice and '"a/users.csv", "b/users.csv"' in done.twice
    assert "courses" not in done.twice
    assert done.entries == () and done.problems == ()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("../users.csv", "leaves the archive"),
        ("a/../../users.csv", "leaves the archive"),
        ("..\\users.csv", "leaves the archive"),
        ("notes.txt", "not a CSV file"),
        ("inner.zip", "not a CSV file"),
        ("users.csv.done", "not a CSV file"),
    ],
)
def test_unpack_refuses_each_bad_entry_before_writing(
    tmp_path: Path, name: str, words: str
) -> None:
    done, folder = unpack(tmp_path, {"users.csv": USERS, name: b"x"})
    [problem] = done.problems
    assert words in problem and name in problem.replace("\\\\", "\\")
    assert files_in(folder) == {}, "nothing is unpacked from a ZIP that cannot go up"
    assert not (tmp_path / "users.csv").exists()


def test_unpack_refuses_a_link_entry(tmp_path: Path) -> None:
    path, folder = tmp_path / "a.zip", tmp_path / "unpacked"
    folder.mkdir()
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("users.csv")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/shadow")
    [problem] = unpack_zip(path, folder).problems
    assert "symbolic link" in problem
    assert files_in(folder) == {}


def test_unpack_refuses_a_bomb(tmp_path: Path) -> None:
    done, folder = unpack(tmp_path, {"users.csv": USERS + b"\0" * (8 << 20)})
    [problem] = done.problems
    assert "bomb" in problem
    assert files_in(folder) == {}


def test_unpack_refuses_too_much_in_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zipcheck, "MAX_TOTAL_BYTES", 100)
    done, _ = unpack(tmp_path, {"users.csv": USERS * 3})
    [problem] = done.problems
    assert "unpack to" in problem


def test_unpack_refuses_too_many_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zipcheck, "MAX_ENTRIES", 3)
    done, folder = unpack(tmp_path, {f"u{n}.csv": USERS for n in range(4)})
    [problem] = done.problems
    assert "4 entries, more than the 3" in problem
    assert files_in(folder) == {}


def test_unpack_of_no_zip_or_an_empty_one(tmp_path: Path) -> None:
    garbage, folder = tmp_path / "g.zip", tmp_path / "unpacked"
    garbage.write_bytes(b"this is no zip")
    folder.mkdir()
    assert "not a ZIP" in unpack_zip(garbage, folder).problems[0]
    folder.rmdir()
    empty, _ = unpack(tmp_path, {})
    assert "holds no file" in empty.problems[0]


def test_unpack_of_macos_junk_alone_holds_no_file(tmp_path: Path) -> None:
    done, _ = unpack(tmp_path, {"__MACOSX/._users.csv": b"\0"})
    assert "holds no file" in done.problems[0]
    assert done.left_out == ("__MACOSX/._users.csv",)


def test_unpack_refuses_an_entry_name_java_cannot_read(tmp_path: Path) -> None:
    path, folder = tmp_path / "export.zip", tmp_path / "unpacked"
    folder.mkdir()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("users.csv", "user_id\n")
    raw = path.read_bytes().replace(b"users.csv", b"user\xe9.csv")  # same length, no UTF-8 flag
    path.write_bytes(raw)
    [problem] = unpack_zip(path, folder).problems
    assert "not UTF-8" in problem


def test_unpack_reads_a_zip_behind_a_stub(tmp_path: Path) -> None:
    # Bytes before the first local header (a self-extractor's stub): Java's ZipInputStream
    # finds no entry in it; dropd unpacks it and zips the files again.
    path, folder = tmp_path / "stub.zip", tmp_path / "unpacked"
    folder.mkdir()
    plain = make_zip(tmp_path / "plain.zip", {"users.csv": USERS})
    path.write_bytes(b"#!/bin/sh\necho a self-extractor\n" * 40 + plain.read_bytes())
    done = unpack_zip(path, folder)
    assert done.problems == () and files_in(folder) == {"users.csv": USERS}


def test_unpack_reads_a_stored_entry_with_a_data_descriptor(tmp_path: Path) -> None:
    # Written to a stream that cannot seek, zipfile puts sizes after the data: with a stored
    # entry, which Java's ZipInputStream cannot read.
    streamed = zip_of({"users.csv": USERS}, zipfile.ZIP_STORED, seekable=False)
    path, folder = tmp_path / "streamed.zip", tmp_path / "unpacked"
    path.write_bytes(streamed)
    folder.mkdir()
    with zipfile.ZipFile(path) as archive:
        [info] = archive.infolist()
        assert info.compress_type == zipfile.ZIP_STORED and info.flag_bits & 0x08
    done = unpack_zip(path, folder)
    assert done.problems == () and files_in(folder) == {"users.csv": USERS}


def test_unpack_of_a_method_zipfile_cannot_read_says_so(tmp_path: Path) -> None:
    path, folder = tmp_path / "odd.zip", tmp_path / "unpacked"
    folder.mkdir()
    make_zip(path, {"users.csv": USERS})
    raw = bytearray(path.read_bytes())
    for offset in (8, raw.index(b"PK\x01\x02") + 10):  # the method, in both headers
        raw[offset : offset + 2] = (99).to_bytes(2, "little")
    path.write_bytes(bytes(raw))
    [problem] = unpack_zip(path, folder).problems
    assert '"users.csv" cannot be unpacked' in problem
