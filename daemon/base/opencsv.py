"""Reading a CSV file exactly as the provider's server reads it.

The server reads an upload with `new CSVReader(new InputStreamReader(bytes)).readAll()`:
opencsv's `CSVParser` with its defaults (separator `,`, quote `"`, escape `\\`, whitespace
before a quote ignored, strict quotes off) over `BufferedReader.readLine` (a line ends at
CR, LF or CRLF), on text decoded as UTF-8 with U+FFFD for bytes that are not. This module
is that reading, proven record for record against the real opencsv by the differential
test, and the one place that words what the server does with a record: lines it joins,
backslashes it drops, quotes it takes, a quote that never closes (the server then refuses
the whole upload).

Most SIS lines hold no quote and no backslash; for those opencsv's reading is a split at
every comma, so they are split in bulk (`PlainRows`). A line whose quotes all sit at field
edges (`1,"Lee, Jr.",x`) reads as it looks, each quoted field its text between the
quotes: it is split around them and stays in the bulk. The rest (a backslash, a quote
inside a field, a record a quote keeps open) are one `Record` each, read by opencsv's
state machine.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Note",
    "NoteKind",
    "PlainRows",
    "Record",
    "Unterminated",
    "decode",
    "header_key",
    "read_records",
    "read_rows",
]

SHOWN_CHARS = 40  # a value quoted in a sentence is cut to this many characters
_PIECE = 1 << 16  # text is read in pieces of about this many characters: cache-sized
_UNQUOTED_STOP = re.compile(r'[,"\\]')
_QUOTED_STOP = re.compile(r'["\\]')
# A line whose quotes all sit at field edges (`"a,b",c`): opencsv reads it as it looks,
# each quoted field its text between the quotes, so it needs no state machine.
_EDGE_QUOTED = re.compile(r'(?:"[^"\\]*"|[^",\\]*)(?:,(?:"[^"\\]*"|[^",\\]*))*')
_ESCAPABLE = frozenset('",\\')
# `Character.isWhitespace`, which `StringUtils.isWhitespace` asks of each char: the Unicode
# space, line and paragraph separators but the no-break ones, and the ASCII controls below.
_JAVA_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2008\u2009\u200a\u2028\u2029\u205f\u3000"
)


class NoteKind(StrEnum):
    """What the server does silently to a record, beyond splitting it at commas."""

    JOINED = "joined"  # a quote inside a field opened a section that swallowed line ends
    LINE_BREAK = "line_break"  # a quoted field holds a line end: it stays in the value
    VANISHED = "vanished"  # a backslash that escapes nothing is dropped
    ESCAPED = "escaped"  # a backslash escape is taken: `\"`, `\\` or `\,` is one char
    QUOTE = "quote"  # a quote inside a field is taken as quoting, or dropped


@dataclass(frozen=True, slots=True)
class Note:
    """One silent change: on which lines, the text as written and as the server reads it."""

    kind: NoteKind
    line: int
    last_line: int
    written: str
    shown: str

    def sentence(self) -> str:
        """`line 12: ...; the server would ...`: what happens and what to do (the file is
        named beside it, as with every finding)."""
        where = f"line {self.line}"
        if self.last_line != self.line:
            where = f"lines {self.line}-{self.last_line}"
        written, shown = _shown(self.written), _shown(self.shown)
        if self.kind is NoteKind.JOINED:
            rows = self.last_line - self.line
            return (
                f'{where}: the quote in "{written}" opens a quoted field that only closes on '
                f"line {self.last_line}; the server joins lines {self.line}-{self.last_line} "
                f"into one record, so {rows} row{'s' * (rows != 1)} vanish{'es' * (rows == 1)}; "
                'write the quote as "" inside a quoted field, or remove it'
            )
        if self.kind is NoteKind.LINE_BREAK:
            return (
                f'{where}: the quoted field "{shown}" holds a line break; the server keeps it '
                "in the value"
            )
        if self.kind is NoteKind.VANISHED:
            return (
                f'{where}: the server reads "{written}" as "{shown}": it drops a backslash '
                'that escapes nothing; write "\\\\" for one backslash'
            )
        if self.kind is NoteKind.ESCAPED:
            return (
                f'{where}: the server reads "{written}" as "{shown}": a backslash escapes the '
                "character after it"
            )
        return (
            f'{where}: the server reads "{written}" as "{shown}": a quote inside a field '
            'quotes or is dropped; quote the whole field and double the quote ("")'
        )


@dataclass(frozen=True, slots=True)
class Record:
    """One record as the server reads it; `line` is its first physical line (1-based)."""

    fields: tuple[str, ...]
    line: int
    last_line: int
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True, slots=True)
class PlainRows:
    """Consecutive lines each one record as it looks: split at commas, a field wholly in
    quotes (`"Lee, Jr."`) taken as the text between them, no backslash, no other quote.

    `count` records from line `line`, their fields in one flat list: every record's first
    field but the first begins with "\n" (no value here holds a line end, so that marks
    where a record starts). Splitting a stretch of lines at commas in one go costs half of
    a split per line; `rows` and `column` give the records and the columns back. Treat the
    list as read-only.
    """

    line: int
    count: int
    fields: list[str]

    @property
    def last_line(self) -> int:
        return self.line + self.count - 1

    def rows(self) -> list[list[str]]:
        """The records' fields, record by record."""
        rows: list[list[str]] = [[]]
        for value in self.fields:
            if value[:1] == "\n":
                rows.append([value[1:]])
            else:
                rows[-1].append(value)
        return rows

    def uniform(self, width: int) -> bool:
        """Whether every record has `width` fields (so that `column` may be asked)."""
        if width < 1 or len(self.fields) != self.count * width:
            return False
        # Each value holds at most one line end, first: where the values each record's
        # width puts first hold all count - 1 of them, every record starts there.
        return "".join(self.fields[width::width]).count("\n") == self.count - 1

    def column(self, index: int, width: int) -> list[str]:
        """Field `index` of every record, where all are `width` fields wide (`uniform`)."""
        values = self.fields[index::width]
        if index == 0 and len(values) > 1:
            values[1:] = [value[1:] for value in values[1:]]
        return values

    def records(self) -> Iterator[Record]:
        for number, row in enumerate(self.rows(), self.line):
            yield Record(tuple(row), number, number)


class Unterminated(ValueError):
    """A quote opened on `line` never closes: opencsv throws and the server answers 400.

    `record_line` is where the record began (opencsv's line number for the error), `shown`
    the beginning of the text that would be lost.
    """

    def __init__(self, line: int, record_line: int, shown: str) -> None:
        super().__init__(f"the quote opened on line {line} never closes")
        self.line, self.record_line, self.shown = line, record_line, shown

    def sentence(self) -> str:
        return (
            f'line {self.line}: the quote opened here ("{_shown(self.shown)}") never '
            "closes, so the server refuses the whole upload; close the quote, or double it "
            '("") where it belongs in the value'
        )


def decode(chunks: Iterable[bytes]) -> Iterator[str]:
    """Bytes as `InputStreamReader` with UTF-8 reads them: U+FFFD for what is not UTF-8.

    Java replaces the same byte runs as Python's "replace" does but one: an encoded
    surrogate (ED A0-BF, then a continuation byte) is one U+FFFD in Java, one per byte in
    Python. A byte-order mark is kept: the server reads U+FEFF at the start of the first
    field.
    """
    try:
        codecs.lookup_error(_JAVA_REPLACE)
    except LookupError:
        codecs.register_error(_JAVA_REPLACE, _java_replace)
    decoder = codecs.getincrementaldecoder("utf-8")(_JAVA_REPLACE)
    held = b""
    for chunk in chunks:
        data = held + chunk if held else chunk
        # An ED near the end may start a surrogate whose length only the next chunk tells.
        cut = data.find(b"\xed", len(data) - 2)
        data, held = (data, b"") if cut < 0 else (data[:cut], data[cut:])
        if text := decoder.decode(data):
            yield text
    if text := decoder.decode(held, final=True):
        yield text


_JAVA_REPLACE = "dropd-java-replace"


def _java_replace(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    data, start = error.object, error.start
    if data[start] == 0xED and start + 1 < len(data) and 0xA0 <= data[start + 1] <= 0xBF:
        continued = start + 2 < len(data) and data[start + 2] & 0xC0 == 0x80
        return "\ufffd", start + (3 if continued else 2)
    return "\ufffd", error.end


def header_key(record: Record) -> str:
    """The header as the server types a file: its fields joined with commas."""
    return ",".join(record.fields)


def read_records(text: Iterable[str], *, escape_opens_field: bool = True) -> Iterator[Record]:
    """Every record of `text` (chunks of any size), as `CSVReader.readAll` gives them.

    Raises `Unterminated` at the end of the text when a quote is still open.
    """
    for part in read_rows(text, escape_opens_field=escape_opens_field):
        if isinstance(part, Record):
            yield part
        else:
            yield from part.records()


def read_rows(
    text: Iterable[str], *, escape_opens_field: bool = True
) -> Iterator[PlainRows | Record]:
    """The records of `text` in file order: plain lines in bulk, the others one by one.

    `escape_opens_field`: a backslash starts a field as any character does, as opencsv
    does since 5.5.2 (the server runs 5.12). Debian's opencsv 5.2, which the differential
    test runs, predates that; pass False to read as it does.
    """
    reader = _Reader(escape_opens_field)
    carry = ""
    for chunk in text:
        buffer = carry + chunk if carry else chunk
        # A CR at the end may be the first half of a CRLF whose LF is in the next chunk.
        stop = len(buffer) - 1 if buffer.endswith("\r") else len(buffer)
        cut = max(buffer.rfind("\n", 0, stop), buffer.rfind("\r", 0, stop)) + 1
        carry = buffer[cut:]
        if cut:
            yield from reader.lines(buffer, cut)
    if carry:
        last = carry if carry.endswith(("\n", "\r")) else carry + "\n"
        yield from reader.lines(last, len(last))
    reader.finish()


def _line_end(text: str, start: int, end: int) -> int:
    """Where the line from `start` ends in `text[:end]`, which holds a line end after it."""
    lf, cr = text.find("\n", start, end), text.find("\r", start, end)
    return lf if cr < 0 or 0 <= lf < cr else cr


def _body(piece: str) -> tuple[str, int]:
    """`piece` (whole lines) with every line end written ",\n", and its count of lines.

    CR, LF and CRLF each end a line, as `BufferedReader.readLine` has it; the comma makes
    a split at commas start every record's first field with its line end.
    """
    if "\r" not in piece:
        return piece.replace("\n", ",\n"), piece.count("\n")
    body = piece.replace("\r\n", ",\n")  # CRLF throughout: one pass
    lines = piece.count("\n")
    if "\r" in body or piece.count("\r") != lines:
        body = piece.replace("\r\n", "\n").replace("\r", "\n")
        lines = body.count("\n")
        body = body.replace("\n", ",\n")
    return body, lines


class _Reader:
    """opencsv's `CSVParser.parseLine` in multi-line mode, and `CSVReader`'s record loop.

    Its state lasts from line to line as the parser's does: `parts` (the field being read,
    holding what pending text opencsv carries over), `fields` (the record's fields so far),
    `open` (a quote is open at the line end), `in_field` (the parser's `inField`, which a
    quote toggles and which also makes `""` and a backslash escape).

    A piece's line ends (CR, LF or CRLF, as `BufferedReader.readLine` takes them) are
    written ",\n" once (`_body`): a split at commas then starts each record's first field
    with its line end, and the state machine reads its lines from the same text.
    """

    def __init__(self, escape_opens_field: bool) -> None:
        self.escape_opens_field = escape_opens_field
        self.number = 1  # the next physical line
        self.open = False
        self.in_field = False
        self.parts: list[str] = []
        self.fields: list[str] = []
        self.notes: list[Note] = []
        self.record_line = 0
        self.open_line = 0  # where the quote still open was opened
        self.open_mid = False  # ...inside a field, not at its start
        self.open_written = ""
        self.joined = False
        # The field being read: where it began, and what it met (kind -> line).
        self.field_line = 0
        self.field_start = 0
        self.events: dict[NoteKind, int] = {}

    def lines(self, buffer: str, end: int) -> Iterator[PlainRows | Record]:
        """The records of `buffer[:end]`, whole lines each ended by CR, LF or CRLF."""
        start = 0
        while start < end:
            stop = min(start + _PIECE, end)
            cut = max(buffer.rfind("\n", start, stop), buffer.rfind("\r", start, stop)) + 1
            if cut <= start:  # a line longer than a piece
                cut = _line_end(buffer, stop, end) + 1
            if cut < end and buffer[cut - 1] == "\r" and buffer[cut] == "\n":
                cut += 1
            yield from self._piece(buffer[start:cut])
            start = cut

    def finish(self) -> None:
        if self.open:
            raise Unterminated(self.open_line, self.record_line, "".join(self.parts))

    def _piece(self, piece: str) -> list[PlainRows | Record]:
        found: list[PlainRows | Record] = []
        body, lines = _body(piece)
        start = 0
        while self.open and start < len(body):  # a record the last piece left open
            start = self._slow(body, start, found)
        if start:
            body, lines = body[start:], body.count("\n", start)
        if body:
            self._bulk(body, lines, found)
        return found

    def _bulk(self, body: str, lines: int, found: list[PlainRows | Record]) -> None:
        """The records of `body` (`lines` whole lines, each ending ",\n", the first not in
        an open quote): split at commas, stretch by stretch between the lines that hold a
        quote or a backslash.

        A line quoted at field edges is split around its quotes and stays in the bulk; at
        any other such line the bulk ends, and the state machine reads its record.
        """
        quote, backslash = body.find('"'), body.find("\\")
        if quote < 0 and backslash < 0:
            values = body.split(",")
            values.pop()  # what follows the last line end: "\n"
            found.append(PlainRows(self.number, lines, values))
            self.number += lines
            return
        fields: list[str] = []  # the bulk being gathered, from line `first` at `begun`
        first, begun = self.number, 0
        at = 0  # a line start: the text before it is read
        while True:
            if 0 <= quote < at:
                quote = body.find('"', at)
            if 0 <= backslash < at:
                backslash = body.find("\\", at)
            special = (
                min(quote, backslash) if quote >= 0 and backslash >= 0 else quote + backslash + 1
            )
            if special < 0:
                break
            start = body.rfind("\n", at - 1 if at else 0, special) + 1
            end = body.find("\n", special) - 1  # the line's own text ends at its ",\n"
            line = body[start:end]
            if start > at:
                self._stretch(body, at, start, fields)
            if (
                (backslash < 0 or backslash > end)
                and "," in line  # `""` alone stays a Record: a quoted empty field is no blank line
                and _EDGE_QUOTED.fullmatch(line)
            ):
                quoted = _edge_quoted_fields(line)
                if fields:
                    quoted[0] = "\n" + quoted[0]
                fields += quoted
                at = end + 2
                continue
            self.number = first + body.count("\n", begun, start)
            if fields:
                found.append(PlainRows(first, self.number - first, fields))
                fields = []
            at = self._slow(body, start, found)
            while self.open and at < len(body):
                at = self._slow(body, at, found)
            if self.open:
                return
            first, begun = self.number, at
        if at < len(body):
            self._stretch(body, at, len(body), fields)
        self.number = first + (lines if begun == 0 else body.count("\n", begun))
        if fields:
            found.append(PlainRows(first, self.number - first, fields))

    @staticmethod
    def _stretch(body: str, start: int, end: int, fields: list[str]) -> None:
        """Split `body[start:end]`, whole lines with no quote and no backslash, onto `fields`."""
        # Taken with the line end before it, the stretch's first field begins with "\n"
        # as a record's must that is not a bulk's first.
        values = body[start - 1 if fields else start : end].split(",")
        values.pop()  # what follows the last line end: "\n"
        fields += values

    def _slow(self, body: str, start: int, found: list[PlainRows | Record]) -> int:
        """Read the line of `body` from `start` by the state machine; the next line's start."""
        after = body.find("\n", start) + 1
        line = body[start : after - 2]
        if not self.open:
            if '"' not in line and "\\\\" not in line and "\\," not in line:
                found.append(_vanishing(line, self.number))
                self.number += 1
                return after
            if _EDGE_QUOTED.fullmatch(line):
                found.append(Record(tuple(_edge_quoted_fields(line)), self.number, self.number))
                self.number += 1
                return after
            self.record_line = self.field_line = self.number
            self.field_start, self.joined = 0, False
        self._line(line)
        if not self.open:
            found.append(
                Record(tuple(self.fields), self.record_line, self.number, tuple(self.notes))
            )
            self.fields, self.notes = [], []
        self.number += 1
        return after

    def _line(self, line: str) -> None:
        parts, fields = self.parts, self.fields
        in_quotes, in_field = self.open, self.in_field
        size, index = len(line), 0
        if in_quotes:
            self.field_start = -1 if self.field_line != self.number else self.field_start
        while index < size:
            stop = (_QUOTED_STOP if in_quotes else _UNQUOTED_STOP).search(line, index)
            at = size if stop is None else stop.start()
            if at > index:
                parts.append(line[index:at])
                in_field, index = True, at
                if stop is None:
                    break
            char = line[index]
            index += 1
            if char == "\\":
                if self.escape_opens_field:
                    in_field = True
                if (in_quotes or in_field) and index < size and line[index] in _ESCAPABLE:
                    parts.append(line[index])
                    index += 1
                    self.events.setdefault(NoteKind.ESCAPED, self.number)
                else:
                    self.events.setdefault(NoteKind.VANISHED, self.number)
            elif char == '"':
                if (in_quotes or in_field) and index < size and line[index] == '"':
                    parts.append('"')
                    index += 1
                    if not in_quotes:
                        self.events.setdefault(NoteKind.QUOTE, self.number)
                else:
                    in_quotes = not in_quotes
                    mid = in_quotes and bool(parts)
                    if (
                        _past_line_start(line, index)
                        and line[index - 2] != ","
                        and index < size
                        and line[index] != ","
                    ):
                        if parts and _java_whitespace("".join(parts)):
                            parts.clear()
                            mid = False
                        else:
                            parts.append('"')
                    if in_quotes:
                        self.open_line, self.open_mid = self.number, mid
                        if mid:
                            self.events.setdefault(NoteKind.QUOTE, self.number)
                            self.open_written = line[max(self.field_start, 0) :]
                    elif index < size and line[index] != ",":
                        self.events.setdefault(NoteKind.QUOTE, self.number)
                in_field = not in_field
            else:  # a comma outside quotes ends the field
                self._field(line, index - 1)
                fields.append("".join(parts))
                parts.clear()
                in_field = False
                self.field_line, self.field_start = self.number, index
        if in_quotes:
            parts.append("\n")
            if self.open_mid:
                self.joined = True
            self.events.setdefault(NoteKind.LINE_BREAK, self.number)
        else:
            in_field = False
            self._field(line, size)
            fields.append("".join(parts))
            parts.clear()
            if self.joined:
                self.notes.append(
                    Note(
                        NoteKind.JOINED,
                        self.record_line,
                        self.number,
                        self.open_written,
                        fields[-1],
                    )
                )
        self.open, self.in_field = in_quotes, in_field

    def _field(self, line: str, end: int) -> None:
        """Note what the field just read met, now that its value is known."""
        if not self.events:
            return
        events, self.events = self.events, {}
        value = "".join(self.parts)
        spanned = NoteKind.LINE_BREAK in events
        written = line[self.field_start : end] if self.field_start >= 0 else value
        for kind, line_number in events.items():
            if spanned and (kind is NoteKind.QUOTE or self.joined):
                continue  # the joined or broken record says it better
            if kind is NoteKind.QUOTE and written == value:
                continue  # read as written: nothing changed
            last = self.number if kind is NoteKind.LINE_BREAK else line_number
            self.notes.append(Note(kind, line_number, last, written, value))


def _vanishing(line: str, number: int) -> Record:
    """Line `number`, with no quote and every backslash escaping nothing: split at commas,
    each backslash dropped and noted, as the state machine would."""
    fields = line.split(",")
    notes = tuple(
        Note(NoteKind.VANISHED, number, number, value, value.replace("\\", ""))
        for value in fields
        if "\\" in value
    )
    if notes:
        fields = [value.replace("\\", "") for value in fields]
    return Record(tuple(fields), number, number, notes)


def _edge_quoted_fields(line: str) -> list[str]:
    """The fields of a line `_EDGE_QUOTED` matches: split at the commas between quotes."""
    segments = line.split('"')  # outside, inside, outside, ...: every inside is one field
    fields = segments[0].split(",")
    for inside, outside in zip(segments[1::2], segments[2::2], strict=True):
        fields[-1] = inside
        fields += outside.split(",")[1:]
    return fields


def _past_line_start(line: str, index: int) -> bool:
    """opencsv's `i > 3` for the char before `index`: counted in UTF-16 units, as Java does."""
    if index > 3:
        return True
    return index > 1 and sum(2 if char > "\uffff" else 1 for char in line[:index]) > 3


def _java_whitespace(text: str) -> bool:
    return all(char in _JAVA_WHITESPACE for char in text)


def _shown(text: str) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."
