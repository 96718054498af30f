"""What the provider's server and Canvas accept in a CSV: its headers and its row values.

Headers come from the provider's public source (indiana-university/
lms-canvas-3rdparty-provisioning: `FileParsingUtil`, `CsvService`): it joins the first
record's fields with commas and compares the line exactly to a list. That list is wider
than the README's table in two ways, and dropd follows the server: each optional trailing
column may be left out on its own as long as the order is kept (`,start_date,
blueprint_course_id` is taken), and courses may leave out `term_id`.

Row values are what Canvas's SIS import takes (instructure/canvas-lms,
`doc/api/sis_csv.md`, the "status" and "role" rows of each table); Canvas compares them
without regard to case. The provider makes a guest's login from the users `login_id`, and
skips a row whose `login_id` is no email address (`UserProvisioning`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from daemon.base.headers import HEADERS, KINDS, OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from daemon.base.names import quoted

STATUSES: dict[str, tuple[str, ...]] = {
    "users": ("active", "suspended", "deleted"),
    "courses": ("active", "deleted", "completed", "published"),
    "sections": ("active", "deleted"),
    "enrollments": ("active", "deleted", "completed", "inactive", "deleted_last_completed"),
}
ROLES = ("student", "teacher", "ta", "observer", "designer")
# Local part, domain labels, a top-level domain of letters: what a mail system delivers to.
# White space is ASCII's, as the row scanner takes it.
# Written with possessive steps (labels ending in a dot, then the top-level domain), which
# never need to give back, so a column of addresses is matched without backtracking.
EMAIL = r"[^\s@,\"]++@(?:[^\s@,\".]++\.)++[A-Za-z]{2,}+"
_EMAIL = re.compile(EMAIL, re.ASCII)
EMAIL_LINES = re.compile(f"{EMAIL}(?:\n{EMAIL})*+", re.ASCII)  # a column, one a line
_LOCAL = r"[^\s@,\"]++"


def emails_taken(column: Sequence[str]) -> bool:
    """Whether every value of `column` is an email address, as `EMAIL` takes one.

    A column's addresses mostly share their domain: where the first value's domain is
    taken, the column is matched against that domain written out, which the regular
    expression engine compares far faster than it walks the labels; any other value
    sends the column through `EMAIL_LINES`.
    """
    joined = "\n".join(column)
    first = column[0] if column else ""
    if _EMAIL.fullmatch(first) and _same_domain(first.rpartition("@")[2]).fullmatch(joined):
        return True
    return EMAIL_LINES.fullmatch(joined) is not None


@functools.lru_cache(maxsize=16)
def _same_domain(domain: str) -> re.Pattern[str]:
    at = "@" + re.escape(domain)
    return re.compile(f"{_LOCAL}{at}(?:\n{_LOCAL}{at})*+", re.ASCII)


@dataclass(frozen=True, slots=True)
class ValueRule:
    """A column whose values Canvas checks: `allowed` (lowercase), or none: an email address."""

    kind: str
    column: str
    index: int
    allowed: tuple[str, ...]

    def complaint(self, value: str) -> str | None:
        """Why Canvas or the provider would reject `value`, or None when it is fine."""
        if self.allowed:
            if value.lower() in self.allowed:
                return None
            return self._unknown(_shown(value))
        if _EMAIL.fullmatch(value):
            return None
        return (
            f'login_id "{_shown(value)}" is not an email address; the provider makes the '
            "guest's login from it and skips this row"
        )

    def _unknown(self, shown: str) -> str:
        known = ", ".join(self.allowed)
        if self.column == "role":
            return (
                f'role "{shown}" is none of Canvas\'s roles ({known}); Canvas rejects the row '
                "unless it is a custom role of your Canvas account"
            )
        return (
            f'status "{shown}" is not one Canvas takes for {self.kind} ({known}); Canvas '
            "rejects the row"
        )


def _shown(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def value_rules(kind: str, header: tuple[str, ...]) -> tuple[ValueRule, ...]:
    """The checked columns of a file of `kind` with this header, in column order."""
    wanted = {"status": STATUSES.get(kind), "role": ROLES if kind == "enrollments" else None}
    wanted["login_id"] = () if kind == "users" else None
    return tuple(
        ValueRule(kind, column, index, allowed)
        for index, column in enumerate(header)
        if (allowed := wanted.get(column)) is not None
    )


def header_complaint(line: str, fields: tuple[str, ...]) -> str:
    """Why the server refuses this header `line` (read as `fields`), and what to write."""
    if not line.strip():
        return (
            "line 1 is blank, but the server reads line 1 as the header; remove the blank "
            "lines above the header"
        )
    shown = ",".join(fields)
    names = [field.strip().lower() for field in fields]
    for header, kind in HEADERS.items():
        if sorted(names) == sorted(header):
            return (
                f"line 1: the header {quoted(shown)} differs from the {kind} header only by "
                f"{_differences(fields, names, header)}; the server compares it exactly, so "
                f'write "{",".join(header)}"'
            )
    return f"line 1: the header {quoted(shown)} is not one the server knows; {_nearest(names)}"


def _differences(fields: tuple[str, ...], names: list[str], header: tuple[str, ...]) -> str:
    found = [
        word
        for word, differs in (
            ("case", any(f.strip() != f.strip().lower() for f in fields)),
            ("spaces", any(f != f.strip() for f in fields)),
            ("column order", tuple(names) != header),
        )
        if differs
    ]
    return " and ".join(found)


def _columns(kind: str) -> set[str]:
    return {name for base in REQUIRED_COLUMNS[kind] for name in base} | set(OPTIONAL_COLUMNS[kind])


def _nearest(names: list[str]) -> str:
    kind = max(KINDS, key=lambda k: len(_columns(k) & set(names)))
    base = ",".join(REQUIRED_COLUMNS[kind][0])
    if not _columns(kind) & set(names):
        return (
            "line 1 must be one of the headers in the README (e.g. enrollments: "
            '"course_id,user_id,role,section_id,status"); if line 1 is data, add the header '
            "above it"
        )
    extra = [n for n in names if n not in _columns(kind)]
    required = set.intersection(*(set(b) for b in REQUIRED_COLUMNS[kind]))
    missing = [n for n in REQUIRED_COLUMNS[kind][0] if n in required and n not in names]
    said = [f"the server takes no {_listed(extra)}"] if extra else []
    said += [f"it lacks {_listed(missing)}"] if missing else []
    optional = ",".join(OPTIONAL_COLUMNS[kind])
    return (
        f'nearest is the {kind} header "{base}" (optionally followed by {optional}): '
        f"{' and '.join(said) or 'its columns repeat or are out of order'}"
    )


def _listed(names: list[str], most: int = 10) -> str:
    listed = ", ".join(quoted(name, 60) for name in names[:most])
    return listed + (f" and {len(names) - most:,} more" if len(names) > most else "")
