"""Lines that hold quotes: reading one quoted record, and the value patterns `csvfast`
tries at each line end of a run whose quoted lines it can check in bulk.
"""

from __future__ import annotations

import re

from daemon.checks.csv.formats import EMAIL, ValueRule


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


class QuotedPatterns:
    """The value patterns of a run, tried at each "\\n" (`ends`) or at its first (`head`).

    Each branch names what it found: about the line the "\\n" ends, `bad_end` (its last
    column holds a value not taken) or `deleted_end`; about the line it starts, `bad_start`
    or `deleted_start`. One match reports one branch, and the branches about the ending
    line come first, so after one of those `head` is tried at the same "\\n". Values
    compare without regard to case, as Canvas does; `quoted`: they may be quoted.
    """

    def __init__(self, width: int, rules: tuple[ValueRule, ...], quoted: bool) -> None:
        self.quote = b'"?' if quoted else b""
        middle = [r for r in rules if r.index < width - 1]
        tail = [r for r in rules if r.index == width - 1]
        status = next((r.index for r in rules if r.column == "status"), None)
        ahead = [self._middle(middle) + b"(?P<bad_start>)"] if middle else []
        if status is not None and status < width - 1:
            deleted = self._value((b"deleted",))
            ahead.append(b"(?=" + skip_columns(status) + deleted + b",)(?P<deleted_start>)")
        self.head = re.compile(b"\n(?:" + b"|".join(ahead) + b")") if ahead else None
        self.ends = tuple(
            self._compile(tail, ahead, status == width - 1, e) for e in (b"\n", b"\r\n")
        )

    def _compile(
        self, tail: list[ValueRule], ahead: list[bytes], status_last: bool, end: bytes
    ) -> re.Pattern[bytes] | None:
        behind = [self._behind(r.allowed, end, negative=True) + b"(?P<bad_end>)" for r in tail]
        if status_last:
            behind.append(self._behind(("deleted",), end, negative=False) + b"(?P<deleted_end>)")
        branches = behind + ahead
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
        return skip_columns(rule.index - at) + check

    def _behind(self, allowed: tuple[str, ...], end: bytes, negative: bool) -> bytes:
        """A line's last column is (not, if `negative`) one of `allowed`, then `end`."""
        forms = [b"," + v.encode() for v in allowed]
        forms += [b',"' + v.encode() + b'"' for v in allowed] if self.quote else []
        looks = [
            b"(?<" + (b"!" if negative else b"=") + b"(?i:" + re.escape(f) + b")" for f in forms
        ]
        looks = [look + re.escape(end) + b")" for look in looks]
        return b"".join(looks) if negative else b"(?:" + b"|".join(looks) + b")"


def skip_columns(columns: int) -> bytes:
    return b"[^,]*+," * columns
