"""The records of a ZIP file as dropd writes one (PKWARE's APPNOTE.TXT), in one pass.

Each entry is a local header, its deflated data (method 8), then a data descriptor with the
CRC-32 and sizes, which are known only once the data is written; the central directory and
the end record close the file.

The server reads an upload with Java's `ZipInputStream`, which decides how to read a data
descriptor from the entry itself: Java 17 reads the Zip64 one (8-byte sizes) only once the
entry's data passed 4 GiB, later Javas also where the local header holds a Zip64 field. So
an entry is written as Zip64 from its local header on exactly when its copy is larger than
4 GiB (`DESCRIPTOR_LIMIT`), which every Java reads alike; an entry of 2 to 4 GiB with a
Zip64 descriptor fails on Java 17 ("invalid entry size"). The central directory, which
`ZipInputStream` never reads, moves sizes and offsets past 2 GiB to Zip64 fields, as the
standard library's `zipfile` does (some readers take them as signed), and the archive gets
Zip64 end records when its entries, their count or the directory need them.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass

ZIP64_LIMIT = (1 << 31) - 1  # past it, the central directory's sizes and offsets are Zip64
DESCRIPTOR_LIMIT = 0xFFFFFFFF  # past it, an entry is Zip64 from its local header on
COUNT_LIMIT = 0xFFFF
DEFLATED = 8
_VERSION = 20  # what a deflated entry needs to be read
_ZIP64_VERSION = 45
_UNIX = 3  # "made by" a Unix system: the external attributes hold its file mode
_DESCRIPTOR_FLAG = 0x08
_UTF8_FLAG = 0x800
_ZIP64_EXTRA = 0x0001
_LOCAL = struct.Struct("<4s5H3L2H")
_DESCRIPTOR = struct.Struct("<4s3L")
_DESCRIPTOR64 = struct.Struct("<4sL2Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END64 = struct.Struct("<4sQ2H2L4Q")
_LOCATOR64 = struct.Struct("<4sLQL")
_END = struct.Struct("<4s4H2LH")


@dataclass(frozen=True, slots=True)
class Entry:
    """What an entry's headers say before its data: name, flags, time, mode, Zip64 or not."""

    name: bytes
    flags: int
    dos_time: int
    dos_date: int
    mode: int
    zip64: bool

    @classmethod
    def of(
        cls, name: str, stat: os.stat_result, *, size: int | None = None, force_zip64: bool = False
    ) -> Entry:
        """The entry for a file of `stat` stored as `name`, its copy `size` bytes (default:
        the file's size); Zip64 where the copy passes 4 GiB."""
        try:
            encoded, flags = name.encode("ascii"), _DESCRIPTOR_FLAG
        except UnicodeEncodeError:
            encoded, flags = name.encode("utf-8"), _DESCRIPTOR_FLAG | _UTF8_FLAG
        dos_time, dos_date = dos_moment(stat.st_mtime)
        copy = stat.st_size if size is None else size
        zip64 = force_zip64 or copy > DESCRIPTOR_LIMIT
        return cls(encoded, flags, dos_time, dos_date, stat.st_mode & 0xFFFF, zip64)

    @property
    def version(self) -> int:
        return _ZIP64_VERSION if self.zip64 else _VERSION


@dataclass(frozen=True, slots=True)
class Written:
    """An entry once its data is written: CRC-32, sizes, and where its local header is."""

    entry: Entry
    crc: int
    compressed: int
    size: int
    offset: int


def dos_moment(mtime: float) -> tuple[int, int]:
    """A file time as the ZIP format's local time and date, kept within 1980-2107."""
    moment = time.localtime(mtime)[:6]
    if moment[0] < 1980:  # files copied with their times kept can be older than the format
        moment = (1980, 1, 1, 0, 0, 0)
    elif moment[0] > 2107:
        moment = (2107, 12, 31, 23, 59, 59)
    year, month, day, hour, minute, second = moment
    return hour << 11 | minute << 5 | second // 2, (year - 1980) << 9 | month << 5 | day


def local_header(entry: Entry) -> bytes:
    """The record before an entry's data; CRC and sizes come after it, in its descriptor."""
    extra = struct.pack("<2H2Q", _ZIP64_EXTRA, 16, 0, 0) if entry.zip64 else b""
    fixed = _LOCAL.pack(
        *(b"PK\x03\x04", entry.version, entry.flags, DEFLATED, entry.dos_time, entry.dos_date),
        *(0, 0, 0, len(entry.name), len(extra)),
    )
    return fixed + entry.name + extra


def data_descriptor(written: Written) -> bytes:
    """The record after an entry's data. Raises ValueError if its sizes need Zip64 and
    its local header did not say so (the file grew while it was read, or its deflated
    data passed 4 GiB)."""
    if written.entry.zip64:
        return _DESCRIPTOR64.pack(b"PK\x07\x08", written.crc, written.compressed, written.size)
    if max(written.compressed, written.size) > DESCRIPTOR_LIMIT:
        raise ValueError(
            f"{written.entry.name.decode('utf-8', 'replace')!r} came to more than 4 GiB in the "
            "ZIP, where its local header said less (it grew while it was zipped, or its data "
            "does not compress)"
        )
    return _DESCRIPTOR.pack(b"PK\x07\x08", written.crc, written.compressed, written.size)


def central_record(written: Written) -> bytes:
    """An entry's record in the central directory, with a Zip64 extra where it needs one."""
    entry, large = written.entry, max(written.compressed, written.size) > ZIP64_LIMIT
    sizes = (0xFFFFFFFF, 0xFFFFFFFF) if large else (written.compressed, written.size)
    offset = 0xFFFFFFFF if written.offset > ZIP64_LIMIT else written.offset
    values = [written.size, written.compressed] if large else []
    values += [written.offset] if written.offset > ZIP64_LIMIT else []
    extra = struct.pack(f"<2H{len(values)}Q", _ZIP64_EXTRA, 8 * len(values), *values)
    extra = extra if values else b""
    version = _ZIP64_VERSION if values else entry.version
    fixed = _CENTRAL.pack(
        *(b"PK\x01\x02", _UNIX << 8 | version, version, entry.flags, DEFLATED),
        *(entry.dos_time, entry.dos_date, written.crc, *sizes),
        *(len(entry.name), len(extra), 0, 0, 0, entry.mode << 16, offset),
    )
    return fixed + entry.name + extra


def end_records(count: int, directory_size: int, directory_offset: int) -> bytes:
    """What follows the central directory: Zip64 end records where needed, the end record.

    A figure past its limit reads 0xFFFF(FFFF) in the end record, which tells a reader
    (unzip among them) to take it from the Zip64 record.
    """
    records = b""
    large = (count > COUNT_LIMIT, directory_size > ZIP64_LIMIT, directory_offset > ZIP64_LIMIT)
    if any(large):
        records = _END64.pack(
            *(b"PK\x06\x06", _END64.size - 12, _UNIX << 8 | _ZIP64_VERSION, _ZIP64_VERSION),
            *(0, 0, count, count, directory_size, directory_offset),
        )
        records += _LOCATOR64.pack(b"PK\x06\x07", 0, directory_offset + directory_size, 1)
    entries = 0xFFFF if large[0] else count
    return records + _END.pack(
        *(b"PK\x05\x06", 0, 0, entries, entries),
        *(0xFFFFFFFF if large[1] else directory_size, 0xFFFFFFFF if large[2] else directory_offset),
        0,
    )
