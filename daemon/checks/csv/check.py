"""Checking one CSV as the server reads it: encoding, header, each row's width and values.

A file is never held whole: it is read `CHUNK_BYTES` at a time, its bytes checked as text
in the group's encoding (no NUL byte) and turned into the UTF-8 that goes up, then cut
into stretches of whole lines. Every record is read as the server reads it, by the
reference reader (`daemon.base.opencsv`), which also words what the server does silently
to a record. Lines opencsv reads as they look (no backslash, no lone CR, quotes only at
field edges) are checked by the compiled row scanner (`_rowscan.c`) where it was built, on
two threads for a large file since it releases the GIL; it gives back a line with a
backslash for the reader to read alone, and hands over to the reader at a line that may
start a record running over several lines, going on after it where it does not.
`DROPD_ROWSCAN=off` in the environment leaves the scanner unused.
"""

from __future__ import annotations

import codecs
import os
import re
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

from daemon.base.headers import HEADER_KEYS
from daemon.base.opencsv import (
    Note,
    NoteKind,
    PlainRows,
    Record,
    Unterminated,
    decode,
    read_records,
    read_rows,
)
from daemon.base.regular import open_regular
from daemon.base.textcodec import UTF8
from daemon.checks.csv.formats import ValueRule, emails_taken, header_complaint, value_rules
from daemon.checks.decoding import UTF8_FILES, Decoding

CHUNK_BYTES = 1 << 20
_NON_ASCII = re.compile(rb"[\x80-\xff]")
HEADER_READ_BYTES = 16 << 10  # a header line is a few hundred bytes at most
LONG_LINE_BYTES = 1 << 20  # a line (or a record a quote holds open) longer is no SIS row
MAX_NOTES = 20  # findings listed per file and sort; the rest are counted
THREADED_BYTES = 8 << 20  # a file this large is scanned on two threads
IN_FLIGHT = 4  # stretches handed to the threads at once: memory stays flat
# The server's row loops: users, enrollments and listings rows of another width are
# dropped without a word; courses and sections rows are skipped and listed in the e-mail
# the server sends after the import.
_MENTIONED = ("courses", "sections")
# A backslash escape and a line break in a quoted field are read as their writer meant
# them; a vanished backslash or a stray quote changes a value (a warning); joined lines
# lose rows (a problem).
_SILENT_NOTES = (NoteKind.ESCAPED, NoteKind.LINE_BREAK)

Rules = tuple[tuple[int, tuple[bytes, ...]], ...]  # (column, allowed values or () for email)
# lines, deleted, odd (index, begin, end, kind: SPLIT or ALONE), stop; see _rowscan.c
Scanned = tuple[int, int, list[tuple[int, int, int, int]], int]
SPLIT, ALONE = 0, 1  # a line the scanner gives back: split it at commas, or read it alone
# The row scanner's one function: data, start, end, width, rules, status (see _rowscan.c)
RowScanner = Callable[[bytes, int, int, int, Rules, int], Scanned]


def _compiled() -> ModuleType | None:
    if os.environ.get("DROPD_ROWSCAN") == "off":
        return None
    try:
        from daemon.checks.csv import _rowscan
    except ImportError:  # not built: no C compiler where dropd was installed
        return None
    return _rowscan


_ROWSCAN_MODULE = _compiled()
ROWSCAN: RowScanner | None = None if _ROWSCAN_MODULE is None else _ROWSCAN_MODULE.plain_lines
# Where the first byte is that may not read as UTF-8 (the decoder then says what it is).
FIRST_BAD_UTF8: Callable[[bytes], int] | None = (
    None if _ROWSCAN_MODULE is None else _ROWSCAN_MODULE.first_bad_utf8
)

Finding = tuple[int | None, str]


@dataclass(slots=True)
class Notes:
    """Findings of one sort in one file: the first MAX_NOTES, and how many more."""

    listed: list[Finding] = field(default_factory=list)
    more: int = 0

    def add(
        self, line: int | None, message: str | Callable[[], str], *, always: bool = False
    ) -> None:
        """Add a finding; `message` may be a function that words it, asked only where it
        is listed."""
        if always or len(self.listed) < MAX_NOTES:
            self.listed.append((line, message if isinstance(message, str) else message()))
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


def scan_csv(path: Path, strict: bool, decoding: Decoding = UTF8_FILES) -> CsvScan:
    """Read the CSV at `path`, written in `decoding`, as the server would read its UTF-8
    copy; not `strict`: its encoding and kind only.

    Raises OSError if it cannot be read.
    """
    scan = CsvScan()
    with open_regular(path) as source:
        size = os.fstat(source.fileno()).st_size
        scanner = ROWSCAN if strict else None
        threads = scanner is not None and size >= THREADED_BYTES
        rows = _Rows(path.name, scan, strict, scanner)
        with ThreadPoolExecutor(2) if threads else _NoPool() as pool:
            blocks = _texts(path, source, scan, decoding, CHUNK_BYTES)
            rows.read(blocks, pool)
        for _ in blocks:
            pass  # rows no longer read: the rest of the file is still checked as text
    return scan


def csv_kind(path: Path, decoding: Decoding = UTF8_FILES) -> str | None:
    """The kind `scan_csv` finds for the CSV at `path`, from its header alone; None where
    it has none, or the file cannot be read (`scan_csv` says why)."""
    scan = CsvScan()
    rows = _Rows(path.name, scan, False, None)
    try:
        with open_regular(path) as source:
            rows.read(_texts(path, source, scan, decoding, HEADER_READ_BYTES), None)
    except OSError:
        return None
    return scan.kind


@dataclass(frozen=True, slots=True)
class _Block:
    """Whole lines of UTF-8, `data[start:end]` (the last line of a file may be unended)."""

    data: bytes
    start: int
    end: int

    def text(self) -> str:
        text = "".join(decode([self.data[self.start : self.end]]))
        # Cut after a CR no LF follows: the reader would wait for the next piece to know.
        return text[:-1] + "\n" if text.endswith("\r") else text


def _texts(
    path: Path, source: BinaryIO, scan: CsvScan, decoding: Decoding, size: int
) -> Iterator[_Block]:
    """The file's lines in blocks: the first line alone, then a chunk's whole lines each."""
    first = source.read(size)
    if _not_text(first, scan.problems, decoding):
        return
    encoding = _Encoding(path, scan.problems, decoding)
    carry, header = b"", True
    chunk = first
    while chunk:
        data = encoding.feed(chunk)
        cut = max(data.rfind(b"\n"), data.rfind(b"\r", 0, len(data) - 1)) + 1
        if not cut:
            carry += data
            if len(carry) > LONG_LINE_BYTES:
                raise _LongLine
        else:
            head = data.find(b"\n") + 1 if header or carry else 0
            head = head if 0 < head <= cut else (cut if header or carry else 0)
            if head:
                yield _Block(carry + data[:head], 0, len(carry) + head)
            if cut > head:
                yield _Block(data, head, cut)
            carry, header = data[cut:], False
        chunk = source.read(size)
    carry += encoding.finish()
    if carry:
        yield _Block(carry, 0, len(carry))


class _LongLine(Exception):
    """A line runs for over LONG_LINE_BYTES without a line end."""


class _NoPool:
    """Where the scanner runs on the reading thread: no threads to start or stop."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


# A block's runs as the scanner read them: each run's start, and what it found there.
Runs = list[tuple[int, Scanned]]
Pending = deque[tuple[_Block, "Future[Runs] | None"]]


class _Rows:
    """The header, then every record: its width, its values, what the server does to it."""

    def __init__(self, name: str, scan: CsvScan, strict: bool, scanner: RowScanner | None):
        self.name, self.scan, self.strict, self.scanner = name, scan, strict, scanner
        self.line = 1  # the number of the next line
        self.width = 0  # of the header, once it is known and rows are to be checked
        self.rules: tuple[ValueRule, ...] = ()
        self.scanned: Rules = ()
        self.status = -1
        self.kind = ""
        self.stopped = self.header_read = self.too_long = False
        self.blank: int | None = None  # a blank line that may yet be the last

    def read(self, blocks: Iterator[_Block], pool: ThreadPoolExecutor | None) -> None:
        pending: Pending = deque()
        while not self.stopped:
            if not pending:
                self._fill(pending, blocks, pool, 1)
            if not pending:
                break
            block, future = pending.popleft()
            if not (self.width and self.scanner is not None):
                self._segment(block, pending, blocks)
                continue
            self._fill(pending, blocks, pool, IN_FLIGHT)
            runs = deque(future.result() if future is not None else self._scan(block))
            # The reader reads the record where a run stopped; where that record is one
            # line, the next run (scanned ahead, from the line after it) goes on from there.
            position = block.start
            while not self.stopped:
                while runs and runs[0][0] < position:  # a record ran on over this run
                    runs.popleft()
                if not runs or runs[0][0] != position:  # ...and ended inside one: scan again
                    runs = deque(self._scan(_Block(block.data, position, block.end)))
                stop = self._scanned(block, runs.popleft()[1])
                if stop >= block.end:
                    break
                rest = _Block(block.data, stop, block.end)
                resume = self._segment(rest, pending, blocks, one_record=True)
                if resume is None:
                    break
                position = resume
        if self.too_long and not self.stopped:
            self._stop(
                f"line {self.line} runs for over {LONG_LINE_BYTES:,} bytes without a line end; "
                "is this a CSV file?"
            )

    def _next(self, blocks: Iterator[_Block]) -> _Block | None:
        """The next block, or None at the end or at a line too long to be a row."""
        try:
            return next(blocks, None)
        except _LongLine:
            self.too_long = True
            return None

    def _fill(
        self,
        pending: Pending,
        blocks: Iterator[_Block],
        pool: ThreadPoolExecutor | None,
        most: int,
    ) -> None:
        while len(pending) < most and (block := self._next(blocks)) is not None:
            scanning = pool is not None and self.width and self.scanner is not None
            future = pool.submit(self._scan, block) if pool is not None and scanning else None
            pending.append((block, future))

    def _scan(self, block: _Block) -> Runs:
        """The scanner's runs over `block`: from its start, then from the line after each
        line the scanner left to the reader (ahead of the reader, which may find that line
        opens a record running on, so that the next run starts elsewhere)."""
        assert self.scanner is not None
        runs: Runs = []
        start = block.start
        while True:
            found = self.scanner(
                block.data, start, block.end, self.width, self.scanned, self.status
            )
            runs.append((start, found))
            line_end = block.data.find(b"\n", found[3], block.end)
            if found[3] == block.end or line_end < 0:
                return runs
            start = line_end + 1

    def _scanned(self, block: _Block, found: Scanned) -> int:
        """Take in what the scanner found in `block`; where the reader must take over."""
        lines, deleted, odd, stop = found
        base, after = self.line, 0
        # A line with a backslash and no quote is one record: the reader reads them all at
        # once, one to a line, the k-th numbered k + 1.
        alone = iter(_alone_records(block.data, odd))
        for index, begin, end, kind in odd:
            if index > after:
                self._flush_blank()  # clean lines came after it
            if kind == ALONE:
                record = next(alone)
                self._record(record, base + index - record.line)
            else:
                text = block.data[begin:end].decode("utf-8", "replace").removesuffix("\r")
                self._row(text.split(","), base + index, base + index)
            after = index + 1
        if lines > after:
            self._flush_blank()
        self.scan.rows += lines - len(odd)  # the odd ones were counted where read
        if self.scan.deleted is not None:
            self.scan.deleted += deleted
        self.line = base + lines
        return stop

    def _segment(
        self, first: _Block, pending: Pending, blocks: Iterator[_Block], *, one_record: bool = False
    ) -> int | None:
        """Read from `first` by the reference reader until a block ends outside a record.

        `one_record`: read the first line of `first` alone, and where it is a whole record,
        stop there: the offset in `first.data` after it, for the scanner to go on from.
        Returns None where the reader read on to the end of a block.
        """
        offset, fed, done, held = self.line - 1, 0, 0, 0
        resume: int | None = None

        def texts() -> Iterator[str]:
            nonlocal fed, held, resume
            block: _Block | None = first
            if one_record and (end := first.data.find(b"\n", first.start, first.end)) >= 0:
                text = _Block(first.data, first.start, end + 1).text()
                fed += _line_ends(text)
                yield text
                if done == fed:
                    resume = end + 1
                    return
                block = _Block(first.data, end + 1, first.end)
            while block is not None:
                text = block.text()
                fed += _line_ends(text)
                yield text
                if done == fed or self.stopped:
                    return
                held += len(text)
                if held > LONG_LINE_BYTES:
                    line = offset + done + 1
                    self._stop(
                        f"line {line}: a quote opened on this record is still open "
                        f"{LONG_LINE_BYTES:,} bytes later; the server would take all of it as "
                        "one value, or refuse the whole upload if it never closes; close the "
                        'quote, or double it ("") where it belongs in the value'
                    )
                    return
                block = pending.popleft()[0] if pending else self._next(blocks)

        try:
            for part in read_rows(texts()):
                done = part.last_line
                if isinstance(part, PlainRows):
                    self._plain(part, offset + part.line)
                else:
                    self._record(part, offset)
                if self.stopped:
                    break
        except Unterminated as exc:
            if not self.stopped:
                moved = Unterminated(offset + exc.line, offset + exc.record_line, exc.shown)
                self._stop(moved.sentence(), moved.line)
        self.line = offset + fed + 1
        return resume

    def _record(self, record: Record, offset: int) -> None:
        notes = [n for n in record.notes if n.kind not in _SILENT_NOTES]
        line, last = offset + record.line, offset + record.last_line
        self._row(record.fields, line, last, notes, offset, quoted=True)

    def _plain(self, part: PlainRows, line: int) -> None:
        """Records read as they look, from line `line`: checked a column at a time where all
        have the header's width, else one by one."""
        width = self.width
        if not self.header_read or not part.uniform(width):
            for number, row in enumerate(part.rows(), line):
                self._row(row, number, number)
                if self.stopped:
                    return
            return
        self._flush_blank()
        self.scan.rows += part.count
        found: list[tuple[int, str]] = []
        for rule in self.rules:
            column = part.column(rule.index, width)
            if rule.allowed:  # a few distinct values: each judged once
                counts = Counter(column)
                taken = all(value.lower() in rule.allowed for value in counts)
                if rule.index == self.status and self.scan.deleted is not None:
                    self.scan.deleted += sum(n for v, n in counts.items() if _deleted(v))
            else:
                taken = emails_taken(column)
            if not taken:
                found += [
                    (number, f"line {number}: {complaint}")
                    for number, value in enumerate(column, line)
                    if (complaint := rule.complaint(value))
                ]
        for number, message in sorted(found, key=lambda item: item[0]):
            self.scan.warnings.add(number, message)

    def _row(
        self,
        fields: Sequence[str],
        line: int,
        last: int,
        notes: Sequence[Note] = (),
        offset: int = 0,
        *,
        quoted: bool = False,
    ) -> None:
        """One record, lines `line` to `last`; `quoted`: read by the reader's state machine
        (a line holding a quote or a backslash, which is never blank)."""
        if not self.header_read:
            self._header(fields, line)
            return
        if not quoted and len(fields) == 1 and not fields[0].strip():
            self._flush_blank()
            self.blank = line
            return
        self._flush_blank()
        self.scan.rows += 1
        for note in notes:
            moved = Note(
                note.kind, note.line + offset, note.last_line + offset, note.written, note.shown
            )
            # Joined lines lose whole rows, as a dropped row does: that fails the batch.
            found = self.scan.problems if note.kind is NoteKind.JOINED else self.scan.warnings
            found.add(moved.line, moved.sentence)
        if len(fields) != self.width:
            self.scan.problems.add(line, self._width(line, last, len(fields)))
            return
        for rule in self.rules:
            if complaint := rule.complaint(fields[rule.index]):
                self.scan.warnings.add(line, f"line {line}: {complaint}")
        if self.status >= 0 and self.scan.deleted is not None and _deleted(fields[self.status]):
            self.scan.deleted += 1

    def _width(self, line: int, last: int, found: int) -> str:
        # The file is named beside the finding wherever it is shown.
        where = f"line {line}" if last == line else f"the row on lines {line}-{last}"
        does = "drops this row without a word"
        if self.kind in _MENTIONED:
            does = "skips this row, and says so only in the e-mail it sends after the import"
        return (
            f"{where} has {found} fields, the header has {self.width}: the server {does}; fix "
            "the row (a missing or extra comma, or a stray quote)"
        )

    def _header(self, fields: Sequence[str], line: int) -> None:
        self.header_read = True
        if fields and fields[0].startswith("\ufeff"):
            self.scan.bom = True  # taken off in the copy that goes up
            fields = (fields[0][1:], *fields[1:])
        key = ",".join(fields)
        kind = HEADER_KEYS.get(key)
        self.scan.kind = kind
        if self.strict and kind is None:
            self.scan.problems.add(line, header_complaint(key, tuple(fields)))
        if not self.strict or kind is None:
            self.stopped = True  # rows measured against an unknown header say nothing
            return
        names = tuple(key.split(","))
        self.kind, self.width = kind, len(names)
        self.rules = value_rules(kind, names)
        self.scanned = tuple((r.index, tuple(v.encode() for v in r.allowed)) for r in self.rules)
        self.status = names.index("status") if "status" in names else -1
        self.scan.deleted = 0 if self.status >= 0 else None

    def _stop(self, why: str, line: int | None = None) -> None:
        self.stopped = True
        if self.strict:
            self.scan.problems.add(self.line if line is None else line, why)

    def _flush_blank(self) -> None:
        if self.blank is not None:
            self.scan.warnings.add(
                self.blank,
                f"line {self.blank} is blank; remove it (a blank line is only fine at the "
                "very end)",
            )
            self.blank = None


def _deleted(value: str) -> bool:
    return value.strip().lower() == "deleted"


def _alone_records(data: bytes, odd: list[tuple[int, int, int, int]]) -> list[Record]:
    """The records of the lines `odd` gives to read alone (each with a backslash and no
    quote, so one record), read in one go: the k-th is numbered k + 1."""
    lines = [data[begin:end].removesuffix(b"\r") for _, begin, end, kind in odd if kind == ALONE]
    if not lines:
        return []
    records = list(read_records(decode([b"\n".join(lines) + b"\n"])))
    assert len(records) == len(lines), "a line with a backslash and no quote is one record"
    return records


def _line_ends(text: str) -> int:
    """How many lines the reader counts in `text` (an unended last line is one)."""
    ends = text.count("\n")
    if "\r" in text:
        ends += text.count("\r") - text.count("\r\n")
    return ends + (0 if text.endswith(("\n", "\r")) else 1)


def _not_text(first: bytes, problems: Notes, decoding: Decoding) -> bool:
    if not first:
        problems.add(None, "the file is empty; the server needs at least its header line")
    elif first.startswith((b"\xff\xfe", b"\xfe\xff")) and decoding.keeps_ascii:
        problems.add(None, decoding.utf16())
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
    """The first byte that does not read in the group's encoding and the first NUL byte,
    over raw chunks; what it gives back is the text as UTF-8, for the rows' checks."""

    def __init__(self, path: Path, problems: Notes, decoding: Decoding) -> None:
        self.path, self.problems, self.decoding = path, problems, decoding
        self.offset = 0  # of the next chunk in the file
        self.pending = b""  # the start of a character the last chunk cut
        self.utf8 = self.nul = True  # not yet reported
        self.lines = 0  # line ends given back so far, where the file is converted
        self.decoder = (
            None if decoding.utf8 else codecs.getincrementaldecoder(decoding.codec)("strict")
        )
        # A file in UTF-8 where the group reads another encoding would go up garbled
        # ("Renée" as "RenÃ©e") without a byte out of place: whether every byte so far reads
        # as UTF-8, and where the first that is not ASCII is (its line, as each reads it).
        self.as_utf8 = (
            codecs.getincrementaldecoder(UTF8)("strict")
            if self.decoder is not None and decoding.keeps_ascii
            else None
        )
        self.first_non_ascii: tuple[int, str, str] | None = None

    def feed(self, chunk: bytes) -> bytes:
        """`chunk` as UTF-8 (itself, for a UTF-8 file), less what the next chunk ends."""
        if self.decoder is not None:
            return self._convert(chunk, final=False)
        if self.nul and b"\0" in chunk:
            self._nul(_line_at(self.path, self.offset + chunk.index(b"\0")))
        data = self.pending + chunk if self.pending else chunk
        start, self.pending = self.offset - len(self.pending), b""
        self.offset += len(chunk)
        if self.utf8 and not data.isascii():
            # Compiled, the check finds where to look, and the decoder reads from there.
            bad = 0 if FIRST_BAD_UTF8 is None else FIRST_BAD_UTF8(data)
            try:
                if bad >= 0:
                    (data[bad:] if bad else data).decode("utf-8")
            except UnicodeDecodeError as exc:
                if exc.reason == "unexpected end of data" and bad + exc.end == len(data):
                    self.pending = data[bad + exc.start :]
                else:
                    self._report(data, bad + exc.start, start)
        return chunk

    def finish(self) -> bytes:
        """What the file's last bytes, held back, come to once it has ended."""
        if self.decoder is not None:
            return self._convert(b"", final=True)
        if self.utf8 and self.pending:
            self._report(self.pending, 0, self.offset - len(self.pending))
        return b""

    def _nul(self, line: int) -> None:
        self.nul = False
        self.problems.add(
            line,
            f"line {line} holds a NUL byte; the file is binary or damaged: export it again as CSV",
            always=True,
        )

    def _report(self, data: bytes, index: int, start: int) -> None:
        self.utf8 = False
        line = _line_at(self.path, start + index)
        before = data[max(data.rfind(b"\n", 0, index) + 1, index - 30) : index]
        shown = before.decode("utf-8", "replace")
        self.problems.add(line, self.decoding.unreadable(line, data[index], shown), always=True)

    def _convert(self, chunk: bytes, *, final: bool) -> bytes:
        assert self.decoder is not None
        if self.as_utf8 is not None:
            self._read_as_utf8(chunk, final)
        try:
            text = self.decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            self._unreadable(exc)
            self.decoder.errors = "replace"  # the rows are still checked, as best they read
            text = self.decoder.decode(chunk, final)
        data = text.encode("utf-8")
        if self.nul and b"\0" in data:
            self._nul(self.lines + data.count(b"\n", 0, data.index(b"\0")) + 1)
        self.lines += data.count(b"\n")
        return data

    def _read_as_utf8(self, chunk: bytes, final: bool) -> None:
        assert self.as_utf8 is not None
        if self.first_non_ascii is None and not chunk.isascii():
            found = _NON_ASCII.search(chunk)
            assert found is not None  # the chunk is not ASCII
            at = found.start()
            start = chunk.rfind(b"\n", 0, at) + 1
            end = chunk.find(b"\n", at)
            shown = chunk[max(start, at - 30) : at + 30 if end < 0 else min(end, at + 30)]
            line = self.lines + chunk.count(b"\n", 0, at) + 1
            codec = self.decoding.codec
            self.first_non_ascii = (
                line,
                shown.decode(UTF8, "replace"),
                shown.decode(codec, "replace"),
            )
        try:
            self.as_utf8.decode(chunk, final)
        except UnicodeDecodeError:
            self.as_utf8 = None  # not UTF-8: read in the group's encoding, as it says
            return
        if final and self.first_non_ascii is not None:
            line, as_utf8, as_codec = self.first_non_ascii
            setting, codec = self.decoding.setting, self.decoding.codec
            self.problems.add(
                line,
                f'line {line} reads as UTF-8 ("{as_utf8.strip()}"), and so does the whole file, '
                f'but {setting} is "{codec}", which would send "{as_codec.strip()}"; set '
                f'{setting} to "utf-8", or save the file in {codec}',
                always=True,
            )

    def _unreadable(self, exc: UnicodeDecodeError) -> None:
        self.utf8 = False
        # What the decoder was given holds the bytes it had held back from the last chunk.
        before = exc.object[: exc.start].decode(self.decoding.codec, "replace")
        line = self.lines + before.count("\n") + 1
        shown = before[max(before.rfind("\n") + 1, len(before) - 30) :]
        byte = exc.object[exc.start]
        self.problems.add(line, self.decoding.unreadable(line, byte, shown), always=True)
