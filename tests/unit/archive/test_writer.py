"""Tests of building a batch's ZIP (daemon/archive.py)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
import structlog

from daemon.archive import writer as archive
from daemon.archive import zipformat
from daemon.archive.writer import (
    DEFLATE,
    ZipEntry,
    build_zip,
    fastest_deflate,
    measure_zip,
    stdlib_deflate,
)
from daemon.base.errors import ArchiveError, SourceError
from daemon.base.regular import BOM, file_sha256

USERS = b"user_id,login_id,first_name,last_name,email,status\r\nu1,a@b.edu,A,B,a@b.edu,active\r\n"
COURSES = b"course_id,short_name,long_name,account_id,term_id,status\nc1,C1,Course,acc,t1,active\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


def test_build_zip_entries_are_byte_identical(tmp_path: Path) -> None:
    big = os.urandom(3 * (1 << 20) + 17)  # spans several read chunks
    entries = [
        ZipEntry(source(tmp_path, "users.csv", USERS), "users.csv"),
        ZipEntry(source(tmp_path, "courses.csv", COURSES), "courses.csv"),
        ZipEntry(source(tmp_path, "big.csv", big), "big.csv"),
        ZipEntry(source(tmp_path, "empty.csv", b""), "empty.csv"),
    ]

    built = build_zip(entries, tmp_path / "upload.zip")

    with zipfile.ZipFile(built.path) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == ["users.csv", "courses.csv", "big.csv", "empty.csv"]
        assert archive.read("users.csv") == USERS
        assert archive.read("courses.csv") == COURSES
        assert archive.read("big.csv") == big
        assert archive.read("empty.csv") == b""
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in archive.infolist())


def test_build_zip_records_each_source(tmp_path: Path) -> None:
    entries = [ZipEntry(source(tmp_path, "users.csv", USERS), "users.csv")]
    built = build_zip(entries, tmp_path / "upload.zip")
    [digest] = built.sources
    assert (digest.name, digest.bytes, digest.sha256) == ("users.csv", len(USERS), sha(USERS))
    assert not digest.bom_stripped


def test_build_zip_sha256_and_bytes_match_the_file_on_disk(tmp_path: Path) -> None:
    entries = [
        ZipEntry(source(tmp_path, "users.csv", USERS), "users.csv"),
        ZipEntry(source(tmp_path, "noise.csv", os.urandom(200_000)), "noise.csv"),
    ]
    target = tmp_path / "upload.zip"

    built = build_zip(entries, target)

    assert built.path == target
    assert built.bytes == target.stat().st_size
    assert built.sha256 == sha(target.read_bytes())
    assert built.sha256 == file_sha256(target)
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(shutil.which("unzip") is None, reason="unzip is not installed")
def test_build_zip_passes_unzip_test(tmp_path: Path) -> None:
    entries = [
        ZipEntry(source(tmp_path, "users.csv", USERS), "users.csv"),
        ZipEntry(source(tmp_path, "courses.csv", COURSES), "courses.csv"),
        ZipEntry(source(tmp_path, "big.csv", os.urandom(1 << 21)), "big.csv"),
    ]
    built = build_zip(entries, tmp_path / "upload.zip")

    result = subprocess.run(
        ["unzip", "-t", str(built.path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No errors detected" in result.stdout


def test_build_zip_strip_bom_changes_the_copy_only(tmp_path: Path) -> None:
    original = BOM + USERS
    path = source(tmp_path, "users.csv", original)

    built = build_zip([ZipEntry(path, "users.csv", strip_bom=True)], tmp_path / "upload.zip")

    with zipfile.ZipFile(built.path) as archive:
        assert archive.read("users.csv") == USERS
    [digest] = built.sources
    assert digest.bom_stripped
    assert digest.bytes == len(original)
    assert digest.sha256 == sha(original)
    assert path.read_bytes() == original


def test_build_zip_strip_bom_without_a_bom_copies_as_is(tmp_path: Path) -> None:
    path = source(tmp_path, "users.csv", USERS)
    built = build_zip([ZipEntry(path, "users.csv", strip_bom=True)], tmp_path / "upload.zip")
    with zipfile.ZipFile(built.path) as archive:
        assert archive.read("users.csv") == USERS
    assert not built.sources[0].bom_stripped


def test_build_zip_keeps_the_bom_unless_asked(tmp_path: Path) -> None:
    path = source(tmp_path, "users.csv", BOM + USERS)
    built = build_zip([ZipEntry(path, "users.csv")], tmp_path / "upload.zip")
    with zipfile.ZipFile(built.path) as archive:
        assert archive.read("users.csv") == BOM + USERS
    assert not built.sources[0].bom_stripped


def test_build_zip_strips_only_a_leading_bom(tmp_path: Path) -> None:
    data = USERS + BOM + b"u2,x@y.edu,X,Y,x@y.edu,active\n"
    path = source(tmp_path, "users.csv", data)
    built = build_zip([ZipEntry(path, "users.csv", strip_bom=True)], tmp_path / "upload.zip")
    with zipfile.ZipFile(built.path) as archive:
        assert archive.read("users.csv") == data


def test_build_zip_missing_source_raises_and_leaves_no_partial(tmp_path: Path) -> None:
    entries = [
        ZipEntry(source(tmp_path, "users.csv", USERS), "users.csv"),
        ZipEntry(tmp_path / "gone.csv", "gone.csv"),
    ]
    target = tmp_path / "upload.zip"

    with pytest.raises(SourceError) as caught:
        build_zip(entries, target)

    assert caught.value.name == "gone.csv"
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_build_zip_folder_as_source_raises_and_leaves_no_partial(tmp_path: Path) -> None:
    (tmp_path / "folder.csv").mkdir()
    target = tmp_path / "upload.zip"
    with pytest.raises(SourceError):
        build_zip([ZipEntry(tmp_path / "folder.csv", "folder.csv")], target)
    assert not target.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file whatever its mode")
def test_build_zip_unreadable_source_raises_and_leaves_no_partial(tmp_path: Path) -> None:
    path = source(tmp_path, "users.csv", USERS)
    path.chmod(0)
    target = tmp_path / "upload.zip"
    try:
        with pytest.raises(SourceError):
            build_zip([ZipEntry(path, "users.csv")], target)
    finally:
        path.chmod(0o600)
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_build_zip_target_folder_missing_raises_archive_error(tmp_path: Path) -> None:
    path = source(tmp_path, "users.csv", USERS)
    with pytest.raises(ArchiveError):
        build_zip([ZipEntry(path, "users.csv")], tmp_path / "missing" / "upload.zip")


def test_build_zip_source_with_an_mtime_before_1980(tmp_path: Path) -> None:
    # Files copied with their times kept can carry the epoch (touch -d @0, some SFTP
    # clients); the ZIP format cannot say 1970, but the batch must not fail for it.
    path = source(tmp_path, "users.csv", USERS)
    os.utime(path, (0, 0))
    target = tmp_path / "upload.zip"

    built = build_zip([ZipEntry(path, "users.csv")], target)

    assert leftovers(tmp_path) == []
    with zipfile.ZipFile(built.path) as archive:
        assert archive.read("users.csv") == USERS


def unzip_test(path: Path) -> None:
    """`unzip -t` finds no error in the ZIP at `path` (where unzip is installed)."""
    if shutil.which("unzip") is None:
        return
    result = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("engine", [DEFLATE, stdlib_deflate()], ids=lambda e: e.name)
def test_build_zip_writes_a_standard_zip_with_each_engine(tmp_path: Path, engine: Any) -> None:
    text = b"course_id,user_id,role,section_id,status\n" + b"C1,u1,student,S1,active\n" * 90_000
    entries = [
        ZipEntry(source(tmp_path, "enrollments.csv", text), "enrollments.csv"),
        ZipEntry(source(tmp_path, "noise.csv", os.urandom(archive.ZIP_CHUNK + 5)), "noise.csv"),
        ZipEntry(source(tmp_path, "empty.csv", b""), "empty.csv"),
        ZipEntry(source(tmp_path, "été.csv", USERS), "été.csv"),
    ]

    built = build_zip(entries, tmp_path / "upload.zip", engine=engine)

    with zipfile.ZipFile(built.path) as zipped:
        assert zipped.testzip() is None  # every entry's CRC-32 checked
        infos = zipped.infolist()
        assert [i.filename for i in infos] == [
            "enrollments.csv",
            "noise.csv",
            "empty.csv",
            "été.csv",
        ]
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in infos)
        assert [i.CRC for i in infos] == [zlib.crc32(e.source.read_bytes()) for e in entries]
        assert [i.file_size for i in infos] == [e.source.stat().st_size for e in entries]
        assert zipped.read("enrollments.csv") == text
        assert infos[0].compress_size < len(text) // 50
    unzip_test(built.path)


def test_build_zip_without_isal_falls_back_to_the_standard_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "isal", None)  # `import isal` now raises ImportError
    engine = fastest_deflate()
    assert engine.name.startswith("zlib ")
    assert engine.level == archive.STDLIB_LEVEL
    path = source(tmp_path, "users.csv", BOM + USERS * 1000)

    built = build_zip(
        [ZipEntry(path, "users.csv", strip_bom=True)], tmp_path / "a.zip", engine=engine
    )

    with zipfile.ZipFile(built.path) as zipped:
        assert zipped.read("users.csv") == USERS * 1000
    assert built.sources[0].sha256 == sha(BOM + USERS * 1000)
    unzip_test(built.path)


def test_fastest_deflate_is_isal_where_it_is_installed() -> None:
    pytest.importorskip("isal")
    engine = fastest_deflate()
    assert engine.name.startswith("python-isal ")
    assert engine.level == archive.ISAL_LEVEL


def test_build_zip_strips_a_bom_that_fills_a_whole_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "ZIP_CHUNK", 3)  # the first read is the BOM alone
    path = source(tmp_path, "users.csv", BOM + USERS)
    built = build_zip([ZipEntry(path, "users.csv", strip_bom=True)], tmp_path / "a.zip")
    with zipfile.ZipFile(built.path) as zipped:
        assert zipped.read("users.csv") == USERS
    assert (built.sources[0].bytes, built.sources[0].bom_stripped) == (len(BOM + USERS), True)


def test_build_zip_stops_when_asked_and_leaves_nothing(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    path = source(tmp_path, "users.csv", USERS)
    target = tmp_path / "upload.zip"
    with pytest.raises(ArchiveError, match="stopped"):
        build_zip([ZipEntry(path, "users.csv")], target, stop=stop)
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_build_zip_logs_its_engine_once(tmp_path: Path) -> None:
    archive._announce.cache_clear()
    path = source(tmp_path, "users.csv", USERS)
    with structlog.testing.capture_logs() as logs:
        build_zip([ZipEntry(path, "users.csv")], tmp_path / "a.zip")
        build_zip([ZipEntry(path, "users.csv")], tmp_path / "b.zip")
    engines = [e for e in logs if e["event"] == "zip_engine"]
    assert engines == [
        {"event": "zip_engine", "log_level": "info", "engine": DEFLATE.name, "level": DEFLATE.level}
    ]


@pytest.mark.parametrize("aside", [0, 1 << 30], ids=["hashed in a thread", "hashed in place"])
def test_build_zip_hashes_each_source_whole_over_many_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aside: int
) -> None:
    # Two buffers in turn: a chunk must be hashed before its buffer is read into again.
    monkeypatch.setattr(archive, "ZIP_CHUNK", 1000)
    monkeypatch.setattr(archive, "HASH_ASIDE_BYTES", aside)
    datas = [os.urandom(n) for n in (0, 999, 1000, 1001, 25_000, 77_777)]
    entries = [
        ZipEntry(source(tmp_path, f"f{i}.csv", BOM + d), f"f{i}.csv", strip_bom=True)
        for i, d in enumerate(datas)
    ]

    built = build_zip(entries, tmp_path / "a.zip")

    assert [s.sha256 for s in built.sources] == [hashlib.sha256(BOM + d).hexdigest() for d in datas]
    with zipfile.ZipFile(built.path) as zipped:
        assert zipped.testzip() is None
        assert [zipped.read(f"f{i}.csv") for i in range(len(datas))] == datas


def test_build_zip_syncs_in_the_background_as_it_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "SYNC_BYTES", 10_000)
    monkeypatch.setattr(archive, "ZIP_CHUNK", 4096)
    synced: list[str] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(threading.current_thread().name)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    data = os.urandom(300_000)  # incompressible: the ZIP is as large

    built = build_zip([ZipEntry(source(tmp_path, "a.csv", data), "a.csv")], tmp_path / "a.zip")

    assert synced and all(name.startswith("zip-sync") for name in synced)
    with zipfile.ZipFile(built.path) as zipped:
        assert zipped.read("a.csv") == data


# Measuring a ZIP without writing it


@pytest.mark.parametrize("engine", [DEFLATE, stdlib_deflate()], ids=["fastest", "stdlib"])
def test_measure_zip_gives_the_size_build_zip_writes_and_each_entrys(
    tmp_path: Path, engine: Any
) -> None:
    big = os.urandom(1 << 20) + USERS * 5000  # spans several read chunks
    entries = [
        ZipEntry(source(tmp_path, "users.csv", BOM + USERS), "users.csv", strip_bom=True),
        ZipEntry(source(tmp_path, "courses.csv", COURSES), "courses.csv"),
        ZipEntry(source(tmp_path, "big.csv", big), "big.csv"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())

    measured = measure_zip(entries, engine=engine)

    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing is written"
    built = build_zip(entries, tmp_path / "out.zip", engine=engine)
    assert measured.bytes == built.bytes == (tmp_path / "out.zip").stat().st_size
    with zipfile.ZipFile(built.path) as archive_file:
        compressed = [(i.filename, i.compress_size) for i in archive_file.infolist()]
    assert [(e.name, e.compressed) for e in measured.entries] == compressed
    assert [e.source for e in measured.entries] == ["users.csv", "courses.csv", "big.csv"]


def test_measure_zip_missing_source_raises_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError):
        measure_zip([ZipEntry(tmp_path / "gone.csv", "gone.csv")])


# --- the copy in the ZIP: UTF-8 from the group's encoding, message.properties escaped ------


def test_build_zip_converts_a_source_in_another_encoding_to_utf8(tmp_path: Path) -> None:
    original = "user_id,first_name\r\nu1,Renée\r\nu2,Zoë €\r\n".encode("cp1252")
    (tmp_path / "users.csv").write_bytes(original)
    entry = ZipEntry(tmp_path / "users.csv", "users.csv", strip_bom=True, encoding="cp1252")
    built = build_zip([entry], tmp_path / "out.zip")
    with zipfile.ZipFile(built.path) as z:
        assert z.read("users.csv") == original.decode("cp1252").encode("utf-8")
    (source,) = built.sources
    assert source.converted_from == "cp1252" and source.escaped == 0
    assert source.bytes == len(original)
    assert source.sha256 == hashlib.sha256(original).hexdigest()  # of the original
    assert (tmp_path / "users.csv").read_bytes() == original


def test_build_zip_does_not_call_ascii_a_conversion(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(b"user_id,listing_id\nu1,L1\n")
    built = build_zip([ZipEntry(tmp_path / "a.csv", "a.csv", encoding="cp1252")], tmp_path / "z")
    assert built.sources[0].converted_from == ""


@pytest.mark.parametrize(
    ("codec", "name", "bom"),
    [
        ("utf-16", "日本 Ümit", ""),  # the codec reads its own byte-order mark
        ("utf-16-le", "日本 Ümit", "\ufeff"),  # here the text holds it: it is taken off
        ("shift_jis", "日本", ""),
        ("latin-1", "Ümit", ""),
    ],
)
def test_build_zip_converts_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec: str, name: str, bom: str
) -> None:
    monkeypatch.setattr(archive, "ZIP_CHUNK", 7)
    text = "course_id,name\n" + f"C1,{name}\n" * 50
    (tmp_path / "c.csv").write_bytes((bom + text).encode(codec))
    entry = ZipEntry(tmp_path / "c.csv", "c.csv", strip_bom=True, encoding=codec)
    built = build_zip([entry], tmp_path / "out.zip")
    with zipfile.ZipFile(built.path) as z:
        assert z.read("c.csv") == text.encode("utf-8")
    assert built.sources[0].converted_from == codec
    assert built.sources[0].bom_stripped is bool(bom)


def test_build_zip_escapes_message_properties_as_java_reads_it(tmp_path: Path) -> None:
    original = "sender=a@b.edu\nsubject=Bienvenue\nbody=Café 🎵\n".encode()
    (tmp_path / "message.properties").write_bytes(original)
    entry = ZipEntry(tmp_path / "message.properties", "message.properties", escape_unicode=True)
    built = build_zip([entry], tmp_path / "out.zip")
    with zipfile.ZipFile(built.path) as z:
        copy = z.read("message.properties")
    assert copy == b"sender=a@b.edu\nsubject=Bienvenue\nbody=Caf\\u00e9 \\ud83c\\udfb5\n"
    (source,) = built.sources
    assert source.escaped == 2 and source.converted_from == ""
    assert (tmp_path / "message.properties").read_bytes() == original


def test_build_zip_escapes_message_properties_from_the_group_encoding(tmp_path: Path) -> None:
    (tmp_path / "m.properties").write_bytes("body=Café\n".encode("cp1252"))
    entry = ZipEntry(tmp_path / "m.properties", "m", encoding="cp1252", escape_unicode=True)
    built = build_zip([entry], tmp_path / "out.zip")
    with zipfile.ZipFile(built.path) as z:
        assert z.read("m") == b"body=Caf\\u00e9\n"
    assert (built.sources[0].converted_from, built.sources[0].escaped) == ("cp1252", 1)


def test_build_zip_refuses_a_source_that_no_longer_reads_in_its_encoding(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(b"a,b\n\x81\n")
    with pytest.raises(ArchiveError, match="does not read as cp1252 near byte 4"):
        build_zip([ZipEntry(tmp_path / "a.csv", "a.csv", encoding="cp1252")], tmp_path / "z")
    assert not (tmp_path / "z").exists()


# --- Zip64 from the local header on, exactly when an entry's copy passes 4 GiB ------------


def copy_size(entry: ZipEntry) -> int:
    with entry.source.open("rb") as raw:
        return archive._copy_size(entry, raw, os.fstat(raw.fileno()))


def test_copy_size_is_the_file_less_a_bom_stripped(tmp_path: Path) -> None:
    plain = source(tmp_path, "a.csv", BOM + USERS)
    assert copy_size(ZipEntry(plain, "a.csv")) == len(BOM + USERS)
    assert copy_size(ZipEntry(plain, "a.csv", strip_bom=True)) == len(USERS)


def test_copy_size_of_a_converted_copy_is_measured_where_it_may_pass_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = "user_id\r\nRenée,Müller\r\n".encode("cp1252") * 50
    entry = ZipEntry(source(tmp_path, "a.csv", data), "a.csv", encoding="cp1252")
    assert copy_size(entry) == 6 * len(data)  # far under 4 GiB: a bound does
    monkeypatch.setattr(archive, "DESCRIPTOR_LIMIT", len(data))
    assert copy_size(entry) == len(data.decode("cp1252").encode())  # measured: exact
    with entry.source.open("rb") as raw:
        archive._copy_size(entry, raw, os.fstat(raw.fileno()))
        assert raw.tell() == 0, "measuring left the file where it was"


def test_a_converted_copy_past_the_limit_is_zip64_and_one_under_it_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = "user_id\r\nRenée\r\n".encode("cp1252") * 50
    converted = len(data.decode("cp1252").encode())
    entry = ZipEntry(source(tmp_path, "a.csv", data), "a.csv", encoding="cp1252")
    for limit, zip64 in ((converted - 1, True), (converted, False)):
        monkeypatch.setattr(archive, "DESCRIPTOR_LIMIT", limit)
        monkeypatch.setattr(zipformat, "DESCRIPTOR_LIMIT", limit)
        built = build_zip([entry], tmp_path / f"{limit}.zip")
        local = built.path.read_bytes()[:30]
        assert (local[4], int.from_bytes(local[28:30], "little") > 0) == (
            (45, True) if zip64 else (20, False)
        )
