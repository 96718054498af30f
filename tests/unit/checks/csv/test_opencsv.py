"""The reference reader against the real opencsv: the same records, or the same refusal.

Every case is written to a file and read by `tests/opencsv/Records.java` (opencsv's
`CSVReader(new InputStreamReader(bytes, UTF-8)).readAll()`, the server's call) in one JVM,
and by `daemon.base.opencsv`. The cases: the ones the provider's server was held against,
each with its outcome stated; every string of up to 5 characters over `a , " \\ space LF
CR`; seeded random lines of words, separators, quotes, backslashes, whitespace (Java's
and not), multi-byte text and line ends, fed to our reader in random chunks; and bytes
that are not UTF-8.

Set OPENCSV_CLASSPATH to run another opencsv (e.g. the server's 5.12 jar and commons-lang3).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.base.opencsv import Unterminated, decode, read_records

DRIVER = Path(__file__).parents[3] / "opencsv" / "Records.java"
JARS = ("opencsv", "commons-lang3", "commons-text", "commons-collections4", "commons-beanutils")
INSTALL = (
    "the differential test needs Java and opencsv: apt-get install default-jdk-headless "
    "libopencsv-java (or set OPENCSV_CLASSPATH to the opencsv jar and commons-lang3)"
)
MALFORMED = "CsvMalformedLineException"
SHORT_ALPHABET = ("a", ",", '"', "\\", " ", "\n", "\r")
SHORT_LENGTH = 5
RANDOM_FILES = 3000
RANDOM_BYTES_FILES = 500
TOKENS = (
    *("ab", "O", "x", "1", "é", "😀", "\u2003", "\xa0", "\t", " ", " "),
    *(",", ",", ",", '"', '"', '""', "\\", "\\\\", '\\"'),
    *("\n", "\n", "\r\n", "\r", '12" Pipe', "Art\\Design", 'O"Brien'),
)
UTF8_BYTES = (0xED, 0xA0, 0x80, 0xBF, 0xC3, 0xC0, 0xE0, 0xF0, 0xF4, 0x9F, 0x90, 0xFF, 0x41)


# A record list, or (MALFORMED, the record's first line): opencsv throws, the server says 400.
Outcome = list[list[str]] | tuple[str, int]


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    data: bytes
    expected: Outcome | None = None  # stated for the named cases
    chunks: int = 1  # fed to our reader in this many random pieces


NAMED = (
    Case(
        "cr_only_line_ends",
        b"user_id,login_id\r1,a@b.edu\r",
        [["user_id", "login_id"], ["1", "a@b.edu"]],
    ),
    Case("crlf_line_ends", b"a,b\r\nc,d\r\n", [["a", "b"], ["c", "d"]]),
    Case("no_line_end_at_the_end", b"a,b", [["a", "b"]]),
    Case("empty_file", b"", []),
    Case("an_empty_line_is_one_empty_field", b"a,b\n\nc,d\n", [["a", "b"], [""], ["c", "d"]]),
    Case(
        "space_before_a_quote_is_dropped",
        b'user_id, "login_id",  "first_name"\n',
        [["user_id", "login_id", "first_name"]],
    ),
    Case(
        "space_before_a_quote_in_the_first_field_is_kept",
        b' "user_id",login_id\n',
        [[" user_id", "login_id"]],
    ),
    Case("no_break_space_before_a_quote_is_kept", b'a,\xc2\xa0"b"\n', [["a", '\xa0"b']]),
    Case("backslash_quote_unquoted", b'1,O\\"Brien,x\n', [["1", 'O"Brien', "x"]]),
    Case("backslash_escapes_a_comma", b"a\\,b,c\n", [["a,b", "c"]]),
    Case("backslash_that_escapes_nothing_vanishes", b"1,Art\\Design\n", [["1", "ArtDesign"]]),
    Case("double_backslash_is_one", b'1,"C:\\\\dir"\n', [["1", "C:\\dir"]]),
    Case("backslash_escapes_the_closing_quote", b'1,"Dept\\",x\n2,y,z\n', (MALFORMED, 1)),
    Case(
        "mid_field_quotes_join_three_lines",
        b'course_id,short_name\nc1,O"Brien\nc2,Plain\nc3,12" Pipe\nc4,x\n',
        [
            ["course_id", "short_name"],
            ["c1", 'O"Brien\nc2,Plain\nc3,12" Pipe'],
            ["c4", "x"],
        ],
    ),
    Case(
        "a_quote_near_the_line_start_is_dropped_a_later_one_kept",
        b'ab"c"d,e\n',
        [['abc"d', "e"]],
    ),
    Case("text_after_a_closing_quote", b'"abc"def,x\n', [['abc"def', "x"]]),
    Case("doubled_quote_in_a_quoted_field", b'1,"say ""hi""",x\n', [["1", 'say "hi"', "x"]]),
    Case(
        "quoted_field_over_lines_keeps_lf_for_crlf",
        b'1,"two\r\nlines",3\r\n',
        [["1", "two\nlines", "3"]],
    ),
    Case("quoted_field_over_cr_only_lines", b'1,"a\rb"\r', [["1", "a\nb"]]),
    Case("quote_never_closed", b'1,"never closed\n2,x\n', (MALFORMED, 1)),
    Case("quote_never_closed_from_line_3", b'h\na\n1,"open\n2\n', (MALFORMED, 3)),
    Case(
        "message_properties_read_as_csv",
        b'subject=Welcome\nbody=Click "Accept\n',
        (MALFORMED, 2),
    ),
    Case(
        "byte_order_mark_stays_in_the_first_field",
        b"\xef\xbb\xbfuser_id,login_id\n",
        [["\ufeffuser_id", "login_id"]],
    ),
    Case("windows_1252_text_becomes_fffd", b"Ren\xe9e,x\n", [["Ren\ufffde", "x"]]),
    Case("encoded_surrogate_is_one_fffd", b"a\xed\xa0\x80b\n", [["a\ufffdb"]]),
    Case("multi_byte_text", "é,😀,名前\n".encode(), [["é", "😀", "名前"]]),
    Case("emoji_counts_twice_before_a_quote", 'O😀"x"\n'.encode(), [['O😀"x']]),
)


def _classpath() -> str | None:
    if given := os.environ.get("OPENCSV_CLASSPATH"):
        return given
    jars = [Path(f"/usr/share/java/{name}.jar") for name in JARS]
    if not jars[0].exists() or not jars[1].exists():
        return None
    return ":".join(str(jar) for jar in jars if jar.exists())


def _short_cases() -> Iterator[Case]:
    for length in range(1, SHORT_LENGTH + 1):
        for chars in itertools.product(SHORT_ALPHABET, repeat=length):
            yield Case(f"short-{''.join(chars)!r}", "".join(chars).encode())


def _random_cases(seed: int) -> Iterator[Case]:
    rng = random.Random(seed)
    for number in range(RANDOM_FILES):
        text = "".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 60)))
        text = ("\ufeff" if rng.random() < 0.05 else "") + text
        yield Case(f"random-{seed}-{number}", text.encode(), chunks=rng.randint(1, 8))
    for number in range(RANDOM_BYTES_FILES):
        data = bytes(rng.choice(UTF8_BYTES) for _ in range(rng.randint(1, 16)))
        yield Case(f"bytes-{seed}-{number}", data, chunks=rng.randint(1, 4))


def _ours(case: Case, escape_opens_field: bool, rng: random.Random) -> Outcome:
    data = case.data
    cuts = sorted(rng.randint(0, len(data)) for _ in range(case.chunks - 1))
    pieces = [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]
    try:
        records = read_records(decode(pieces), escape_opens_field=escape_opens_field)
        return [list(record.fields) for record in records]
    except Unterminated as error:
        return (MALFORMED, error.record_line)


def _theirs(answer: dict[str, object]) -> Outcome:
    if "records" in answer:
        records = answer["records"]
        assert isinstance(records, list)
        return records
    assert isinstance(answer["line"], int), answer
    return (str(answer["error"]), answer["line"])


@dataclass(frozen=True, slots=True)
class Opencsv:
    version: tuple[int, ...]
    outcomes: dict[str, Outcome]

    @property
    def escape_opens_field(self) -> bool:
        return self.version >= (5, 5, 2)


SEED = int(os.environ.get("OPENCSV_SEED", "20240516"))
CASES = (*NAMED, *_short_cases(), *_random_cases(SEED))


@pytest.fixture(scope="module")
def opencsv(tmp_path_factory: pytest.TempPathFactory) -> Opencsv:
    classpath, java = _classpath(), shutil.which("java")
    if classpath is None or java is None:
        pytest.skip(INSTALL)
    folder = tmp_path_factory.mktemp("opencsv")
    names = []
    for number, case in enumerate(CASES):
        names.append(f"{number}.csv")
        (folder / names[-1]).write_bytes(case.data)
    run = subprocess.run(
        [java, "-cp", classpath, str(DRIVER), *names],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    version = str(json.loads(lines[0])["version"])
    answers = [json.loads(line) for line in lines[1:]]
    assert len(answers) == len(CASES)
    parsed = tuple(int(part) for part in version.split("-")[0].split("."))
    return Opencsv(parsed, {c.name: _theirs(a) for c, a in zip(CASES, answers, strict=True)})


@pytest.mark.parametrize("case", NAMED, ids=[case.name for case in NAMED])
def test_named_case_reads_as_stated_by_both(opencsv: Opencsv, case: Case) -> None:
    ours = _ours(case, opencsv.escape_opens_field, random.Random(0))
    assert opencsv.outcomes[case.name] == case.expected
    assert ours == case.expected


def test_every_generated_case_reads_as_opencsv_reads_it(opencsv: Opencsv) -> None:
    rng = random.Random(SEED)
    differ = [
        (case.data, ours, opencsv.outcomes[case.name])
        for case in CASES
        if (ours := _ours(case, opencsv.escape_opens_field, rng)) != opencsv.outcomes[case.name]
    ]
    assert not differ[:5], f"{len(differ)} of {len(CASES)} cases differ"
    assert len(CASES) > 20_000


def test_the_generated_cases_cover_what_the_reader_must_get_right(opencsv: Opencsv) -> None:
    outcomes = list(opencsv.outcomes.values())
    refused = sum(1 for outcome in outcomes if isinstance(outcome, tuple))
    spanning = sum(
        1
        for outcome in outcomes
        if isinstance(outcome, list) and any("\n" in field for row in outcome for field in row)
    )
    assert refused > 1000 and spanning > 1000
