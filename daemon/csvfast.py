"""The bulk checks of a CSV's lines, on bytes, and the reading of one quoted record.

A run of whole lines is checked without a Python step per line. Keeping only its commas,
quotes and line ends (`bytes.translate`) gives each line's *shape*: all shapes must be the
header's (no quotes), or a few distinct shapes whose quotes pair up on the line, with the
header's field count and no quoted comma where the patterns below count commas. Then one
regular expression, tried at each line end, looks for a value Canvas would not take (a
lookbehind for the last column, a walk over the columns before it for another) and finds
the rows whose status is "deleted". Whatever does not pass is read line by line by
`csvcheck`, which says exactly what is wrong.
"""

from __future__ import annotations

import re
from itertools import chain

from daemon.csvformats import EMAIL, ValueRule

_KEEP = b',"\n'
_NOT_SHAPE = bytes(b for b in range(256) if b not in _KEEP)
_MAX_SHAPES = 4096  # distinct line shapes remembered


def split_record(text: bytes) -> list[bytes]:
    """The fields of one CSV record whose quotes pair up, unquoted ("" is one quote)."""
    parts = text.split(b'"')
    fields: list[bytes] = []
    current: list[bytes] = []
    for index, part in enumerate(parts):
        if index % 2:  # inside quotes
            current.append(part)
        elif part or index in (0, len(parts) - 1):
            first, *rest = part.split(b",")
            current.append(first)
            for piece in rest:
                fields.append(b"".join(current))
                current = [piece]
        else:  # nothing between a closing and an opening quote: a doubled quote
            current.append(b'"')
    fields.append(b"".join(current))
    return fields


class _Patterns:
    """The value pattern of one run: at a "\\n", about the line it ends or the one it starts.

    A match is a value not taken, or a "deleted" row where the `deleted` group matched:
    the branches for values not taken come first, so a deleted row never hides one.
    Values compare without regard to case, as Canvas does; `quoted`: they may be quoted.
    """

    def __init__(self, width: int, rules: tuple[ValueRule, ...], quoted: bool) -> None:
        self.quote = b'"?' if quoted else b""
        middle = [r for r in rules if r.index < width - 1]
        tail = [r for r in rules if r.index == width - 1]
        status = next((r.index for r in rules if r.column == "status"), None)
        ahead = [self._middle(middle)] if middle else []
        if status is not None and status < width - 1:
            ahead.append(b"(?=" + _skip(status) + self._value((b"deleted",)) + b",)(?P<deleted>)")
        self.head = re.compile(b"\n(?:" + b"|".join(ahead) + b")") if ahead else None
        self.ends = tuple(
            self._compile(tail, ahead, status == width - 1, e) for e in (b"\n", b"\r\n")
        )

    def _compile(
        self, tail: list[ValueRule], ahead: list[bytes], status_last: bool, end: bytes
    ) -> re.Pattern[bytes] | None:
        behind = [self._behind(rule.allowed, end, negative=True) for rule in tail]
        deleted = [self._behind(("deleted",), end, negative=False) + b"(?P<deleted>)"]
        branches = behind[:1] + ahead[:1] + (deleted if status_last else []) + ahead[1:]
        return re.compile(b"\n(?:" + b"|".join(branches) + b")") if branches else None

    def _value(self, allowed: tuple[bytes, ...]) -> bytes:
        return self.quote + b"(?i:" + b"|".join(re.escape(v) for v in allowed) + b")" + self.quote

    def _middle(self, rules: list[ValueRule], at: int = 0) -> bytes:
        """Matches after a line's start when a column of `rules` holds a value not taken."""
        rule, rest = rules[0], rules[1:]
        value = (
            self.quote + EMAIL + self.quote
            if not rule.allowed
            else self._value(tuple(v.encode() for v in rule.allowed))
        )
        check = b"(?!" + value + b",)"
        if rest:
            check = b"(?:" + check + b"|" + self._middle(rest, rule.index) + b")"
        return _skip(rule.index - at) + check

    def _behind(self, allowed: tuple[str, ...], end: bytes, negative: bool) -> bytes:
        """A line's last column is (not, if `negative`) one of `allowed`, then `end`."""
        forms = [b"," + v.encode() for v in allowed]
        forms += [b',"' + v.encode() + b'"' for v in allowed] if self.quote else []
        looks = [
            b"(?<" + (b"!" if negative else b"=") + b"(?i:" + re.escape(f) + b")" for f in forms
        ]
        looks = [look + re.escape(end) + b")" for look in looks]
        return b"".join(looks) if negative else b"(?:" + b"|".join(looks) + b")"


def _skip(columns: int) -> bytes:
    return b"[^,]*+," * columns


class FastChecks:
    """The bulk checks of a run of whole lines (see the module's docstring)."""

    def __init__(self, width: int, rules: tuple[ValueRule, ...]) -> None:
        self.width, self.shape = width, b"," * (width - 1) + b"\n"
        self.plain, self.quoted = _Patterns(width, rules, False), _Patterns(width, rules, True)
        # Columns the patterns find by counting commas: no quoted comma up to the last.
        middle = [r.index for r in rules if r.index < width - 1]
        self.counted = max(middle, default=-1)
        self.tail = any(r.index == width - 1 for r in rules)
        self.fits: dict[bytes, bool] = {}

    def run(self, data: bytes, start: int, end: int) -> tuple[int, int] | None:
        """Lines and `deleted` rows in `data[start:end]` if all is well, else None.

        `start` is `data`'s first "\\n", `end` just after its last.
        """
        shape = data.translate(None, _NOT_SHAPE)  # whole: no copy of `data` first
        shape = shape[shape.find(b"\n") : shape.rfind(b"\n") + 1]
        lines = shape.count(b"\n") - 1
        patterns = self.plain
        if shape != b"\n" + self.shape * lines:
            first = shape[: shape.index(b"\n", 1) + 1]
            same = shape == b"\n" + first[1:] * lines
            if not all(map(self._fits, [first[1:-1]] if same else set(shape.split(b"\n")[1:-1]))):
                return None
            patterns = self.quoted
        ends = patterns.ends[data.find(b"\r", start, end) >= 0]
        deleted = 0
        head = [m] if patterns.head and (m := patterns.head.match(data, start)) else []
        for match in chain(head, ends.finditer(data, start + 1, end) if ends else ()):
            if match.lastgroup is None:
                return None
            deleted += 1
        return lines, deleted

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
