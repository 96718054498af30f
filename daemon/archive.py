"""Building a batch's ZIP: streamed from disk, hashed as it is written, never held in memory."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from daemon.errors import ArchiveError, os_reason

CHUNK = 1 << 20
BOM = b"\xef\xbb\xbf"
COMPRESSLEVEL = 6


@dataclass(frozen=True, slots=True)
class ZipEntry:
    """One file to put in the ZIP, from `source`, as `name`."""

    source: Path
    name: str
    strip_bom: bool = False


@dataclass(frozen=True, slots=True)
class SourceDigest:
    """What an original file held: its size and SHA-256 as dropped (BOM included)."""

    name: str
    bytes: int
    sha256: str
    bom_stripped: bool


@dataclass(frozen=True, slots=True)
class BuiltZip:
    path: Path
    bytes: int
    sha256: str
    sources: tuple[SourceDigest, ...]


class _HashingWriter:
    """A write-only file that hashes and counts what passes through it.

    Being unseekable makes zipfile write each entry once, with a data descriptor, so the
    hash comes in the same pass as the compression.
    """

    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._hash = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.count += len(data)
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def build_zip(entries: list[ZipEntry], target: Path) -> BuiltZip:
    """Write `entries` into a new ZIP at `target` (through a temporary name).

    Raises ArchiveError if a source cannot be read or the ZIP cannot be written.
    """
    partial = target.with_name(target.name + ".partial")
    try:
        writer = _HashingWriter(partial)
        try:
            with zipfile.ZipFile(
                writer, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESSLEVEL
            ) as archive:
                sources = tuple(_add(archive, entry) for entry in entries)
        finally:
            writer.close()
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        reason = os_reason(exc) if isinstance(exc, OSError) else str(exc)
        raise ArchiveError(target, reason) from exc
    return BuiltZip(target, writer.count, writer.hexdigest(), sources)


def _add(archive: zipfile.ZipFile, entry: ZipEntry) -> SourceDigest:
    # One read of the original feeds both its digest and the compressor.
    # Files dated before 1980 (copied with their times kept) get the ZIP format's earliest date.
    info = zipfile.ZipInfo.from_file(entry.source, entry.name, strict_timestamps=False)
    info.compress_type = zipfile.ZIP_DEFLATED
    digest = hashlib.sha256()
    size = 0
    stripped = False
    with open_regular(entry.source) as source, archive.open(info, "w") as sink:
        chunk = source.read(CHUNK)
        digest.update(chunk)
        size += len(chunk)
        if entry.strip_bom and chunk.startswith(BOM):
            chunk, stripped = chunk[len(BOM) :], True
        while chunk:
            sink.write(chunk)
            chunk = source.read(CHUNK)
            digest.update(chunk)
            size += len(chunk)
    return SourceDigest(entry.name, size, digest.hexdigest(), stripped)


def open_regular(path: Path) -> BinaryIO:
    """Open a dropped file to read, never through a link, FIFO, socket or device.

    Raises OSError if `path` is a link (ELOOP) or not a regular file (EINVAL).
    """
    # O_NONBLOCK: opening a FIFO must not wait for a writer; the type check then refuses it.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open_regular(path) as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
