"""Tests of the compiled row scanner (daemon/checks/csv/_rowscan.c) against its twin, the
reference reader.

The scanner may answer for the lines it reads (plain, or quoted at field edges) only as the
reader's checks would: every file here
is checked twice, with the scanner (on one thread and on two) and without it, and the
answers must agree on findings, line numbers, rows and deleted rows.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import random
import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from daemon.base.headers import HEADERS
from daemon.checks.csv import check as csvcheck
from daemon.checks.csv.check import ALONE, SPLIT, RowScanner, Scanned, scan_csv
from daemon.checks.csv.formats import _EMAIL, value_rules

SCANNER = csvcheck.ROWSCAN
needs_scanner = pytest.mark.skipif(SCANNER is None, reason="the row scanner was not built")
ENROLLMENTS = (b"course_id", b"user_id", b"role", b"section_id", b"status")
MENTOR = b"C1,u1,Mentor,S1,deleted"  # odd: its deleted status is counted where it is read
USERS = (b"user_id", b"login_id", b"first_name", b"last_name", b"email", b"status")


def test_rowscan_is_built_where_a_c_compiler_is() -> None:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}): dropd runs without the row scanner")
    if os.environ.get("DROPD_ROWSCAN") == "off":
        pytest.skip("DROPD_ROWSCAN=off")
    assert SCANNER is not None, "pip install -e . should have built daemon/_rowscan.c"


def plain_lines(
    scanner: RowScanner, header: tuple[bytes, ...], body: bytes
) -> tuple[int, int, list[tuple[int, bytes] | tuple[int, int, bytes]], bytes]:
    """What the scanner finds in `body`: lines, deleted, the lines it gives back ((index,
    line) to split, (index, ALONE, line) to read alone), and the rest it leaves."""
    names = tuple(n.decode() for n in header)
    rules = value_rules(HEADERS[names], names)
    scanned = tuple((r.index, tuple(v.encode() for v in r.allowed)) for r in rules)
    status = names.index("status") if "status" in names else -1
    data = b"xx" + body  # not at the start of the data: the run's bounds are kept
    lines, deleted, odd, stop = scanner(data, 2, len(data), len(names), scanned, status)
    given = [(i, data[b:e]) if kind == SPLIT else (i, ALONE, data[b:e]) for i, b, e, kind in odd]
    return lines, deleted, given, data[stop:]


@needs_scanner
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"C1,u1,student,S1,active\n", (1, 0, [], b"")),
        (b"C1,u1,Student,S1,DELETED\r\nC1,u2,ta,S1,deleted\n", (2, 2, [], b"")),
        (b"C1,u1,Mentor,S1,deleted\nC1,u2,ta,S1,active\n", (2, 0, [(0, MENTOR)], b"")),
        (b"C1,u1,student,S1, active\n", (1, 0, [(0, b"C1,u1,student,S1, active")], b"")),
        (
            b"C1,u1,student,S1,act\xc3\xafve\n",
            (1, 0, [(0, b"C1,u1,student,S1,act\xc3\xafve")], b""),
        ),
        (b",,ta,,active\n", (1, 0, [], b"")),
        (b"C1,u1,student,S1\n", (1, 0, [(0, b"C1,u1,student,S1")], b"")),  # a field short
        (b"C1,u1,student,S1,active,x\n", (1, 0, [(0, b"C1,u1,student,S1,active,x")], b"")),
        (b"C1,u1,student,S1,active\n\n", (2, 0, [(1, b"")], b"")),  # a blank line
        (b"C1,u1,student,S1,active", (1, 0, [], b"")),  # the file's last line, unended
        # Quotes at field edges are read as the reader reads them: the text between them.
        (b'C1,u1,ta,S1,active\nC1,"u1",ta,S1,active\n', (2, 0, [], b"")),
        (b'C1,"u, 1",ta,S1,"Deleted"\r\n', (1, 1, [], b"")),
        (b'"C1","u1","ta","","active"', (1, 0, [], b"")),
        (b'C1,u1,ta,S1,active\n"C1,u1",ta,S1,active,x\n', (1, 0, [], b'"C1,u1",ta,S1,active,x\n')),
        # The reader takes over at the first line holding a quote anywhere but at a field's
        # edges, a quoted line it must word (a width or a value), a backslash or a lone CR.
        (b'C1,"u1"x,ta,S1,active\n', (0, 0, [], b'C1,"u1"x,ta,S1,active\n')),
        (b'C1,u"1,ta,S1,active\n', (0, 0, [], b'C1,u"1,ta,S1,active\n')),
        (b'C1, "u1",ta,S1,active\n', (0, 0, [], b'C1, "u1",ta,S1,active\n')),
        (b'C1,"u""1",ta,S1,active\n', (0, 0, [], b'C1,"u""1",ta,S1,active\n')),
        (b'C1,"u1,ta,S1,active\nC1\n', (0, 0, [], b'C1,"u1,ta,S1,active\nC1\n')),
        (b'C1,"u1",ta,S1,Mentor\n', (0, 0, [], b'C1,"u1",ta,S1,Mentor\n')),
        (b'C1,"u1",ta,S1\n', (0, 0, [], b'C1,"u1",ta,S1\n')),
        (b'C1,"u1",ta,S1,""\n', (0, 0, [], b'C1,"u1",ta,S1,""\n')),
        # A backslash and no quote: one record, given back for the reader to read alone.
        (
            b"C1,u\\1,ta,S1,active\nC1,u2,ta,S1,active\n",
            (2, 0, [(0, ALONE, b"C1,u\\1,ta,S1,active")], b""),
        ),
        (b"C1,u\\,1,ta,S1,x\\\r\n", (1, 0, [(0, ALONE, b"C1,u\\,1,ta,S1,x\\\r")], b"")),
        (b'C1,u\\1,"ta",S1,active\n', (0, 0, [], b'C1,u\\1,"ta",S1,active\n')),  # and a quote
        (
            b"C1,u1,ta,S1,active\rC1,u2,ta,S1,active\r",
            (0, 0, [], b"C1,u1,ta,S1,active\rC1,u2,ta,S1,active\r"),
        ),
        (b"C1,u1,ta,S1,active\r\nC1,u2,ta,S1,active\r", (1, 0, [], b"C1,u2,ta,S1,active\r")),
    ],
)
def test_rowscan_answers_for_plain_lines_and_stops_at_the_first_other(
    body: bytes, expected: tuple[int, int, list[tuple[int, bytes] | tuple[int, int, bytes]], bytes]
) -> None:
    assert SCANNER is not None
    assert plain_lines(SCANNER, ENROLLMENTS, body) == expected


@needs_scanner
def test_rowscan_takes_the_email_addresses_the_pattern_takes() -> None:
    assert SCANNER is not None
    alphabet = [b"a", b"Z", b"9", b"@", b".", b"-", b" ", b"\t", b"\x0b", b"\xc3\xa9", b"_"]
    rng = random.Random(4)
    values = [b"ann@example.edu", b"a@b.co", b"a@b.c", b"a@b.c0", b"a@b..co", b"a@.co"]
    values += [b"@b.co", b"a@b.co.", b"a@b", b"a@@b.co", b"\xc3\xa9@b.co", b"a@b.CO", b""]
    values += [b"".join(rng.choices(alphabet, k=rng.randrange(12))) for _ in range(4000)]
    # Longer ones, so that the local part's 16-byte steps stop in every place.
    letters = [b"a", b"b", b"c", b".", b"-", b"9"] * 4 + alphabet + [b"\r", b'"', b","]
    for _ in range(4000):
        local = b"".join(rng.choices(letters, k=rng.randrange(1, 40)))
        values.append(local + b"@" + rng.choice([b"example.edu", b"b.co", b"x"]))
    for value in values:
        text = value.decode("utf-8", "replace")
        expected = bool(_EMAIL.fullmatch(text) and len(text.split(",")) == 1)
        if b'"' not in value and b"\r" not in value:  # a quote or a lone CR: not for the scanner
            found = plain_lines(SCANNER, USERS, b"u1," + value + b",A,L,e,active\n")
            assert (not found[2]) == expected, value
        # The last value of a run, with no line end after it: nothing read past the run.
        data = b"xx" + b"u1," + value.replace(b'"', b"").replace(b"\r", b"")
        last = data[5:].decode("utf-8", "replace")
        lines, _, odd, stop = SCANNER(data, 2, len(data), 2, ((1, ()),), -1)
        if stop == len(data):
            taken = lines == 1 and not odd
            assert taken == bool(_EMAIL.fullmatch(last) and "," not in last), value


@needs_scanner
def test_rowscan_refuses_a_run_out_of_the_data() -> None:
    assert SCANNER is not None
    with pytest.raises(ValueError, match="out of range"):
        SCANNER(b"a,b\n", 0, 5, 2, (), -1)
    with pytest.raises(ValueError, match="out of range"):
        SCANNER(b"a,b\n", 3, 2, 2, (), -1)


class Counting:
    """The row scanner, counting the runs it answered for."""

    def __init__(self, scanner: RowScanner) -> None:
        self.scanner, self.answered = scanner, 0

    def __call__(self, *args: Any) -> Scanned:
        found = self.scanner(*args)
        self.answered += found[0] > 0
        return found


def random_csv(rng: random.Random, header: tuple[bytes, ...], lines: int, troubled: float) -> bytes:
    """A CSV of mostly good rows, with odd values, case, white space and CRs, and in a
    `troubled` share of lines short and long rows, blank lines, quotes of every shape and
    backslashes."""
    names = tuple(n.decode() for n in header)
    rules = {r.index: r for r in value_rules(HEADERS[names], names)}
    odd = [b"", b" active", b"Mentor", b"x@y", b"\xc3\xa9", b"delet\xc3\xa9d", b"a b@c.de"]
    rows = [b",".join(header)]
    for n in range(lines):
        fields = []
        for index in range(len(header)):
            rule = rules.get(index)
            if rule is None:
                fields.append(b"v%d" % n)
            elif rng.random() < 0.05:
                fields.append(rng.choice(odd))
            elif not rule.allowed:
                fields.append(rng.choice([b"u%d@example.edu" % n, b"U@Mail.Example.ORG"]))
            else:
                value = rng.choice(rule.allowed).encode()
                fields.append(value.upper() if rng.random() < 0.05 else value)
        row = b",".join(fields)
        trouble = rng.random() / troubled if troubled else 1.0
        if trouble < 0.25:
            row = row.rsplit(b",", 1)[0]
        elif trouble < 0.5:
            row += b",extra"
        elif trouble < 0.75:
            row = b""
        elif trouble < 0.95:
            row = _quoted(rng, fields)
        elif trouble < 1:  # a backslash: vanishing, escaping a comma, a quote or itself
            shape = rng.choice([b",a\\b", b",a\\,b", b",a\\\\b", b',a\\"b', b",a\\"])
            row = row.replace(b",", shape, 1)
        rows.append(row + (b"\r" if rng.random() < 0.1 else b""))
    return b"\n".join(rows) + b"\n"


def _quoted(rng: random.Random, fields: list[bytes]) -> bytes:
    """The row with a field quoted: at its edges (mostly), or in a way only the reader reads."""
    index = rng.randrange(len(fields))
    value = fields[index]
    shapes = [b'"%s"', b'"%s"', b'"%s, Jr."', b'""', b' "%s"', b'"%s"x', b'x"%s', b'"%s""a"']
    shapes += [b'"%s\r\nnext"', b'"%s']
    quoted = [*fields]
    quoted[index] = rng.choice(shapes).replace(b"%s", value)
    if rng.random() < 0.3:  # every field quoted
        quoted = [b'"%s"' % field for field in fields]
    return b",".join(quoted)


def findings(path: Path) -> tuple[object, ...]:
    scan = scan_csv(path, True)
    return (
        scan.problems.listed,
        scan.problems.more,
        scan.warnings.listed,
        scan.warnings.more,
        scan.rows,
        scan.deleted,
    )


@needs_scanner
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(
    "header", [ENROLLMENTS, USERS, (b"section_id", b"course_id", b"name", b"status")]
)
def test_rowscan_finds_what_the_python_checks_find(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, header: tuple[bytes, ...], seed: int
) -> None:
    assert SCANNER is not None
    rng = random.Random(seed)
    path = tmp_path / "f.csv"
    troubled = [0.0, 0.002, 0.04][seed % 3]
    path.write_bytes(random_csv(rng, header, rng.choice([400, 3000, 20000]), troubled))
    monkeypatch.setattr(csvcheck, "CHUNK_BYTES", rng.choice([97, 4096, 1 << 18]))
    counting = Counting(SCANNER)
    monkeypatch.setattr(csvcheck, "ROWSCAN", counting)
    with_scanner = findings(path)
    monkeypatch.setattr(csvcheck, "THREADED_BYTES", 0)  # two threads, whatever the size
    assert findings(path) == with_scanner
    monkeypatch.setattr(csvcheck, "ROWSCAN", None)
    assert findings(path) == with_scanner
    assert counting.answered > 0


@needs_scanner
def test_rowscan_off_in_the_environment_leaves_it_unused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROPD_ROWSCAN", "off")
    assert csvcheck._compiled() is None  # neither the scanner nor the UTF-8 check
    monkeypatch.delenv("DROPD_ROWSCAN")
    compiled = csvcheck._compiled()
    assert compiled is not None and compiled.plain_lines is SCANNER


# Bytes that make every kind of UTF-8 sequence, whole, cut, overlong, surrogate and past
# U+10FFFF, with ASCII runs long enough for the 16-byte steps.
_UTF8_PARTS = (
    b"a",
    b"plain ascii text, 16+",
    b"\xc3\xa9",
    b"\xe2\x82\xac",
    b"\xf0\x9f\x98\x80",
    b"\xc3",
    b"\xe2\x82",
    b"\xf0\x9f\x98",
    b"\x80",
    b"\xbf",
    b"\xc0\xaf",
    b"\xc1\xbf",
    b"\xe0\x80\xaf",
    b"\xe0\xa0\x80",
    b"\xed\x9f\xbf",
    b"\xed\xa0\x80",
    b"\xef\xbf\xbf",
    b"\xf0\x8f\xbf\xbf",
    b"\xf0\x90\x80\x80",
    b"\xf4\x8f\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\xf5\x80\x80\x80",
    b"\xff",
    b"\xfe",
    b"\n",
    b"\r\n",
)


def _first_bad(data: bytes) -> int:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return -1


@needs_scanner
def test_the_compiled_utf8_check_finds_the_first_byte_the_decoder_refuses() -> None:
    assert csvcheck.FIRST_BAD_UTF8 is not None
    rng = random.Random(16)
    for _ in range(20_000):
        data = b"".join(rng.choice(_UTF8_PARTS) for _ in range(rng.randint(0, 12)))
        assert csvcheck.FIRST_BAD_UTF8(data) == _first_bad(data), data
    for size in range(0, 70):  # every place a bad byte may take in and after 16-byte steps
        for bad in (b"\xff", b"\xc3", b"\xed\xa0\x80"):
            data = b"x" * size + bad + b"y" * 20
            assert csvcheck.FIRST_BAD_UTF8(data) == size


def _build_without_sse2(folder: Path) -> Any:
    """The row scanner compiled with SSE2 off: its one-byte-at-a-time paths alone."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("needs a C compiler on x86-64 (where the 16-byte steps are built)")
    source = Path(csvcheck.__file__).with_name("_rowscan.c")
    target = folder / "_rowscan.so"
    include = sysconfig.get_paths()["include"]
    if not Path(include, "Python.h").exists():
        pytest.skip(f"no Python headers in {include}")
    command = [compiler, "-O2", "-fPIC", "-shared", "-mno-sse2", f"-I{include}"]
    subprocess.run([*command, str(source), "-o", str(target)], check=True)
    spec = importlib.util.spec_from_file_location("scalar._rowscan", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_scanner
def test_the_scanner_without_sse2_finds_what_it_finds_with_it(tmp_path: Path) -> None:
    compiled = csvcheck._compiled()
    assert compiled is not None
    scalar = _build_without_sse2(tmp_path)
    rng = random.Random(5)
    parts = [b"a", b"bb", b",", b",", b"\n", b"\r\n", b"@", b"x@example.edu", b"active"]
    parts += [b"deleted", b"\xc3\xa9", b"\xff", b"\xed\xa0\x80", b'"', b"\\", b" "]
    parts += [b"Ann.Lee.Smithson123@mail.example.org", b'"Lee, Jr."']
    rules = ((1, ()), (2, (b"active", b"deleted")))
    for _ in range(20_000):
        data = b"".join(rng.choice(parts) for _ in range(rng.randint(0, 60)))
        assert scalar.first_bad_utf8(data) == compiled.first_bad_utf8(data), data
        expected = compiled.plain_lines(data, 0, len(data), 3, rules, 2)
        assert scalar.plain_lines(data, 0, len(data), 3, rules, 2) == expected, data
