"""Validation of a batch's files as the provider's server would judge them.

Every test runs twice: with the compiled row scanner (where it was built) and with the
reference reader alone, as where no C compiler was at hand.
"""

from __future__ import annotations

import csv
import io
import os
import random
from pathlib import Path

import pytest

from daemon.checks.csv import check as csvcheck
from daemon.checks.validate import (
    Decoding,
    Finding,
    Report,
    properties_encoding,
    validate_batch,
)
from daemon.config.model import Validation

USERS = b"user_id,login_id,first_name,last_name,email,status\n"
COURSES = b"course_id,short_name,long_name,account_id,term_id,status\n"
SECTIONS = b"section_id,course_id,name,status\n"
ENROLLMENTS = b"course_id,user_id,role,section_id,status\n"
LISTINGS = b"user_id,listing_id\n"
GUEST = b"u1,ann@example.edu,Ann,Lee,ann@example.edu,active\n"
ENROLLED = b"C1,u1,student,S1,active\n"
PROPERTIES = b"sender=music@example.edu\nsubject=Welcome\nbody=Hello\n"


@pytest.fixture(autouse=True, params=["rowscan", "python"])
def row_checks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param == "rowscan" and csvcheck.ROWSCAN is None:
        pytest.skip("the row scanner was not built")
    if request.param == "python":
        monkeypatch.setattr(csvcheck, "ROWSCAN", None)
        monkeypatch.setattr(csvcheck, "FIRST_BAD_UTF8", None)


MUSIC = Decoding("utf-8", "groups.music.encoding")


def check(
    tmp_path: Path,
    files: dict[str, bytes],
    validation: Validation = Validation.STRICT,
    decoding: Decoding = MUSIC,
) -> Report:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return validate_batch([tmp_path / name for name in files], validation, decoding=decoding)


def lines_and_words(findings: tuple[Finding, ...]) -> list[tuple[int | None, str]]:
    return [(f.line, f.message) for f in findings]


def assert_findings(found: tuple[Finding, ...], expected: list[tuple[int | None, str]]) -> None:
    assert len(found) == len(expected), lines_and_words(found)
    for finding, (line, words) in zip(found, expected, strict=True):
        assert finding.line == line, lines_and_words(found)
        assert words in finding.message, lines_and_words(found)


@pytest.mark.parametrize(
    ("data", "kind", "rows"),
    [
        (USERS + GUEST, "users", 1),
        (USERS.replace(b"\n", b",service\n") + GUEST.replace(b"\n", b",x\n"), "users", 1),
        (COURSES + b'C1,MUS101,"Music, an introduction",A1,2026SP,active\n', "courses", 1),
        (COURSES.replace(b"\n", b",start_date,end_date,blueprint_course_id\n"), "courses", 0),
        (COURSES.replace(b"\n", b",start_date,blueprint_course_id\n"), "courses", 0),
        (COURSES.replace(b"term_id,", b"") + b"C1,M,Music,A1,active\n", "courses", 1),
        (
            SECTIONS.replace(b"\n", b",start_date,end_date\n") + b"S1,C1,Sec,active,,\n",
            "sections",
            1,
        ),
        (SECTIONS.replace(b"\n", b",end_date\n") + b"S1,C1,Sec,active,2026-05-01\n", "sections", 1),
        (ENROLLMENTS + ENROLLED * 3, "enrollments", 3),
        (ENROLLMENTS.replace(b"\n", b",limit_section_privileges\n"), "enrollments", 0),
        (LISTINGS + b"u1,L1\n", "listings", 1),
        (b"user_id,listing_id,send_email\nu1,L1,true\n", "listings", 1),
        (b'"user_id","listing_id"\n"u1","L1"\n', "listings", 1),  # the server parses line 1
    ],
)
def test_validate_batch_accepts_each_known_kind(
    tmp_path: Path, data: bytes, kind: str, rows: int
) -> None:
    report = check(tmp_path, {"f.csv": data})
    assert report.problems == report.warnings == ()
    assert report.kinds == {"f.csv": kind}
    assert report.rows == {"f.csv": rows}


GOOD = ENROLLMENTS + ENROLLED
CSV_CASES: list[tuple[str, bytes, list[tuple[int | None, str]], list[tuple[int | None, str]]]] = [
    ("header only", ENROLLMENTS, [], []),
    ("crlf", GOOD.replace(b"\n", b"\r\n") * 1, [], []),
    ("no final line end", GOOD.rstrip(b"\n"), [], []),
    ("quoted comma", ENROLLMENTS + b'C1,u1,student,"S1, north",active\n', [], []),
    ("quoted line break", ENROLLMENTS + b'C1,u1,student,"S1\nnorth",active\n' + ENROLLED, [], []),
    ("doubled quotes", ENROLLMENTS + b'C1,"u""1",student,S1,active\n', [], []),
    ("quoted crlf row", ENROLLMENTS + b'"C1","u1","student","S1","active"\r\n', [], []),
    ("utf-8 names", USERS + "u1,é@example.edu,Zoë,Ødegård,é@example.edu,active\n".encode(), [], []),
    (
        "ragged rows",
        GOOD + b"C1,u2,student,active\n" + ENROLLED + b"C1,u3,student,S1,active,x\n",
        [(3, "line 3 has 4 fields, the header has 5"), (5, "line 5 has 6 fields")],
        [],
    ),
    (
        "ragged after a quoted line break",
        ENROLLMENTS + b'C1,u1,student,"S1\nnorth",active\nC1,u2,S1,active\n',
        [(4, "line 4 has 4 fields, the header has 5: the server drops this row without a word")],
        [],
    ),
    (
        "ragged row over two lines",
        ENROLLMENTS + b'C1,"u1\nu2",student,active\n',
        [(2, "the row on lines 2-3 has 4 fields")],
        [],
    ),
    (
        "unterminated quote",
        GOOD + b'C1,"u2,student,S1,active\n' + ENROLLED,
        [(3, "never closes, so the server refuses the whole upload")],
        [],
    ),
    (
        "latin-1 bytes",
        USERS
        + GUEST
        + "u2,jose@example.edu,José,Núñez,jose@example.edu,active\n".encode("latin-1"),
        [(3, 'line 3 is not valid UTF-8 (byte 0xE9 after "u2,jose@example.edu,Jos")')],
        [],
    ),
    ("utf-8 cut at the end", LISTINGS + b"u1,L1\xc3", [(2, "line 2 is not valid UTF-8")], []),
    ("nul byte", GOOD + b"C1,u2\0,student,S1,active\n", [(3, "line 3 holds a NUL byte")], []),
    (
        "unknown header",
        b"course,user,role\nC1,u1,student\n",
        [(1, 'the header "course,user,role" is not one the server knows')],
        [],
    ),
    (
        "header in other case",
        b"Course_ID,User_ID,Role,Section_ID,Status\n" + ENROLLED,
        [(1, "differs from the enrollments header only by case; the server compares")],
        [],
    ),
    (
        "header with spaces",
        b"course_id, user_id, role, section_id, status\n" + ENROLLED,
        [(1, 'only by spaces; the server compares it exactly, so write "course_id,user_id,')],
        [],
    ),
    (
        "header in other order",
        b"user_id,course_id,role,section_id,status\n" + ENROLLED,
        [(1, "differs from the enrollments header only by column order")],
        [],
    ),
    (
        "header with a column the server does not take",
        b"course_id,user_id,role,section_id,status,notify\n" + ENROLLED.replace(b"\n", b",1\n"),
        [(1, 'nearest is the enrollments header "course_id,user_id,role,section_id,status"')],
        [],
    ),
    ("no header", ENROLLED * 2, [(1, "if line 1 is data, add the header")], []),
    ("empty file", b"", [(None, "the file is empty")], []),
    ("blank first line", b"\n" + GOOD, [(1, "line 1 is blank")], []),
    ("utf-16", "course_id,user_id\n".encode("utf-16"), [(None, "the file is UTF-16")], []),
    ("a workbook", b"PK\x03\x04\x14\x00\x06\x00", [(None, "an Excel workbook")], []),
    ("old mac line ends", GOOD.replace(b"\n", b"\r"), [], []),  # opencsv reads CR-only ends
    ("blank line at the end", GOOD + b"\n", [], []),
    ("blank crlf line at the end", GOOD.replace(b"\n", b"\r\n") + b"\r\n", [], []),
    ("blank line inside", GOOD + b"\n" + ENROLLED, [], [(3, "line 3 is blank; remove it")]),
    ("spaces-only line", GOOD + b"  \n" + ENROLLED, [], [(3, "line 3 is blank")]),
    ("two blank lines at the end", GOOD + b"\n\n", [], [(3, "line 3 is blank")]),
]


@pytest.mark.parametrize(
    ("data", "problems", "warnings"),
    [case[1:] for case in CSV_CASES],
    ids=[case[0] for case in CSV_CASES],
)
def test_validate_batch_judges_each_csv_case(
    tmp_path: Path,
    data: bytes,
    problems: list[tuple[int | None, str]],
    warnings: list[tuple[int | None, str]],
) -> None:
    report = check(tmp_path, {"f.csv": data})
    assert_findings(report.problems, problems)
    assert_findings(report.warnings, warnings)
    assert all(f.file == "f.csv" for f in report.problems + report.warnings)


def test_validate_batch_takes_a_byte_order_mark_off_and_notes_it(tmp_path: Path) -> None:
    report = check(tmp_path, {"bom.csv": b"\xef\xbb\xbf" + GOOD, "plain.csv": GOOD})
    assert report.problems == ()
    assert report.bom == ("bom.csv",)
    assert report.kinds == {"bom.csv": "enrollments", "plain.csv": "enrollments"}


VALUE_CASES = [
    ("enrollments status", ENROLLMENTS + b"C1,u1,student,S1,gone\n", 'status "gone"'),
    ("enrollments role", ENROLLMENTS + b"C1,u1,tutor,S1,active\n", 'role "tutor" is none of'),
    ("users status", USERS + GUEST.replace(b"active", b"completed"), 'status "completed"'),
    ("users login_id", USERS + GUEST.replace(b"ann@example.edu,Ann", b"ann,Ann"), 'login_id "ann"'),
    ("courses status", COURSES + b"C1,M,Music,A1,T1,inactive\n", 'status "inactive" is not one'),
    ("sections status", SECTIONS + b"S1,C1,Sec,completed\n", 'status "completed" is not one'),
    ("quoted role", ENROLLMENTS + b'C1,u1,"tutor",S1,active\n', 'role "tutor"'),
    ("status with a space", ENROLLMENTS + b"C1,u1,student,S1, active\n", 'status " active"'),
    (
        "role in a middle column",
        ENROLLMENTS + b"C1,u1,ta,S1,deleted\nC1,u2,x,S1,active\n",
        'role "x"',
    ),
]


@pytest.mark.parametrize(
    ("data", "words"), [c[1:] for c in VALUE_CASES], ids=[c[0] for c in VALUE_CASES]
)
def test_validate_batch_warns_of_row_values_canvas_rejects(
    tmp_path: Path, data: bytes, words: str
) -> None:
    report = check(tmp_path, {"f.csv": data})
    assert report.problems == ()
    last = data.rstrip(b"\n").count(b"\n") + 1
    assert_findings(report.warnings, [(last, f"line {last}: {words}")])


@pytest.mark.parametrize(
    "row",
    [
        b"C1,u1,Student,S1,Active\n",  # Canvas compares without regard to case
        b'"C1","u1","teacher","S1","deleted_last_completed"\n',
        b"C1,u1,designer,S1,inactive\r\n",
        b'C1,"u1, u2",observer,S1,"completed"\n',
    ],
)
def test_validate_batch_takes_values_canvas_takes(tmp_path: Path, row: bytes) -> None:
    report = check(tmp_path, {"f.csv": ENROLLMENTS + row * 3})
    assert report.problems == report.warnings == ()


def test_validate_batch_lists_twenty_findings_per_file_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    rows = b"C1,u1,student\n" * 25 + b"C1,u1,student,S1,gone\n" * 30
    report = check(tmp_path, {"f.csv": ENROLLMENTS + rows})
    assert len(report.problems) == len(report.warnings) == 21
    assert report.problems[0].line == 2
    assert report.problems[-1] == Finding(
        "f.csv", None, "and 5 more problems like these in this file"
    )
    assert report.warnings[0].line == 27
    assert report.warnings[-1].message == "and 10 more warnings like these in this file"


@pytest.mark.parametrize(
    ("data", "rows", "deleted"),
    [
        (ENROLLMENTS + ENROLLED * 2 + b"C1,u2,ta,S1,deleted\n", 3, 1),
        (ENROLLMENTS + b'C1,u1,ta,S1,Deleted\nC1,u2,ta,S1,"deleted"\n', 2, 2),
        (ENROLLMENTS + b"C1,u1,ta,S1, deleted\nC1,u1,ta,S1,deleted_last_completed\n", 2, 1),
        (
            ENROLLMENTS.replace(b"\n", b",limit_section_privileges\n")
            + b"C1,u1,ta,S1,deleted,true\nC1,deleted,ta,S1,active,deleted\n",
            2,
            1,
        ),
        (USERS.replace(b"\n", b",service\n") + GUEST.replace(b"active", b"deleted,x"), 1, 1),
        (USERS + GUEST + b"\n" + GUEST + b"\n", 2, 0),
    ],
)
def test_validate_batch_counts_rows_and_deleted_rows(
    tmp_path: Path, data: bytes, rows: int, deleted: int
) -> None:
    report = check(tmp_path, {"f.csv": data})
    assert report.rows == {"f.csv": rows}
    assert report.deleted == {"f.csv": deleted}


def test_validate_batch_counts_no_deleted_without_a_status_column(tmp_path: Path) -> None:
    report = check(tmp_path, {"l.csv": LISTINGS + b"u1,deleted\n", "x.csv": b"a,status\n1,2\n"})
    assert report.rows == {"l.csv": 1}
    assert report.deleted == {}


def test_validate_batch_off_checks_only_the_encoding(tmp_path: Path) -> None:
    files = {
        "ragged.csv": ENROLLMENTS + b"C1,u1\n\nC1,u2,nobody,S1,gone\n",
        "unknown.csv": b"whatever\n",
        "latin.csv": USERS + b"u1,a@b.edu,Jos\xe9,N,a@b.edu,active\n",
        "nul.csv": LISTINGS + b"u1\0,L1\n",
        "message.properties": b"subject=no sender, no body\n",
    }
    report = check(tmp_path, files, Validation.OFF)
    assert_findings(report.problems, [(2, "not valid UTF-8"), (2, "NUL byte")])
    assert [f.file for f in report.problems] == ["latin.csv", "nul.csv"]
    assert report.warnings == ()
    assert report.kinds == {
        "ragged.csv": "enrollments",
        "latin.csv": "users",
        "nul.csv": "listings",
        "message.properties": "properties",
    }
    assert report.rows == report.deleted == {}


PROPERTIES_CASES = [
    ("complete", PROPERTIES, []),
    ("keys in any case", b"Sender=a@b.edu\nSUBJECT=Hi\nBody=Hello\n", []),
    ("escapes", PROPERTIES + b"body=Caf\\u00e9, na\\u00efve\\n\\tbye\n", []),
    ("continuation lines", b"sender=a@b.edu\nsubject=Hi\nbody=Hello \\\n    world\n", []),
    ("a no-break space is not blank to Java", PROPERTIES + b"body=\\u00a0\n", []),
    ("missing key", b"sender=a@b.edu\nbody=Hello\n", [(None, 'has no "subject"')]),
    (
        "blank body",
        PROPERTIES + b"body=   \\t\n",
        [(None, '"body" in message.properties is blank')],
    ),
    ("body blank once continued", PROPERTIES + b"body=\\\n  \n", [(None, '"body"')]),
    (
        "bad unicode escape",
        b"sender=a@b.edu\n# \\uZZ in a comment is skipped\nsubject=Caf\\u00g9\nbody=x\n",
        [(3, "line 3 of message.properties has a malformed \\uXXXX escape")],
    ),
    # A byte-order mark is taken off the copy that goes up, as a CSV's is: nothing to fix.
    ("byte-order mark", b"\xef\xbb\xbf" + PROPERTIES, []),
]


@pytest.mark.parametrize(
    ("data", "problems"), [c[1:] for c in PROPERTIES_CASES], ids=[c[0] for c in PROPERTIES_CASES]
)
def test_validate_batch_reads_message_properties_as_java_does(
    tmp_path: Path, data: bytes, problems: list[tuple[int | None, str]]
) -> None:
    report = check(tmp_path, {"users.csv": USERS + GUEST, "message.properties": data})
    assert_findings(report.problems, problems)
    assert {f.file for f in report.problems} <= {"message.properties"}
    assert report.kinds["message.properties"] == "properties"


def test_validate_batch_wants_a_users_csv_with_message_properties(tmp_path: Path) -> None:
    report = check(tmp_path, {"e.csv": GOOD, "message.properties": PROPERTIES})
    assert_findings(report.problems, [(None, "refuses without a users CSV")])


def test_validate_batch_takes_utf8_text_in_message_properties_as_it_goes_up_escaped(
    tmp_path: Path,
) -> None:
    # Java reads the file as ISO-8859-1; the copy in the ZIP holds \u00e9, read as written.
    data = b"sender=a@b.edu\nsubject=Caf\xc3\xa9\nbody=\xe2\x82\xac \xf0\x9f\x8e\xb5\n"
    report = check(tmp_path, {"users.csv": USERS + GUEST, "message.properties": data})
    assert report.problems == report.warnings == ()


def test_validate_batch_finds_message_properties_in_any_case(tmp_path: Path) -> None:
    report = check(tmp_path, {"e.csv": GOOD, "Message.Properties": PROPERTIES})
    assert report.kinds["Message.Properties"] == "properties"
    assert_findings(report.problems, [(None, "refuses without a users CSV")])


def test_validate_batch_refuses_message_properties_not_in_the_group_encoding(
    tmp_path: Path,
) -> None:
    data = PROPERTIES + b"# from a Java tool\nbody=Caf\xe9\n"
    report = check(tmp_path, {"users.csv": USERS + GUEST, "message.properties": data})
    assert_findings(
        report.problems,
        [(5, 'line 5 is not valid UTF-8 (byte 0xE9 after "body=Caf"); save the file as UTF-8')],
    )
    assert "or set groups.music.encoding to the file's encoding" in report.problems[0].message
    cp1252 = Decoding("cp1252", "groups.music.encoding")
    report = check(
        tmp_path, {"users.csv": USERS + GUEST, "message.properties": data}, decoding=cp1252
    )
    assert report.problems == ()


def test_validate_batch_off_still_refuses_a_bad_escape(tmp_path: Path) -> None:
    report = check(tmp_path, {"message.properties": b"body=\\u12\n"}, Validation.OFF)
    assert_findings(report.problems, [(1, "malformed \\uXXXX escape")])


def test_validate_batch_reports_a_file_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(GOOD)
    (tmp_path / "link.csv").symlink_to(tmp_path / "secret")
    (tmp_path / "folder.csv").mkdir()
    report = validate_batch([tmp_path / "link.csv", tmp_path / "folder.csv"], Validation.STRICT)
    assert_findings(report.problems, [(None, "cannot be read"), (None, "cannot be read")])


def test_validate_batch_stops_at_a_line_that_never_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csvcheck, "CHUNK_BYTES", 64)
    monkeypatch.setattr(csvcheck, "LONG_LINE_BYTES", 1000)
    endless = GOOD + b"C1," + b"x" * 2000 + b"\n" + b"junk\n"
    runaway = GOOD + b'C1,u2,student,"S1\n' + b"x\n" * 1000
    report = check(tmp_path, {"endless.csv": endless, "runaway.csv": runaway})
    assert_findings(
        report.problems,
        [(3, "line 3 runs for over"), (3, "line 3: a quote opened on this record is still open")],
    )


def test_finding_to_json() -> None:
    assert Finding("a.csv", 3, "why").to_json() == {"file": "a.csv", "line": 3, "message": "why"}


# Chunk boundaries: a quoted field with a line break, a CRLF and multi-byte characters
# each straddle some chunk size from 1 byte up; the answer must not change.
STRADDLING = (
    b"\xef\xbb\xbf"
    + ENROLLMENTS.replace(b"\n", b"\r\n")
    + b'C1,"u1,\r\n\xc3\xa9\xe2\x82\xac\xf0\x9f\x8e\xb5",student,S1,active\r\n'
    + "C1,ü,ta,S1,deleted\r\n".encode() * 3
    + b"C1,u2,student,S1\r\n"
    + b'C1,u3,"x""y",S1,Deleted\r\n'
    + b"\r\n"
    + b"C1,u4,teacher,S1,active\r\n"
    + b"C1,u5\xff,student,S1,active\r\n"
)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 11, 16, 31, 64, 1 << 20])
def test_validate_batch_does_not_depend_on_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(csvcheck, "CHUNK_BYTES", chunk)
    report = check(tmp_path, {"f.csv": STRADDLING})
    assert_findings(
        report.problems,
        [(7, "line 7 has 4 fields, the header has 5"), (11, "line 11 is not valid UTF-8")],
    )
    assert_findings(report.warnings, [(8, 'role "x"y"'), (9, "line 9 is blank")])
    assert report.rows == {"f.csv": 8}
    assert report.deleted == {"f.csv": 4}
    assert report.bom == ("f.csv",)


def reference_ragged_lines(data: bytes, width: int) -> tuple[list[int], int]:
    """The starting lines of rows whose field count is wrong, and the rows, by the csv module."""
    physical = data.split(b"\n")
    reader = csv.reader(io.StringIO(data.decode(), newline=""))
    next(reader)
    ragged, rows, start = [], 0, reader.line_num + 1
    for record in reader:
        blank = reader.line_num == start and not physical[start - 1].strip()
        if not blank:
            rows += 1
            if len(record) != width:
                ragged.append(start)
        start = reader.line_num + 1
    return ragged, rows


def random_field(rng: random.Random) -> str:
    text = "".join(rng.choice('ab,"\n é') for _ in range(rng.randint(0, 6)))
    needs_quotes = any(c in text for c in ',"\n') or rng.random() < 0.2
    return '"' + text.replace('"', '""') + '"' if needs_quotes else text


@pytest.mark.parametrize("seed", range(40))
def test_validate_batch_counts_fields_as_the_csv_module_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    monkeypatch.setattr(csvcheck, "CHUNK_BYTES", rng.choice([3, 8, 40, 200, 5000]))
    records = [
        ",".join(random_field(rng) for _ in range(rng.choice([2, 2, 2, 2, 1, 3])))
        for _ in range(rng.randint(1, 60))
    ]
    end = rng.choice(["\n", "\r\n"])
    data = (LISTINGS.decode().replace("\n", end) + end.join(records) + end).encode()
    report = check(tmp_path, {"f.csv": data})
    ragged, rows = reference_ragged_lines(data, 2)
    assert [f.line for f in report.problems if "fields" in f.message] == ragged[:20]
    assert report.rows == {"f.csv": rows}


@pytest.mark.skipif(os.name != "posix", reason="a FIFO")
def test_validate_batch_never_opens_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.csv")
    report = validate_batch([tmp_path / "pipe.csv"], Validation.STRICT)
    assert_findings(report.problems, [(None, "cannot be read")])


ROLE_POOL = ["student"] * 20 + ["Teacher", "ta", "TA", "observer", "designer", "tutor", " ta"]
STATUS_POOL = ["active"] * 20 + ["deleted"] * 4 + ["Deleted", "completed", "gone", ""]


def random_enrollment(rng: random.Random, width: int) -> list[str]:
    ids = [f"C{rng.randint(1, 9)}", f"u{rng.randint(1, 999)}"]
    if rng.random() < 0.05:
        ids[1] = rng.choice(["a, b", 'say "hi"', "two\nlines"])
    row = [*ids, rng.choice(ROLE_POOL), f"S{rng.randint(1, 5)}", rng.choice(STATUS_POOL)]
    row += [rng.choice(["true", "false"])] * (width - 5)
    if rng.random() < 0.02:
        row.pop()
    return row


def write_row(row: list[str], quote_all: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")  # quotes "\n"
    if not quote_all:
        writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(row)
    return out.getvalue().removesuffix("\r\n")


@pytest.mark.parametrize("seed", range(30))
def test_validate_batch_judges_row_values_as_a_plain_reading_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    width = rng.choice([5, 6])  # 6: with limit_section_privileges, status is not last
    header = ENROLLMENTS.decode().rstrip("\n") + ",limit_section_privileges" * (width - 5)
    rows = [random_enrollment(rng, width) for _ in range(rng.randint(50, 400))]
    quote_all = rng.random() < 0.3
    end = rng.choice(["\n", "\r\n"])
    data = (end.join([header] + [write_row(r, quote_all) for r in rows]) + end).encode()
    line, expected, deleted = 2, [], 0
    for row in rows:
        if len(row) == width:
            role, status = row[2], row[4]
            if role.lower() not in ("student", "teacher", "ta", "observer", "designer"):
                expected.append(line)
            if status.lower() not in ("active", "deleted", "completed", "inactive"):
                expected.append(line)
            deleted += status.strip().lower() == "deleted"
        line += 1 + sum(field.count("\n") for field in row)
    for chunk in (rng.choice([7, 50, 300]), 1 << 20):
        monkeypatch.setattr(csvcheck, "CHUNK_BYTES", chunk)
        report = check(tmp_path, {"f.csv": data})
        listed = [f.line for f in report.warnings if f.line is not None]
        assert listed == sorted(expected)[:20]
        assert report.deleted == {"f.csv": deleted}
        assert report.rows == {"f.csv": len(rows)}
        assert len(report.problems) == min(sum(len(r) != width for r in rows), 20)


@pytest.mark.parametrize(
    "data",
    [case[1] for case in CSV_CASES] + [b"\xef\xbb\xbf" + GOOD, b"x" * 70_000 + b"\n" + GOOD],
    ids=[case[0] for case in CSV_CASES] + ["bom", "a header longer than a read"],
)
def test_csv_kind_is_the_kind_the_whole_scan_finds(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    assert csvcheck.csv_kind(path) == csvcheck.scan_csv(path, strict=False).kind


def test_csv_kind_of_a_file_it_cannot_read_is_none(tmp_path: Path) -> None:
    assert csvcheck.csv_kind(tmp_path / "missing.csv") is None


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_validate_batch_counts_deleted_rows_however_many(tmp_path: Path, share: float) -> None:
    # Few deleted rows are found one by one, many are counted in bulk: the same answer.
    rng = random.Random(int(share * 10))
    statuses = [b"deleted" if rng.random() < share else b"active" for _ in range(20_000)]
    statuses[5] = b"Deleted"  # counted, though not as written
    rows = b"".join(b"C1,u%d,student,S1,%s\n" % (i, s) for i, s in enumerate(statuses))
    bad = b"C1,u0,tutor,S1,deleted\n"  # a warning, and still a deleted row
    report = check(tmp_path, {"f.csv": ENROLLMENTS + rows + bad + rows})
    deleted = 2 * sum(s.lower() == b"deleted" for s in statuses) + 1
    assert report.deleted == {"f.csv": deleted}
    assert report.rows == {"f.csv": 40_001}
    assert [f.line for f in report.warnings] == [20_002]


# --- a group's `encoding` ------------------------------------------------------------------

CP1252 = Decoding("cp1252", "groups.music.encoding")
RENEE = "u2,renee@example.edu,Renée,Dupré,renee@example.edu,active\n"


def test_validate_batch_names_the_line_and_the_encoding_setting_of_bytes_not_utf8(
    tmp_path: Path,
) -> None:
    report = check(tmp_path, {"users.csv": USERS + GUEST + RENEE.encode("cp1252")})
    assert_findings(
        report.problems,
        [
            (
                3,
                'line 3 is not valid UTF-8 (byte 0xE9 after "u2,renee@example.edu,Ren"); save '
                'the file as UTF-8 (in Excel: "CSV UTF-8"), or set groups.music.encoding to the '
                'file\'s encoding, such as "cp1252"',
            )
        ],
    )


def test_validate_batch_reads_a_cp1252_csv_in_its_group_encoding(tmp_path: Path) -> None:
    data = (USERS + GUEST + RENEE.encode("cp1252")).replace(b"\n", b"\r\n")
    report = check(
        tmp_path, {"users.csv": data + b"u3,x@y.edu,\x80uro,Z,x@y.edu,deleted\r\n"}, decoding=CP1252
    )
    assert report.problems == report.warnings == ()
    assert report.kinds == {"users.csv": "users"}
    assert report.rows == {"users.csv": 3}
    assert report.deleted == {"users.csv": 1}


def test_validate_batch_refuses_a_utf8_csv_in_a_cp1252_group_that_would_go_up_garbled(
    tmp_path: Path,
) -> None:
    # Every byte reads in cp1252 too, so only reading it as UTF-8 shows what it is.
    data = USERS + GUEST + RENEE.encode() + b"u3,x@y.edu,Zo\xc3\xab,Z,x@y.edu,active\n"
    report = check(tmp_path, {"users.csv": data}, decoding=CP1252)
    assert_findings(
        report.problems,
        [
            (
                3,
                'line 3 reads as UTF-8 ("u2,renee@example.edu,Renée,Dupré,renee@example.edu,'
                'a"), and so does the whole file, but groups.music.encoding is "cp1252", which '
                'would send "u2,renee@example.edu,RenÃ©e,DuprÃ©,renee@example.edu,a"; set '
                'groups.music.encoding to "utf-8", or save the file in cp1252',
            )
        ],
    )
    assert report.rows == {"users.csv": 3}  # the rows are still checked, as cp1252 reads them


def test_validate_batch_refuses_a_byte_the_group_encoding_does_not_have(tmp_path: Path) -> None:
    # 0x81 is one of the five bytes cp1252 leaves undefined: the file is not cp1252.
    data = USERS + GUEST + b"u2,a@b.edu,A\x81,B,a@b.edu,active\n" + b"u3,,\n"
    report = check(tmp_path, {"users.csv": data}, decoding=CP1252)
    assert_findings(
        report.problems,
        [
            (
                3,
                'line 3 is not valid cp1252 (byte 0x81 after "u2,a@b.edu,A"); save the file in '
                "cp1252, or set groups.music.encoding to the file's encoding",
            ),
            (4, "line 4 has 3 fields"),  # the rows are still checked, as best they read
        ],
    )


def test_validate_batch_off_still_reads_each_file_in_the_group_encoding(tmp_path: Path) -> None:
    files = {"users.csv": USERS + b"u1\x81\n", "nul.csv": LISTINGS + "é\0,L\n".encode("cp1252")}
    report = check(tmp_path, files, Validation.OFF, CP1252)
    assert_findings(report.problems, [(2, "not valid cp1252"), (2, "line 2 holds a NUL byte")])
    assert report.kinds == {"users.csv": "users", "nul.csv": "listings"}


def test_validate_batch_reads_utf16_where_the_group_says_so(tmp_path: Path) -> None:
    data = (USERS + GUEST).decode() + RENEE
    utf16 = Decoding("utf-16", "groups.music.encoding")
    report = check(tmp_path, {"users.csv": data.encode("utf-16")}, decoding=utf16)
    assert report.problems == ()
    assert report.kinds == {"users.csv": "users"}
    assert report.rows == {"users.csv": 2}
    report = check(tmp_path, {"users.csv": data.encode("utf-16")})
    assert_findings(report.problems, [(None, 'set groups.music.encoding to "utf-16"')])


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("codec", ["cp1252", "utf-16-le", "shift_jis"])
def test_validate_batch_converts_without_regard_to_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, codec: str
) -> None:
    monkeypatch.setattr(csvcheck, "CHUNK_BYTES", chunk)
    name = "Ümit" if codec != "shift_jis" else "日本"
    text = ENROLLMENTS.decode() + f'C1,"{name},\r\nx",student,S1,active\r\nC1,u2,ta,S1\n'
    report = check(tmp_path, {"e.csv": text.encode(codec)}, decoding=Decoding(codec))
    assert_findings(report.problems, [(4, "line 4 has 4 fields, the header has 5")])
    assert report.rows == {"e.csv": 2}


def test_validate_batch_refuses_a_quote_in_message_properties_that_never_closes(
    tmp_path: Path,
) -> None:
    # The server reads every file with CSVReader first: opencsv throws on this one (400).
    data = PROPERTIES + b'body=Click "Accept to join\n'
    report = check(tmp_path, {"users.csv": USERS + GUEST, "message.properties": data})
    assert_findings(
        report.problems,
        [(4, 'line 4 of message.properties opens a quote that never closes ("body=Click')],
    )
    assert 'write a lone quote as \\"' in report.problems[0].message


@pytest.mark.parametrize(
    "body", [b'body=Click \\"Accept\n', b'body=Click "Accept" now\n', b"body=it's\n"]
)
def test_validate_batch_takes_quotes_in_message_properties_that_opencsv_reads(
    tmp_path: Path, body: bytes
) -> None:
    report = check(tmp_path, {"users.csv": USERS + GUEST, "message.properties": PROPERTIES + body})
    assert report.problems == ()


def test_validate_batch_reads_a_utf8_message_properties_as_utf8_in_any_group(
    tmp_path: Path,
) -> None:
    # Written by hand in an editor, it is UTF-8 where the CSVs are cp1252.
    files = {
        "users.csv": USERS + GUEST + RENEE.encode("cp1252"),
        "message.properties": PROPERTIES + "body=Café\n".encode(),
    }
    assert check(tmp_path, files, decoding=CP1252).problems == ()
    assert properties_encoding(tmp_path / "message.properties", "cp1252") == "utf-8"
    (tmp_path / "message.properties").write_bytes("body=Café\n".encode("cp1252"))
    assert properties_encoding(tmp_path / "message.properties", "cp1252") == "cp1252"
