"""Reading an uploaded ZIP as the server does: Java's `ZipInputStream`, from the first byte.

`ZipInputStream` never looks at the central directory: it reads one local header after
another from the start of the stream and stops at the first bytes that are not one. So a
ZIP behind a stub (a self-extractor, a script) has no entries for it, where Python's
`zipfile`, reading from the end, finds them all. It also refuses what it cannot read
without sizes up front: a stored entry with a data descriptor. Every entry's data is read
through (the server reads skipped entries too, to reach the next header), so a broken one
fails the whole ZIP.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["MalformedName", "StreamEntry", "ZipStreamError", "entries"]

_LOCAL = b"PK\x03\x04"
_DESCRIPTOR = 0x08074B50
_HEADER = struct.Struct("<4sHHHIIIIHH")  # signature ... name length, extra length
_STORED, _DEFLATED = 0, 8
_ENCRYPTED, _HAS_DESCRIPTOR = 0x1, 0x8
_ZIP64_TAG = 0x0001
_MAGIC32 = 0xFFFFFFFF


class ZipStreamError(Exception):
    """Where `ZipInputStream` throws an IOException (a ZipException, an EOFException)."""


class MalformedName(Exception):
    """An entry name that is not UTF-8: Java throws IllegalArgumentException, not caught."""


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One entry as `getNextEntry` gives it, with the bytes `read` gives for it."""

    name: str
    data: bytes

    @property
    def is_directory(self) -> bool:
        return self.name.endswith("/")


def entries(data: bytes) -> Iterator[StreamEntry]:
    """The entries of `data` in stream order, each read through before the next is read.

    Raises ZipStreamError or MalformedName where Java would throw, once the entries before
    have been given.
    """
    position = 0
    while True:
        header = data[position : position + _HEADER.size]
        if len(header) < _HEADER.size or not header.startswith(_LOCAL):
            return  # `readLOC`: end of stream or no local header -> no more entries
        _, _, flags, method, _, crc, csize, size, name_size, extra_size = _HEADER.unpack(header)
        position += _HEADER.size
        raw_name = _exactly(data, position, name_size)
        position += name_size
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedName(f"malformed entry name {raw_name!r}") from exc
        if flags & _ENCRYPTED:
            raise ZipStreamError("encrypted ZIP entry not supported")
        descriptor = bool(flags & _HAS_DESCRIPTOR)
        if descriptor and method != _DEFLATED:
            raise ZipStreamError(f"{name}: only DEFLATED entries can have EXT descriptor")
        extra = _exactly(data, position, extra_size)
        position += extra_size
        if not descriptor and _MAGIC32 in (csize, size):
            size, csize = _zip64_sizes(extra, size, csize)
        if method == _STORED:
            content = _exactly(data, position, size) if size else b""
            position += size
            if size and zlib.crc32(content) != crc:
                raise ZipStreamError(f"{name}: invalid entry CRC")
        elif method == _DEFLATED:
            content, used = _inflate(data, position, name)
            position += used
            if descriptor:
                crc, csize, size, width = _read_descriptor(data, position, content, used)
                position += width
            if (size, csize, crc) != (len(content), used, zlib.crc32(content)):
                raise ZipStreamError(f"{name}: invalid entry size, compressed size or CRC")
        else:
            raise ZipStreamError(f"{name}: invalid compression method")
        yield StreamEntry(name, content)


def _exactly(data: bytes, position: int, size: int) -> bytes:
    piece = data[position : position + size]
    if len(piece) < size:
        raise ZipStreamError("unexpected end of ZIP stream")
    return piece


def _zip64_sizes(extra: bytes, size: int, csize: int) -> tuple[int, int]:
    """A local header's Zip64 field gives both sizes (Java reads them only when 16 bytes)."""
    at = 0
    while at + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, at)
        if tag == _ZIP64_TAG and length >= 16 and at + 4 + 16 <= len(extra):
            return struct.unpack_from("<QQ", extra, at + 4)
        at += 4 + length
    return size, csize


def _inflate(data: bytes, position: int, name: str) -> tuple[bytes, int]:
    """The entry's inflated bytes and how many compressed bytes the deflate stream took."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        content = inflater.decompress(data[position:])
    except zlib.error as exc:
        raise ZipStreamError(f"{name}: {exc}") from exc
    if not inflater.eof:
        raise ZipStreamError("Unexpected end of ZLIB input stream")
    return content, len(data) - position - len(inflater.unused_data)


def _read_descriptor(
    data: bytes, position: int, content: bytes, used: int
) -> tuple[int, int, int, int]:
    """CRC, compressed and full size from a data descriptor, and its width in bytes."""
    if len(content) > _MAGIC32 or used > _MAGIC32:  # Zip64: sizes of 8 bytes
        fields, formats = _exactly(data, position, 24), ("<IQQ", 4, 20)
    else:
        fields, formats = _exactly(data, position, 16), ("<III", 4, 12)
    layout, skip, width = formats
    if struct.unpack_from("<I", fields)[0] == _DESCRIPTOR:
        crc, csize, size = struct.unpack_from(layout, fields, skip)
        return crc, csize, size, width + 4
    crc, csize, size = struct.unpack_from(layout, fields)  # a descriptor without signature
    return crc, csize, size, width
