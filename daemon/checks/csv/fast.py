"""The bulk checks of a CSV's lines, on bytes.

A run of whole lines is checked without a Python step per line. Keeping only its commas,
quotes and line ends (`bytes.translate`) gives each line's *shape*. Where every line has
the header's shape (no quotes: what SIS exports write), one regular expression walks the
lines in a single call, each field either skipped or one of the values Canvas takes, and
stops only at a line whose status is "deleted" (to count it) or at a line it does not take.
Where lines hold quotes, the shapes must be a few distinct ones whose quotes pair up on the
line, with the header's field count and no quoted comma where the patterns count commas;
then one regular expression (`csvquoted`), tried at each line end, looks for a value Canvas
would not take (a lookbehind for the last column, a walk over the columns before it for
another) and finds the rows whose status is "deleted". Whatever does not pass is read line
by line by `csvrows`, which says exactly what is wrong.

Where the row scanner (`_rowscan.c`) was built, unquoted lines of the header's field count
are checked by it instead, with the GIL released, several times faster; it answers the
same, and anything else is left to the Python checks. `DROPD_ROWSCAN=off` in the
environment leaves it unused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from daemon.checks.csv.formats import EMAIL, ValueRule
from daemon.checks.csv.quoted import QuotedPatterns

Rules = tuple[tuple[int, tuple[bytes, ...]], ...]  # (column, allowed values or () for email)
Scanned = tuple[int, int, list[tuple[int, int, int]]]  # lines, deleted, odd (index, begin, end)
# The row scanner's one function: data, start, end, width, rules, status column (see _rowscan.c)
RowScanner = Callable[[bytes, int, int, int, Rules, int], Scanned | None]


def _row_scanner() -> RowScanner | None:
    if os.environ.get("DROPD_ROWSCAN") == "off":
        return None
    try:
        from daemon.checks.csv import _rowscan
    except ImportError:  # not built: no C compiler where dropd was installed
        return None
    return _rowscan.plain_lines


ROWSCAN = _row_scanner()

_KEEP = b',"\n'
_NOT_SHAPE = bytes(b for b in range(256) if b not in _KEEP)
_MAX_SHAPES = 4096  # distinct line shapes remembered
_UNROLL = 8  # lines per step of the plain-lines pattern: fewer steps of the regex engine


class _PlainLines:
    """Lines of the header's shape (no quotes), matched in bulk; `end` is their line end.

    `good` matches any number of lines whose checked values Canvas takes, and stops before
    a line it does not take (an odd line) or, unless `counting`, whose status is "deleted":
    `resume` matches such a line and the good ones after it, so one call of the engine is
    made per deleted row. Where a status ends the line and deleted rows are many,
    `counting` lets `good` take them as written (in lower case) and `bytes.count` finds
    them. Values compare without regard to case, as Canvas does.
    """

    def __init__(self, width: int, rules: tuple[ValueRule, ...], end: bytes) -> None:
        self.width, self.rules, self.end = width, {r.index: r for r in rules}, end
        status = next((r.index for r in rules if r.column == "status"), None)
        self.deleted_end = b",deleted" + end if status == width - 1 else None
        self.counting = False
        self.good = {
            counting: re.compile(self._lines(status, counting))
            for counting in (False, True)
            if not counting or self.deleted_end
        }
        self.resume = {
            counting: re.compile(self._line(status, "deleted") + self._lines(status, counting))
            for counting in self.good
            if status is not None
        }

    def _lines(self, status: int | None, counting: bool) -> bytes:
        line = self._line(status, "any" if counting else "other")
        return b"(?:" + line * _UNROLL + b")*+(?:" + line + b")*+"

    def _line(self, status: int | None, statuses: str) -> bytes:
        fields = [self._field(i, statuses if i == status else "") for i in range(self.width)]
        # An unchecked last column runs to the "\n" (a "\r" before it is no matter).
        ending = re.escape(self.end) if self.width - 1 in self.rules else b"\n"
        return b",".join(fields) + ending

    def _field(self, index: int, statuses: str) -> bytes:
        """A field; a status is "deleted" for `statuses` "deleted", another one for
        "other", and for "any" another one or "deleted" as written."""
        rule = self.rules.get(index)
        if rule is None:
            return rb"[^\n]*+" if index == self.width - 1 else b"[^,]*+"
        if not rule.allowed:
            return EMAIL
        allowed = [v for v in rule.allowed if not statuses or v != "deleted"]
        field = b"(?i:" + b"|".join(re.escape(v.encode()) for v in allowed) + b")"
        if statuses == "deleted":
            return b"(?i:deleted)"
        return b"(?:" + field + b"|deleted)" if statuses == "any" else field

    def clear(self, data: bytes, start: int, end: int, lines: int) -> Cleared:
        """What the patterns make of the `lines` lines of `data[start:end]`."""
        if not self.rules:  # nothing to look at in the values: the shape was all
            return Cleared(data, start, lines)
        counting = self.counting
        counted = self.deleted_end if counting else None
        cleared = Cleared(data, start, lines)
        cleared.deleted = data.count(counted, start, end) if counted else 0
        at = self._good_end(self.good[counting], data, start + 1, end)
        while at < end:
            resumed = self.resume[counting].match(data, at, end) if self.resume else None
            if resumed:
                cleared.deleted, at = cleared.deleted + 1, resumed.end()
                continue
            if counted and data.endswith(counted, at, data.index(b"\n", at) + 1):
                cleared.deleted -= 1  # counted above, and again where the odd line is read
            at = self._good_end(self.good[counting], data, cleared.odd_line(at), end)
        # Many deleted rows: count them with bytes.count, rather than stopping at each.
        self.counting = self.deleted_end is not None and cleared.deleted * 30 > lines
        return cleared

    @staticmethod
    def _good_end(good: re.Pattern[bytes], data: bytes, at: int, end: int) -> int:
        match = good.match(data, at, end)  # it always matches, if only nothing
        return match.end() if match else at


class FastChecks:
    """The bulk checks of a run of whole lines (see the module's docstring); `scanner`: the
    row scanner (`ROWSCAN`), or None for the checks in Python only."""

    def __init__(
        self, width: int, rules: tuple[ValueRule, ...], scanner: RowScanner | None
    ) -> None:
        self.width, self.shape = width, b"," * (width - 1) + b"\n"
        self.scanner = scanner
        self.scanned = tuple((r.index, tuple(v.encode() for v in r.allowed)) for r in rules)
        self.status = next((r.index for r in rules if r.column == "status"), -1)
        self.plain = {end: _PlainLines(width, rules, end) for end in (b"\n", b"\r\n")}
        self.quoted = QuotedPatterns(width, rules, True)
        # Columns the patterns find by counting commas: no quoted comma up to the last.
        middle = [r.index for r in rules if r.index < width - 1]
        self.counted = max(middle, default=-1)
        self.tail = any(r.index == width - 1 for r in rules)
        self.fits: dict[bytes, bool] = {}

    def run(self, data: bytes, start: int, end: int) -> Cleared | None:
        """What the bulk checks make of `data[start:end]`; None if it must be read by line.

        `data[start]` and `data[end - 1]` are line ends.
        """
        if self.scanner is not None:
            scanned = self.scanner(data, start, end, self.width, self.scanned, self.status)
            if scanned is not None:
                return Cleared.scanned(data, start, scanned)
        whole = data.find(b"\n") == start and data.rfind(b"\n") == end - 1
        shape = (data if whole else data[start:end]).translate(None, _NOT_SHAPE)
        if whole:  # a chunk's lines: no copy of them to translate, the cut ends dropped
            shape = shape[shape.find(b"\n") : shape.rfind(b"\n") + 1]
        lines = shape.count(b"\n") - 1
        if shape == b"\n" + self.shape * lines:
            # Lines end "\r\n" where there is a "\r" (any other line will be odd).
            plain = self.plain[b"\r\n" if data.find(b"\r", start, end) >= 0 else b"\n"]
            return plain.clear(data, start, end, lines)
        first = shape[: shape.index(b"\n", 1) + 1]
        same = shape == b"\n" + first[1:] * lines
        if not all(map(self._fits, [first[1:-1]] if same else set(shape.split(b"\n")[1:-1]))):
            return None
        patterns = self.quoted
        cleared = Cleared(data, start, lines)
        ends = patterns.ends[data.find(b"\r", start, end) >= 0]
        if patterns.head and (match := patterns.head.match(data, start, end)):
            cleared.note(match)
        for match in ends.finditer(data, start + 1, end) if ends else ():
            cleared.note(match)
            about_end = match.lastgroup in ("bad_end", "deleted_end")
            if (
                about_end
                and patterns.head
                and (hidden := patterns.head.match(data, match.start(), end))
            ):
                cleared.note(hidden)  # about the line this "\n" starts, which the match hid
        return cleared

    def _fits(self, shape: bytes) -> bool:
        """A line of `shape` (its commas and quotes) can be checked in bulk."""
        fits = self.fits.get(shape)
        if fits is None:
            if len(self.fits) >= _MAX_SHAPES:
                self.fits.clear()
            fits = self.fits[shape] = self._judge(shape)
        return fits

    def _judge(self, shape: bytes) -> bool:
        field, quoted, commas_inside = 0, False, set()
        for byte in shape:
            if byte == ord('"'):
                quoted = not quoted
            elif quoted:
                commas_inside.add(field)
            else:
                field += 1
        if quoted or field + 1 != self.width:
            return False
        return not any(f <= self.counted or (self.tail and f == field) for f in commas_inside)


class Cleared:
    """A run the bulk checks could read: its lines, its "deleted" rows, and its odd lines.

    An odd line holds a value the patterns do not take (it may still be fine: " active"
    is not, "Mentor" may be a custom role): `csvcheck` reads it alone, and counts it if
    it is deleted; `deleted` counts the others.
    """

    def __init__(self, data: bytes, start: int, lines: int) -> None:
        self.data, self.start, self.lines = data, start, lines
        self.deleted = 0
        self.odd: list[tuple[int, bytes]] = []  # (its index in the run, the line)
        self._odd_end = -1  # the "\\n" ending the last odd line
        self._counted = (start, 0)  # a position and the "\\n"s before it from `start`

    @classmethod
    def scanned(cls, data: bytes, start: int, found: Scanned) -> Cleared:
        """What the row scanner found: `odd` holds (index, begin, end) of each odd line."""
        lines, deleted, odd = found
        cleared = cls(data, start, lines)
        cleared.deleted = deleted
        cleared.odd = [(index, data[begin:end]) for index, begin, end in odd]
        return cleared

    def note(self, match: re.Match[bytes]) -> None:
        """Take in what a pattern found at one "\\n" (see `csvquoted.QuotedPatterns`)."""
        at, found = match.start(), match.lastgroup
        if found == "deleted_start" or (found == "deleted_end" and at != self._odd_end):
            self.deleted += 1
        elif found == "bad_start":
            self._odd_end = self.data.index(b"\n", at + 1)
            self.odd.append((self._index(at), self.data[at + 1 : self._odd_end]))
        elif found == "bad_end" and at != self._odd_end:
            begin = self.data.rindex(b"\n", self.start, at)
            self.odd.append((self._index(begin), self.data[begin + 1 : at]))

    def odd_line(self, at: int) -> int:
        """Note the line that starts at `at` as odd; where the next line starts."""
        end = self.data.index(b"\n", at)
        self.odd.append((self._index(at - 1), self.data[at:end]))
        return end + 1

    def _index(self, at: int) -> int:
        """The index in the run of the line that starts after the "\\n" at `at`."""
        position, before = self._counted
        before += self.data.count(b"\n", position, at)
        self._counted = (at, before)
        return before
