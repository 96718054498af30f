"""Tests of the ZIP records dropd writes (daemon/zipformat.py), Zip64 included.

A ZIP past 2 GiB takes minutes to write, so the Zip64 paths are proven two ways: the
records' fields are read back with `struct`, and whole ZIPs are written with the limit
lowered to a few bytes, then read by the standard library and by `unzip -t`.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest

from daemon.archive import zipformat
from daemon.archive.writer import ZipEntry, build_zip
from daemon.archive.zipformat import (
    Entry,
    Written,
    central_record,
    data_descriptor,
    dos_moment,
    end_records,
    local_header,
)

GIB = 1 << 30


def stat_of(size: int, mtime: float = 1_750_000_000.0) -> os.stat_result:
    # mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime
    return os.stat_result((0o100640, 1, 1, 1, 0, 0, size, mtime, mtime, mtime))


def test_entry_of_a_plain_name_and_size() -> None:
    entry = Entry.of("users.csv", stat_of(1000))
    assert (entry.name, entry.flags, entry.zip64, entry.version) == (b"users.csv", 0x08, False, 20)
    assert entry.mode == 0o100640


def test_entry_of_a_utf8_name_sets_the_language_flag() -> None:
    entry = Entry.of("élèves.csv", stat_of(10))
    assert entry.name == "élèves.csv".encode()
    assert entry.flags == 0x808


@pytest.mark.parametrize(
    ("size", "zip64"),
    [(2_100_000_000, False), (0xFFFFFFFF, False), (0x100000000, True), (5 * GIB, True)],
)
def test_entry_is_zip64_exactly_when_its_copy_passes_4_gib(size: int, zip64: bool) -> None:
    # Java 17's ZipInputStream reads a Zip64 descriptor only past 4 GiB of data: an entry of
    # 2 to 4 GiB written as Zip64 fails there ("invalid entry size").
    entry = Entry.of("big.csv", stat_of(size))
    assert (entry.zip64, entry.version) == (zip64, 45 if zip64 else 20)
    assert Entry.of("big.csv", stat_of(10), size=size).zip64 is zip64  # the copy's size


def test_dos_moment_keeps_within_the_formats_years() -> None:
    assert dos_moment(0) == (0, 1 << 5 | 1)  # 1980-01-01 00:00:00
    _, date = dos_moment(10_000_000_000)  # year 2286
    assert date >> 9 == 2107 - 1980


def test_local_header_of_a_zip64_entry_holds_the_zip64_extra() -> None:
    header = local_header(Entry.of("big.csv", stat_of(5 * GIB)))
    fields = struct.unpack("<4s5H3L2H", header[:30])
    assert fields[0] == b"PK\x03\x04"
    assert fields[1:4] == (45, 0x08, 8)  # version, flags (data descriptor), deflate
    assert fields[6:9] == (0, 0, 0)  # CRC and sizes: in the data descriptor
    assert header[30:37] == b"big.csv"
    assert struct.unpack("<2H2Q", header[37:]) == (1, 16, 0, 0)


def test_data_descriptor_sizes_are_8_bytes_for_zip64() -> None:
    written = Written(Entry.of("big.csv", stat_of(5 * GIB)), 0xDEADBEEF, 3 * GIB, 5 * GIB, 0)
    assert struct.unpack("<4sL2Q", data_descriptor(written)) == (
        b"PK\x07\x08",
        0xDEADBEEF,
        3 * GIB,
        5 * GIB,
    )
    small = Written(Entry.of("a.csv", stat_of(10)), 7, 5, 10, 0)
    assert struct.unpack("<4s3L", data_descriptor(small)) == (b"PK\x07\x08", 7, 5, 10)


def test_data_descriptor_refuses_an_entry_past_4_gib_its_header_did_not_announce() -> None:
    grown = Written(Entry.of("a.csv", stat_of(10)), 7, 3 * GIB, 5 * GIB, 0)
    with pytest.raises(ValueError, match="came to more than 4 GiB in the ZIP"):
        data_descriptor(grown)
    between = Written(Entry.of("a.csv", stat_of(3 * GIB)), 7, GIB, 3 * GIB, 0)
    assert struct.unpack("<4s3L", data_descriptor(between)) == (b"PK\x07\x08", 7, GIB, 3 * GIB)


def test_central_record_of_a_large_entry_far_in_moves_sizes_and_offset_to_zip64() -> None:
    written = Written(Entry.of("big.csv", stat_of(5 * GIB)), 1, 3 * GIB, 5 * GIB, 6 * GIB)
    record = central_record(written)
    fields = struct.unpack("<4s6H3L5H2L", record[:46])
    assert fields[1:3] == (3 << 8 | 45, 45)
    assert fields[8:10] == (0xFFFFFFFF, 0xFFFFFFFF)  # compressed, uncompressed
    assert fields[15] == 0o100640 << 16
    assert fields[16] == 0xFFFFFFFF  # offset
    name_length, extra_length = fields[10:12]
    extra = record[46 + name_length :]
    assert len(extra) == extra_length
    assert struct.unpack("<2H3Q", extra) == (1, 24, 5 * GIB, 3 * GIB, 6 * GIB)


def test_central_record_of_a_small_entry_far_in_holds_only_its_offset() -> None:
    written = Written(Entry.of("a.csv", stat_of(10)), 1, 5, 10, 3 * GIB)
    record = central_record(written)
    assert struct.unpack("<2L", record[20:28]) == (5, 10)
    assert struct.unpack("<2HQ", record[46 + len(b"a.csv") :]) == (1, 8, 3 * GIB)


def test_central_record_of_a_small_entry_has_no_extra() -> None:
    record = central_record(Written(Entry.of("a.csv", stat_of(10)), 1, 5, 10, 100))
    assert len(record) == 46 + len(b"a.csv")


def test_end_records_past_the_limits_are_zip64() -> None:
    records = end_records(70_000, 3 * GIB, 5 * GIB)
    end64 = struct.unpack("<4sQ2H2L4Q", records[:56])
    assert end64[0] == b"PK\x06\x06"
    assert end64[1] == 44
    assert end64[6:] == (70_000, 70_000, 3 * GIB, 5 * GIB)
    assert struct.unpack("<4sLQL", records[56:76]) == (b"PK\x06\x07", 0, 8 * GIB, 1)
    end = struct.unpack("<4s4H2LH", records[76:])
    assert end == (b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)


def test_end_records_within_the_limits_are_the_plain_end_record() -> None:
    assert struct.unpack("<4s4H2LH", end_records(3, 200, 1000)) == (
        b"PK\x05\x06",
        0,
        0,
        3,
        3,
        200,
        1000,
        0,
    )


def test_a_whole_zip64_archive_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every limit lowered: each entry is Zip64, each offset past it, and three entries
    # are more than the count allows, so every Zip64 record is written for real.
    monkeypatch.setattr(zipformat, "ZIP64_LIMIT", 1000)
    monkeypatch.setattr(zipformat, "COUNT_LIMIT", 2)
    datas = [os.urandom(5000), b"a,b\n" * 3000, b""]
    entries = []
    for number, data in enumerate(datas):
        path = tmp_path / f"f{number}.csv"
        path.write_bytes(data)
        entries.append(ZipEntry(path, path.name))

    built = build_zip(entries, tmp_path / "zip64.zip")

    assert b"PK\x06\x06" in built.path.read_bytes()[-200:]
    with zipfile.ZipFile(built.path) as zipped:
        assert zipped.testzip() is None
        infos = zipped.infolist()
        assert [zipped.read(i) for i in infos] == datas
        assert [i.CRC for i in infos] == [zlib.crc32(d) for d in datas]
        assert infos[2].header_offset > 1000
    if shutil.which("unzip"):
        tested = subprocess.run(
            ["unzip", "-t", str(built.path)], capture_output=True, text=True, check=False
        )
        assert tested.returncode == 0, tested.stdout + tested.stderr
