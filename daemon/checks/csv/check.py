"""Reading one CSV as the server would, in chunks: encoding, header, field counts, values.

A file is never held whole: it is read `CHUNK_BYTES` at a time. Here each chunk's bytes
are checked as text (UTF-8, no NUL byte), and its whole lines go as one run to `csvrows`,
which checks the header and the rows. A large file may be read with a helper process's
help (`csvsplit`), with the same findings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Protocol

from daemon.base.regular import open_regular
from daemon.checks.csv.rows import CsvScan, Notes, RowReader

CHUNK_BYTES = 256 << 10
HEADER_READ_BYTES = 16 << 10  # a header line is a few hundred bytes at most


class Splitter(Protocol):
    """Reads the rest of a large CSV with help from another core (`csvsplit`)."""

    def wanted(self, size: int) -> bool: ...
    def read_rest(self, reader: CsvReader, source: BinaryIO, size: int) -> None: ...


def scan_csv(path: Path, strict: bool, splitter: Splitter | None = None) -> CsvScan:
    """Read the CSV at `path` as the server would; not `strict`: its encoding and kind only.

    With `splitter`, a large CSV's rows may be read in part by another process, with the
    same findings and counts.

    Raises OSError if it cannot be read.
    """
    reader = CsvReader(path, strict)
    with open_regular(path) as source:
        chunk = source.read(CHUNK_BYTES)
        if _not_text(chunk, reader.scan.problems):
            return reader.scan
        reader.feed(chunk)
        size = os.fstat(source.fileno()).st_size
        if splitter is not None and reader.checking_rows() and splitter.wanted(size):
            splitter.read_rest(reader, source, size)
        else:
            reader.read(source)
    reader.finish()
    return reader.scan


class CsvReader:
    """One CSV read in order, chunk by chunk: its encoding, its header, its rows."""

    def __init__(self, path: Path, strict: bool) -> None:
        self.path, self.scan = path, CsvScan()
        self._encoding, self._rows = (
            _Encoding(path, self.scan.problems),
            RowReader(self.scan, strict),
        )

    def feed(self, chunk: bytes) -> None:
        self._encoding.feed(chunk)
        self._rows.feed(chunk)

    def read(self, source: BinaryIO, left: int | None = None) -> None:
        """Feed what `source` holds from where it is: all of it, or `left` bytes."""
        while left is None or left > 0:
            chunk = source.read(CHUNK_BYTES if left is None else min(CHUNK_BYTES, left))
            if not chunk:
                return
            self.feed(chunk)
            left = None if left is None else left - len(chunk)

    def finish(self) -> None:
        self._encoding.finish()
        self._rows.finish()

    def checking_rows(self) -> bool:
        """True while rows are being checked: strict, a known header, not stopped."""
        rows = self._rows
        return rows.strict and rows.header_read and rows.width > 0 and not rows.stopped

    def between_rows(self) -> bool:
        """True where the next byte starts a row, with nothing pending: a stretch read on
        its own from here (`skip`) reads as it would in order."""
        rows, encoding = self._rows, self._encoding
        return (
            rows.carry == b"\n"
            and rows.record is None
            and rows.blank is None
            and not rows.stopped
            and not encoding.pending
        )

    def skip(self, size: int, lines: int, rows: int, deleted: int) -> None:
        """Count in a stretch of `size` bytes read elsewhere and found clean."""
        self._encoding.offset += size
        self._rows.line += lines
        self.scan.rows += rows
        if self.scan.deleted is not None:
            self.scan.deleted += deleted

    @property
    def line(self) -> int:
        """The number of the next line."""
        return self._rows.line


def csv_kind(path: Path) -> str | None:
    """The kind `scan_csv` finds for the CSV at `path`, from its header line alone; None
    where it has none, or the file cannot be read (`scan_csv` says why)."""
    scan = CsvScan()
    rows = RowReader(scan, strict=False)  # not strict: it stops after the header line
    try:
        with open_regular(path) as source:
            chunk = source.read(HEADER_READ_BYTES)
            if _not_text(chunk, scan.problems):
                return None
            while chunk and not rows.stopped:
                rows.feed(chunk)
                chunk = source.read(HEADER_READ_BYTES)
    except OSError:
        return None
    rows.finish()
    return scan.kind


def _not_text(first: bytes, problems: Notes) -> bool:
    if not first:
        problems.add(None, "the file is empty; the server needs at least its header line")
    elif first.startswith((b"\xff\xfe", b"\xfe\xff")):
        problems.add(None, 'the file is UTF-16; save it as UTF-8 (in Excel: "CSV UTF-8")')
    elif first.startswith(b"PK\x03\x04"):
        problems.add(None, 'the file is a ZIP or an Excel workbook; export it as "CSV UTF-8"')
    else:
        return False
    return True


def _line_at(path: Path, offset: int) -> int:
    """The number of the line holding byte `offset` (read again: only when reporting)."""
    line = 1
    with open_regular(path) as source:
        while offset > 0 and (chunk := source.read(min(CHUNK_BYTES, offset))):
            line, offset = line + chunk.count(b"\n"), offset - len(chunk)
    return line


class _Encoding:
    """The first byte that is not UTF-8 and the first NUL byte, over raw chunks."""

    def __init__(self, path: Path, problems: Notes) -> None:
        self.path, self.problems = path, problems
        self.offset = 0  # of the next chunk in the file
        self.pending = b""  # the start of a character the last chunk cut
        self.utf8 = self.nul = True  # not yet reported

    def feed(self, chunk: bytes) -> None:
        if self.nul and b"\0" in chunk:
            self.nul = False
            line = _line_at(self.path, self.offset + chunk.index(b"\0"))
            self.problems.add(
                line,
                f"line {line} holds a NUL byte; the file is binary or damaged: export it "
                "again as CSV",
                always=True,
            )
        data = self.pending + chunk if self.pending else chunk
        start, self.pending = self.offset - len(self.pending), b""
        self.offset += len(chunk)
        if self.utf8 and not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                if exc.reason == "unexpected end of data" and exc.end == len(data):
                    self.pending = data[exc.start :]
                else:
                    self._report(data, exc.start, start)

    def finish(self) -> None:
        if self.utf8 and self.pending:
            self._report(self.pending, 0, self.offset - len(self.pending))

    def _report(self, data: bytes, index: int, start: int) -> None:
        self.utf8 = False
        line = _line_at(self.path, start + index)
        before = data[max(data.rfind(b"\n", 0, index) + 1, index - 30) : index]
        after = f' after "{before.decode("utf-8", "replace")}"' if before.strip() else ""
        self.problems.add(
            line,
            f"line {line} is not valid UTF-8 (byte 0x{data[index]:02X}{after}); save the "
            'file as UTF-8 (in Excel: "CSV UTF-8")',
            always=True,
        )
