"""Reading a CSV's rows as the server would: the header line, field counts, values.

Lines come in runs of whole lines (a chunk's, from `csvcheck`). `csvfast` clears a run in
bulk where it can; what it does not clear is read here line by line, RFC 4180 style
(quoted fields hold commas, doubled quotes and line ends), to say exactly which line is
wrong. Line numbers are physical lines, the header being line 1; a row that spans lines is
numbered by its first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from daemon.base.regular import BOM
from daemon.checks.csv import fast as csvfast
from daemon.checks.csv.fast import FastChecks
from daemon.checks.csv.formats import HEADERS, ValueRule, header_complaint, value_rules
from daemon.checks.csv.quoted import split_record

LONG_LINE_BYTES = 1 << 20  # a line (or quoted field) longer than this is no SIS row
MAX_NOTES = 20  # findings listed per file and sort; the rest are counted
SPLIT_BYTES = 4096  # a run the bulk checks refuse is halved down to this, then read by line

Note = tuple[int | None, str]


@dataclass(slots=True)
class Notes:
    """Findings of one sort in one file: the first MAX_NOTES, and how many more."""

    listed: list[Note] = field(default_factory=list)
    more: int = 0

    def add(self, line: int | None, message: str, *, always: bool = False) -> None:
        if always or len(self.listed) < MAX_NOTES:
            self.listed.append((line, message))
        else:
            self.more += 1


@dataclass(slots=True)
class CsvScan:
    """What reading one CSV found; `deleted` is None where the header has no status."""

    problems: Notes = field(default_factory=Notes)
    warnings: Notes = field(default_factory=Notes)
    kind: str | None = None
    bom: bool = False
    rows: int = 0
    deleted: int | None = None


@dataclass(slots=True)
class _Record:
    """A row whose quoted field runs over more than one line."""

    start: int
    parts: list[bytes]
    quotes: int
    size: int


class RowReader:
    """The header line, then each row's field count and checked values."""

    def __init__(self, scan: CsvScan, strict: bool) -> None:
        self.scan, self.strict = scan, strict
        self.carry = b""  # a line not yet ended (after the header: from the last "\n" on)
        self.header_read = self.stopped = False
        self.line = 1  # the number of the next line
        self.width = 0
        self.rules: tuple[ValueRule, ...] = ()
        self.status: int | None = None
        self.fast = FastChecks(1, (), None)
        self.record: _Record | None = None  # a quoted field still open at a line end
        self.blank: int | None = None  # a blank line that may yet be the last

    def feed(self, chunk: bytes) -> None:
        if self.stopped:
            return
        first, last = chunk.find(b"\n"), chunk.rfind(b"\n")
        if first < 0:
            self.carry += chunk
            if len(self.carry) > LONG_LINE_BYTES:
                self._stop(f"runs for over {LONG_LINE_BYTES:,} bytes without a line end")
            return
        ended = self.carry + chunk[:first]  # the line the carry began, up to its end
        self.carry = chunk[last:]
        if self.header_read:
            self._lines(ended + b"\n", 0, len(ended) + 1)
        else:
            self._header(ended)
        if last > first and not self.stopped:
            self._lines(chunk, first, last + 1)  # checked in place: no copy of the chunk

    def finish(self) -> None:
        unended = len(self.carry) > (1 if self.header_read else 0)  # after "\n" if read
        if unended and not self.stopped:
            self.feed(b"\n")  # the last line has no line end
        if self.record is not None and not self.stopped:
            start = self.record.start
            self.scan.problems.add(
                start,
                f"line {start} opens a quoted field that is never closed, and the server "
                'fails on that; close the quote, or double it ("") where it belongs in '
                "the value",
            )

    def _stop(self, why: str) -> None:
        self.stopped = True
        if self.strict:
            self.scan.problems.add(self.line, f"line {self.line} {why}; is this a CSV file?")

    def _header(self, raw: bytes) -> None:
        self.header_read, self.line = True, 2
        if raw.startswith(BOM):
            self.scan.bom, raw = True, raw[len(BOM) :]
        text = raw.removesuffix(b"\r")
        fields = split_record(text) if text.count(b'"') % 2 == 0 else text.split(b",")
        names = tuple(f.decode("utf-8", "replace") for f in fields)
        self.scan.kind = HEADERS.get(names)
        if self.strict and self.scan.kind is None:
            self.scan.problems.add(1, header_complaint(text.decode("utf-8", "replace"), names))
        if not self.strict or self.scan.kind is None:
            self.stopped = True  # rows measured against an unknown header say nothing
            return
        self.rules = value_rules(self.scan.kind, names)
        self.status = names.index("status") if "status" in names else None
        self.scan.deleted = None if self.status is None else 0
        self.width = len(names)
        self.fast = FastChecks(self.width, self.rules, csvfast.ROWSCAN)

    def _lines(self, data: bytes, start: int, end: int) -> None:
        """Check the whole lines of `data[start:end]`, from its first "\\n" to its last."""
        cleared = None if self.record is not None else self.fast.run(data, start, end)
        if cleared is None:
            middle = data.rfind(b"\n", start + 1, (start + end) // 2)
            if end - start > SPLIT_BYTES and middle > start and self.record is None:
                self._lines(data, start, middle + 1)  # halves: one bad line spoils less
                self._lines(data, middle, end)
            else:
                self._one_by_one(data[start:end].split(b"\n")[1:-1])
            return
        self._flush_blank()
        for index, line in cleared.odd:
            self._values(self.line + index, split_record(line.removesuffix(b"\r")))
        self.scan.rows, self.line = self.scan.rows + cleared.lines, self.line + cleared.lines
        if self.scan.deleted is not None:
            self.scan.deleted += cleared.deleted

    def _one_by_one(self, lines: list[bytes]) -> None:
        for line in lines:
            if self.record is not None:
                self._continue(line)
            else:
                self._line(line)
            if self.stopped:
                return
            self.line += 1

    def _line(self, line: bytes) -> None:
        text = line.removesuffix(b"\r")
        if not text.strip():
            self._flush_blank()
            self.blank = self.line
            return
        self._flush_blank()
        quotes = text.count(b'"')
        if quotes % 2:
            self.record = _Record(self.line, [line], quotes, len(line))
        else:
            self._row(self.line, split_record(text) if quotes else text.split(b","))

    def _continue(self, line: bytes) -> None:
        record = self.record
        assert record is not None
        record.parts.append(line)
        record.quotes, record.size = record.quotes + line.count(b'"'), record.size + len(line)
        if record.quotes % 2 == 0:
            self.record = None
            self._row(record.start, split_record(b"\n".join(record.parts).removesuffix(b"\r")))
        elif record.size > LONG_LINE_BYTES:
            self.line = record.start
            self._stop(f"opens a quoted field still open {LONG_LINE_BYTES:,} bytes later")

    def _row(self, first: int, fields: list[bytes]) -> None:
        """A row read alone, from line `first` to the current line."""
        self.scan.rows += 1
        if len(fields) == self.width:
            self._values(first, fields)
            return
        where, hint = f"line {first}", ""
        if first != self.line:
            where, hint = f"the row on lines {first}-{self.line}", " or an unpaired quote"
        self.scan.problems.add(
            first,
            f"{where} has {len(fields)} fields, the header has {self.width}; check for "
            f"a missing or extra comma{hint}",
        )

    def _values(self, first: int, fields: list[bytes]) -> None:
        for rule in self.rules:
            complaint = rule.complaint(fields[rule.index])
            if complaint:
                self.scan.warnings.add(first, f"line {first}: {complaint}")
        if self.status is not None and fields[self.status].strip().lower() == b"deleted":
            self.scan.deleted = (self.scan.deleted or 0) + 1

    def _flush_blank(self) -> None:
        if self.blank is not None:
            self.scan.warnings.add(
                self.blank,
                f"line {self.blank} is blank; remove it (a blank line is only fine at the "
                "very end)",
            )
            self.blank = None
