"""Checking a batch's files as the provider's server would, before anything goes up.

The server fails a whole upload for one file it cannot type or parse, and reports row
problems only by email a day later. So every file is read here first: a *problem* is
what the server would refuse (the batch fails whole, listing each), a *warning* a row
value Canvas would reject later (logged and kept in the receipt). CSVs are read by
`csv.check`, with the server's own reading, against what `csv.formats` says the server
and Canvas take; a
`message.properties` is read as Java reads the copy that goes up (non-ASCII text as
\\uXXXX escapes), by `java_properties`. Every file is read in the group's `encoding`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.base.errors import Finding
from daemon.base.java_properties import UnicodeEscaper, read_properties
from daemon.base.opencsv import Unterminated, read_records
from daemon.base.regular import open_regular
from daemon.checks.csv.check import CsvScan, Notes, scan_csv
from daemon.checks.decoding import UTF8_FILES, Decoding
from daemon.config.model import Validation

PROPERTIES = "message.properties"
NOTIFICATION_KEYS = ("sender", "subject", "body")
MAX_PROPERTIES_BYTES = 1 << 20
# Java's Character.isWhitespace, which the server's StringUtils.isBlank uses: unlike
# str.isspace it leaves out the no-break spaces (U+00A0, U+2007, U+202F) and U+0085.
_JAVA_SPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \u1680\u2000\u2001\u2002\u2003\u2004\u2005"
_JAVA_SPACE += "\u2006\u2008\u2009\u200a\u2028\u2029\u205f\u3000"
# A backslash that is itself not escaped, then `u` without four hex digits.
_BAD_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u(?![0-9a-fA-F]{4})")

__all__ = [
    "Decoding",
    "Finding",
    "Report",
    "is_properties",
    "properties_encoding",
    "validate_batch",
]


@dataclass(frozen=True, slots=True)
class Report:
    """What checking a batch found, and what the later steps need to know of its files."""

    problems: tuple[Finding, ...]
    warnings: tuple[Finding, ...]
    kinds: Mapping[str, str]  # file name -> users, courses, ..., listings or properties
    bom: tuple[str, ...]  # CSVs that began with a UTF-8 byte-order mark
    rows: Mapping[str, int]  # data rows per CSV of a known kind (strict, or `count`)
    deleted: Mapping[str, int]  # rows with status `deleted`, per CSV that has a status


def is_properties(name: str) -> bool:
    """True for message.properties, in any case, as the server finds it."""
    return name.lower() == PROPERTIES


def validate_batch(
    files: Sequence[Path],
    validation: Validation,
    *,
    count: bool = False,
    decoding: Decoding = UTF8_FILES,
) -> Report:
    """Check `files` (CSVs and a message.properties), written in `decoding`, as the server
    would read their copies in the ZIP.

    With `Validation.OFF` only a file's encoding is checked (it reads in `decoding`, no NUL
    byte in a CSV) and a message.properties's escapes; kinds are still given where a header
    is known, and with `count` (the guard is on) rows and deleted rows too, from a strict
    pass whose findings are dropped. A large CSV is read on two threads.
    """
    strict = validation is Validation.STRICT
    problems: list[Finding] = []
    warnings: list[Finding] = []
    kinds: dict[str, str] = {}
    scans: dict[str, CsvScan] = {}
    counted: dict[str, CsvScan] = {}  # the scans that counted rows
    for path in files:
        if is_properties(path.name):
            continue
        scan = _scan(path, strict, decoding)
        scans[path.name] = scan
        problems += _findings(path.name, scan.problems, "problems")
        warnings += _findings(path.name, scan.warnings, "warnings")
        if scan.kind is not None:
            kinds[path.name] = scan.kind
            if strict or count:
                counted[path.name] = scan if strict else _scan(path, True, decoding)
    for path in files:
        if is_properties(path.name):
            kinds[path.name] = "properties"
            found = _check_properties(path, strict, "users" in kinds.values(), decoding)
            problems += found[0]
            warnings += found[1]
    return Report(
        problems=tuple(problems),
        warnings=tuple(warnings),
        kinds=kinds,
        bom=tuple(name for name, scan in scans.items() if scan.bom),
        rows={n: s.rows for n, s in counted.items()},
        deleted={n: s.deleted for n, s in counted.items() if s.deleted is not None},
    )


def _scan(path: Path, strict: bool, decoding: Decoding) -> CsvScan:
    try:
        return scan_csv(path, strict, decoding)
    except OSError as exc:
        scan = CsvScan()
        scan.problems.add(None, _unreadable(exc))
        return scan


def _unreadable(exc: OSError) -> str:
    # Links, FIFOs and devices are refused on opening (archive.open_regular).
    why = exc.strerror or str(exc)
    return f"the file cannot be read ({why}); it must be a regular file dropd's user can read"


def _findings(name: str, notes: Notes, sort: str) -> list[Finding]:
    listed = sorted(notes.listed, key=lambda note: note[0] or 0)
    found = [Finding(name, line, message) for line, message in listed]
    if notes.more:
        found.append(Finding(name, None, f"and {notes.more} more {sort} like these in this file"))
    return found


def _check_properties(
    path: Path, strict: bool, has_users: bool, decoding: Decoding
) -> tuple[list[Finding], list[Finding]]:
    try:
        with open_regular(path) as source:
            data = source.read(MAX_PROPERTIES_BYTES + 1)
    except OSError as exc:
        return [Finding(path.name, None, _unreadable(exc))], []
    if len(data) > MAX_PROPERTIES_BYTES:
        why = "is over 1 MiB; it needs only sender, subject and body: is it the right file?"
        return [Finding(path.name, None, f"{path.name} {why}")], []
    try:
        text = data.decode(_properties_codec(data, decoding.codec))
    except UnicodeDecodeError as exc:
        return [_not_decoded(path.name, exc, decoding)], []
    # Read as Java reads the copy that goes up: no byte-order mark (Java would read it as
    # part of the first key), ASCII, the rest as \uXXXX escapes.
    text = text.removeprefix("\ufeff")
    escaper = UnicodeEscaper()
    sent = (escaper.feed(text) + escaper.finish()).encode("ascii")
    try:
        values = read_properties(sent)
    except ValueError:
        return [_bad_escape(path.name, sent)], []
    if not strict:
        return [], []
    problems = [
        Finding(path.name, None, message)
        for key in NOTIFICATION_KEYS
        if (message := _key_problem(key, values)) is not None
    ]
    if not has_users:
        problems.append(Finding(path.name, None, _NO_USERS))
    if (unclosed := _unclosed_quote(path.name, sent.decode("ascii"))) is not None:
        problems.append(unclosed)
    return problems, []


def _unclosed_quote(name: str, text: str) -> Finding | None:
    """The server reads every uploaded file as a CSV first, message.properties too: a quote
    that never closes there fails the whole upload."""
    try:
        for _ in read_records([text]):
            pass
    except Unterminated as exc:
        shown = _first_line(exc.shown)
        return Finding(
            name,
            exc.line,
            f'line {exc.line} of {name} opens a quote that never closes ("{shown}"), '
            "and the server reads every file as a CSV first, so it refuses the whole upload; "
            'write a lone quote as \\" (Java reads it as a quote), or close it',
        )
    return None


def properties_encoding(path: Path, codec: str) -> str:
    """The encoding message.properties at `path` is read in, in a group whose files are in
    `codec`: UTF-8 where it reads as UTF-8, else `codec`."""
    try:
        with open_regular(path) as source:
            data = source.read(MAX_PROPERTIES_BYTES + 1)
    except OSError:
        return codec  # zipping it says why it cannot be read
    return _properties_codec(data, codec)


def _properties_codec(data: bytes, codec: str) -> str:
    # Written by hand in an editor, which saves UTF-8, where the CSVs beside it come from a
    # spreadsheet in the group's encoding; text that reads as UTF-8 is almost never meant
    # as cp1252 or the like.
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return codec
    return "utf-8"


def _not_decoded(name: str, exc: UnicodeDecodeError, decoding: Decoding) -> Finding:
    before = exc.object[: exc.start].decode(decoding.codec, "replace")
    line = before.count("\n") + 1
    shown = before[max(before.rfind("\n") + 1, len(before) - 30) :]
    return Finding(name, line, decoding.unreadable(line, exc.object[exc.start], shown))


_NO_USERS = (
    "message.properties asks the server to send new guests a custom notification, which "
    "it refuses without a users CSV in the same upload; add the users CSV to the batch, "
    "or take message.properties out"
)


def _key_problem(key: str, values: Mapping[str, str]) -> str | None:
    needs = "the custom notification needs sender, subject and body, none blank"
    if key not in values:
        return f'message.properties has no "{key}"; {needs}'
    if not values[key].strip(_JAVA_SPACE):
        return f'"{key}" in message.properties is blank; {needs}'
    return None


def _bad_escape(name: str, data: bytes) -> Finding:
    text = data.decode("latin-1")
    line = None
    for match in _BAD_ESCAPE.finditer(text):
        start = text.rfind("\n", 0, match.start()) + 1
        if not text[start:].lstrip(" \t\f").startswith(("#", "!")):  # Java skips comments
            line = text.count("\n", 0, match.start()) + 1
            break
    where = f"line {line} of {name}" if line else name
    return Finding(
        name,
        line,
        f"{where} has a malformed \\uXXXX escape, on which the server fails with an error "
        "500; write \\u and four hex digits (é is \\u00e9), or \\\\ for a backslash",
    )


def _first_line(text: str) -> str:
    line = text.split("\n", 1)[0]
    return line if len(line) <= 40 else line[:40] + "…"
