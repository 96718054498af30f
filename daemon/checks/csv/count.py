"""Counting the data rows and `deleted` rows of the CSVs inside a dropped ZIP, for the guard.

Validation counts both in the pass it makes anyway (`csvcheck`), but a dropped ZIP goes up
as it came and nothing else reads its rows, so this pass does, entry by entry, from the
stream, in chunks (memory stays flat). Runs of lines without a quote are counted in bulk
(`bytes.count` and one regular expression on the status column); from the first quote on,
the stdlib's CSV reader takes over, as a quoted field may hold commas and line ends.
Counted as the strict pass counts: a blank line is no row, and a status is `deleted`
whatever its case and the spaces around it.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from daemon.base.regular import open_regular
from daemon.checks.csv.formats import HEADERS

CHUNK_BYTES = 1 << 20
HEADER_BYTES = 1 << 20  # a header line longer than this is no known header
_BLANK = re.compile(rb"\n[ \t\r\f\v]*(?=\n)")
_MAYBE_BLANK = (b"\n\n", b"\n\r", b"\n ", b"\n\t", b"\n\f", b"\n\v")


@dataclass(frozen=True, slots=True)
class RowCount:
    """A CSV's kind, data rows and deleted rows (None where its header has no status)."""

    kind: str
    rows: int
    deleted: int | None


def zip_counts(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Data rows and deleted rows of each CSV in the ZIP at `path`, by entry name; what can
    be read of a ZIP that cannot (the server says what is wrong with it)."""
    rows: dict[str, int] = {}
    deleted: dict[str, int] = {}
    try:
        with open_regular(path) as source, zipfile.ZipFile(source) as archive:
            for info in archive.infolist():
                if info.is_dir() or not info.filename.lower().endswith(".csv"):
                    continue
                with archive.open(info) as entry:
                    counted = count_rows(entry)
                if counted is not None:
                    rows[info.filename] = counted.rows
                    if counted.deleted is not None:
                        deleted[info.filename] = counted.deleted
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, RuntimeError, NotImplementedError):
        pass  # encrypted, damaged or of an unknown method: zipcheck has refused most of these
    return rows, deleted


def count_rows(source: IO[bytes]) -> RowCount | None:
    """Count the rows of the CSV read from `source`; None if its header is none the server
    knows (then the server refuses it anyway).

    Raises OSError if the stream cannot be read.
    """
    first = source.readline(HEADER_BYTES)
    names = next(csv.reader([first.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace")]), [])
    kind = HEADERS.get(tuple(names))
    if kind is None:
        return None
    status = names.index("status") if "status" in names else None
    counter = _Counter(status)
    counter.count(_chunks(source))
    return RowCount(kind, counter.rows, counter.deleted if status is not None else None)


def _chunks(source: IO[bytes]) -> Iterator[bytes]:
    while chunk := source.read(CHUNK_BYTES):
        yield chunk


class _Counter:
    def __init__(self, status: int | None) -> None:
        self.status = status
        self.rows = self.deleted = 0
        # At a line's start: `status` columns, then the status alone up to its comma or end.
        skip = rb"(?:[^,\n]*+,){%d}" % (status or 0)
        self.pattern = re.compile(rb"\n" + skip + rb"[ \t\f\v]*+deleted[ \t\r\f\v]*+(?=[,\n])")

    def count(self, chunks: Iterator[bytes]) -> None:
        carry = b"\n"  # each run starts at the line end before its first line
        for chunk in chunks:
            data = carry + chunk
            end = data.rfind(b"\n")
            if b'"' in data[: end + 1]:
                self._by_reader(data[1:], chunks)
                return
            self._bulk(data[: end + 1])
            carry = data[end:]
        if len(carry) > 1:
            self._by_reader(carry[1:], chunks)

    def _bulk(self, run: bytes) -> None:
        """Count the lines of `run`, which begins and ends with a line end."""
        self.rows += run.count(b"\n") - 1
        if any(blank in run for blank in _MAYBE_BLANK):
            self.rows -= len(_BLANK.findall(run))
        if self.status is not None:
            self.deleted += len(self.pattern.findall(run.lower()))

    def _by_reader(self, start: bytes, rest: Iterator[bytes]) -> None:
        raw = _Joined(itertools.chain([start], rest))
        text = io.TextIOWrapper(io.BufferedReader(raw), "utf-8", errors="replace", newline="")
        try:
            for record in csv.reader(text, strict=False):
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue
                self.rows += 1
                if self.status is not None and len(record) > self.status:
                    self.deleted += record[self.status].strip().lower() == "deleted"
        except csv.Error:
            return  # a field past the reader's limit: no SIS row; count what came before


class _Joined(io.RawIOBase):
    """Chunks of bytes read as one stream."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self.left:
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.left = memoryview(chunk)
        size = min(len(buffer), len(self.left))
        buffer[:size] = self.left[:size]
        self.left = self.left[size:]
        return size
