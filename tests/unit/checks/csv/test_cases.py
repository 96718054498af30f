"""The CSV cases where dropd and the provider's server once disagreed, each with its outcome.

Each case is a file as dropped and what dropd now says of it: accepted (no finding), a
problem (the batch fails, with the sentence), or a warning (logged and kept in the
receipt, with the sentence). Every sentence names the file and the line and says what the
server does. Each runs with the compiled row scanner (where it was built) and without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.checks.csv import check as csvcheck
from daemon.checks.validate import Finding, Report, validate_batch
from daemon.config.model import Validation

USERS = b"user_id,login_id,first_name,last_name,email,status\n"
COURSES = b"course_id,short_name,long_name,account_id,term_id,status\n"
SECTIONS = b"section_id,course_id,name,status\n"
ENROLLMENTS = b"course_id,user_id,role,section_id,status\n"
LISTINGS = b"user_id,listing_id\n"
ANN = b"u1,ann@example.edu,Ann,Lee,ann@example.edu,active\n"
BO = b"u2,bo@example.edu,Bo,Ray,bo@example.edu,active\n"


@pytest.fixture(autouse=True, params=["rowscan", "reader"])
def row_checks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param == "rowscan" and csvcheck.ROWSCAN is None:
        pytest.skip("the row scanner was not built")
    if request.param == "reader":
        monkeypatch.setattr(csvcheck, "ROWSCAN", None)
        monkeypatch.setattr(csvcheck, "FIRST_BAD_UTF8", None)


def check(tmp_path: Path, name: str, data: bytes) -> Report:
    (tmp_path / name).write_bytes(data)
    return validate_batch([tmp_path / name], Validation.STRICT)


def said(findings: tuple[Finding, ...]) -> list[tuple[int | None, str]]:
    return [(f.line, f.message) for f in findings]


# Accepted: what opencsv reads, and the server takes.
ACCEPTED = [
    ("cr-only line ends (Excel for Mac)", "users.csv", (USERS + ANN + BO).replace(b"\n", b"\r")),
    (
        "mixed line ends",
        "users.csv",
        USERS.replace(b"\n", b"\r") + ANN.replace(b"\n", b"\r\n") + BO,
    ),
    (
        "a space before a quoted field",
        "users.csv",
        b'user_id, "login_id",first_name,last_name,email,status\n'
        + b'u1, "ann@example.edu",Ann,Lee,ann@example.edu,active\n',
    ),
    (
        "a backslash-escaped quote, unquoted",
        "users.csv",
        USERS + b'u1,ann@example.edu,Ann,O\\"Brien,ann@example.edu,active\n',
    ),
    (
        "a backslash-escaped comma and backslash",
        "courses.csv",
        COURSES + b"C1,MUS\\,101,Art \\\\ Design,A1,T1,active\n",
    ),
    ("a quoted header", "listings.csv", b'"user_id","listing_id"\n"u1","L1"\n'),
    (
        "a quoted field over two lines",
        "courses.csv",
        COURSES + b'C1,MUS101,"Music,\nan introduction",A1,T1,active\n',
    ),
]


@pytest.mark.parametrize(("name", "data"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_a_file_the_server_accepts_is_accepted(tmp_path: Path, name: str, data: bytes) -> None:
    report = check(tmp_path, name, data)
    assert said(report.problems) == said(report.warnings) == []
    assert name in report.kinds


def test_a_backslash_escape_counts_as_the_server_reads_it(tmp_path: Path) -> None:
    report = check(tmp_path, "courses.csv", COURSES + b"C1,MUS\\,101,Music,A1,T1,deleted\n")
    assert report.rows == {"courses.csv": 1} and report.deleted == {"courses.csv": 1}


# Problems: what the server refuses, or where it loses rows without a word.
PROBLEMS = [
    (
        "a backslash escapes the closing quote",
        "sections.csv",
        SECTIONS + b'S1,C1,"Dept\\",active\nS2,C1,Lab,active\n',
        2,
        'line 2: the quote opened here ("Dept",active\\nS2,C1,Lab,active\\n") '
        "never closes, so the server refuses the whole upload",
    ),
    (
        "a users row of the wrong width",
        "users.csv",
        USERS + ANN + b"u2,bo@example.edu,Bo,Ray,active\n",
        3,
        "line 3 has 5 fields, the header has 6: the server drops this row without "
        "a word; fix the row",
    ),
    (
        "an enrollments row of the wrong width",
        "enrollments.csv",
        ENROLLMENTS + b"C1,u1,student,S1,active,x\n",
        2,
        "line 2 has 6 fields, the header has 5: the server drops this row without a word",
    ),
    (
        "a listings row of the wrong width",
        "listings.csv",
        LISTINGS + b"u1\n",
        2,
        "line 2 has 1 fields, the header has 2: the server drops this row without",
    ),
    (
        "a courses row of the wrong width",
        "courses.csv",
        COURSES + b"C1,MUS101,Music,A1,active\n",
        2,
        "line 2 has 5 fields, the header has 6: the server skips this row, and "
        "says so only in the e-mail it sends after the import",
    ),
    (
        "a sections row of the wrong width",
        "sections.csv",
        SECTIONS + b"S1,C1,Lab,x,active\n",
        2,
        "line 2 has 5 fields, the header has 4: the server skips this row",
    ),
    (
        "a row of the wrong width over two lines",
        "enrollments.csv",
        ENROLLMENTS + b'C1,"u1\nu2",student,active\n',
        2,
        "the row on lines 2-3 has 4 fields, the header has 5: the server "
        "drops this row without a word",
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "line", "sentence"),
    [c[1:] for c in PROBLEMS],
    ids=[c[0] for c in PROBLEMS],
)
def test_a_file_the_server_refuses_or_loses_rows_of_is_a_problem(
    tmp_path: Path, name: str, data: bytes, line: int, sentence: str
) -> None:
    report = check(tmp_path, name, data)
    assert [f.line for f in report.problems] == [line], said(report.problems)
    assert sentence in report.problems[0].message
    assert report.problems[0].file == name


def test_a_mid_field_quote_that_joins_lines_is_a_problem(tmp_path: Path) -> None:
    data = (
        COURSES
        + b'C1,O"Brien Hall,Intro,A1,T1,active\n'
        + b"C2,MUS101,Music,A1,T1,active\n"
        + b'C3,12" Pipe,Plumbing,A1,T1,active\n'
        + b"C4,ART101,Art,A1,T1,active\n"
    )
    report = check(tmp_path, "courses.csv", data)
    assert said(report.problems) == [
        (
            2,
            'lines 2-4: the quote in "O"Brien Hall,Intro,A1,T1,active" opens a '
            "quoted field that only closes on line 4; the server joins lines 2-4 into one "
            'record, so 2 rows vanish; write the quote as "" inside a quoted field, or remove it',
        )
    ]
    assert report.rows == {"courses.csv": 2}  # as the server counts them


def test_a_joined_record_of_the_wrong_width_is_also_a_width_problem(tmp_path: Path) -> None:
    data = USERS + b'u1,ann@example.edu,Ann,O"Lee,ann@example.edu,active\n' + BO + b'u3,"x\n'
    report = check(tmp_path, "users.csv", data)
    assert [f.line for f in report.problems] == [2, 2]
    assert "the server joins lines 2-4 into one record" in report.problems[0].message
    assert report.problems[1].message.startswith(
        "the row on lines 2-4 has 4 fields, the header has 6: the server drops this "
        "row without a word"
    )


# Warnings: the server takes the row but changes a value without a word.
WARNINGS = [
    (
        "a backslash that escapes nothing vanishes",
        "courses.csv",
        COURSES + b"C1,ART101,Art\\Design,A1,T1,active\n",
        2,
        'line 2: the server reads "Art\\Design" as "ArtDesign": it drops a '
        'backslash that escapes nothing; write "\\\\" for one backslash',
    ),
    (
        "a quoted field with text after its closing quote",
        "courses.csv",
        COURSES + b'C1,ART101,"Art" History,A1,T1,active\n',
        2,
        'line 2: the server reads ""Art" History" as "Art" History": a quote '
        "inside a field quotes or is dropped",
    ),
    (
        "a blank line between rows",
        "users.csv",
        USERS + ANN + b"\n" + BO,
        3,
        "line 3 is blank; remove it",
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "line", "sentence"),
    [c[1:] for c in WARNINGS],
    ids=[c[0] for c in WARNINGS],
)
def test_a_value_the_server_changes_is_a_warning(
    tmp_path: Path, name: str, data: bytes, line: int, sentence: str
) -> None:
    report = check(tmp_path, name, data)
    assert said(report.problems) == []
    assert [f.line for f in report.warnings] == [line], said(report.warnings)
    assert sentence in report.warnings[0].message


def test_findings_keep_their_lines_after_a_stretch_the_scanner_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csvcheck, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(csvcheck, "THREADED_BYTES", 0)
    rows = [b"C%d,u%d,student,S1,active\n" % (n, n) for n in range(5000)]
    rows[1000] = b"C1,u1,student,Art\\Lab,active\n"  # line 1002: the reader takes over
    rows[3000] = b"C1,u1,student,S1\n"  # line 3002: back with the scanner
    rows[4000] = b'C1,u1,"student",S1,active\r'  # line 4002: a lone CR ends it, read as one
    report = check(tmp_path, "enrollments.csv", ENROLLMENTS + b"".join(rows))
    assert [f.line for f in report.problems] == [3002]
    assert [f.line for f in report.warnings] == [1002]
    assert report.rows == {"enrollments.csv": 5000}
