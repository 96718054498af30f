"""Tests of checking a large CSV with a helper process (daemon/csvsplit.py, scanhelper.py).

The helper is a real child process. Every file is checked twice, in order alone and split
into stretches of a few hundred bytes shared with the helper, and the two readings must
agree on everything: findings, their line numbers, rows and deleted rows.
"""

from __future__ import annotations

import io
import itertools
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.checks.csv import check as csvcheck
from daemon.checks.csv import scanhelper
from daemon.checks.csv.check import scan_csv
from daemon.checks.csv.rows import CsvScan
from daemon.checks.csv.scanhelper import HelperPool
from daemon.checks.csv.split import (
    Helper,
    HelperSource,
    Splitter,
    Stretch,
    cuts,
    read_stretch,
    serve,
)

HEADER = b"course_id,user_id,role,section_id,status\n"
CLEAN = b"".join(
    b"C%d,u%d,%s,S1,%s\n" % (n // 30, n, b"teacher" if n % 30 == 0 else b"student", status)
    for n, status in enumerate([b"active"] * 9 + [b"deleted"] * 3 + [b"Active"] * 1)
)


class Counting:
    """A HelperSource that counts the stretches its helper answered."""

    def __init__(self, pool: HelperPool) -> None:
        self.pool, self.answered, self.clean = pool, 0, 0

    def borrow(self) -> Helper | None:
        helper = self.pool.borrow()
        return None if helper is None else _CountingHelper(helper, self)

    def give_back(self, helper: Helper) -> None:
        assert isinstance(helper, _CountingHelper)
        self.pool.give_back(helper.inner)


class _CountingHelper:
    def __init__(self, inner: Helper, counts: Counting) -> None:
        self.inner, self.counts = inner, counts

    @property
    def failed(self) -> bool:
        return self.inner.failed

    def ask(self, path: Path, start: int, end: int, last: bool) -> bool:
        return self.inner.ask(path, start, end, last)

    def answer(self, wait: bool) -> Stretch | None:
        stretch = self.inner.answer(wait)
        if stretch is not None:
            self.counts.answered += 1
            self.counts.clean += stretch.clean
        return stretch


class InProcess:
    """A HelperSource whose helper reads each stretch at once, in this process: it answers
    two stretches for each one read in order, so its answers meet every defect."""

    def __init__(self) -> None:
        self.failed, self.answered, self.clean = False, 0, 0
        self.ready: list[Stretch] = []

    def borrow(self) -> Helper | None:
        return self

    def give_back(self, helper: Helper) -> None:
        assert not self.ready

    def ask(self, path: Path, start: int, end: int, last: bool) -> bool:
        self.ready.append(read_stretch(path, start, end, last))
        return True

    def answer(self, wait: bool) -> Stretch | None:
        if not self.ready:
            return None
        stretch = self.ready.pop(0)
        self.answered, self.clean = self.answered + 1, self.clean + stretch.clean
        return stretch


@pytest.fixture(params=["helper process", "in process"])
def source(request: pytest.FixtureRequest, pool: HelperPool) -> Counting | InProcess:
    return Counting(pool) if request.param == "helper process" else InProcess()


@pytest.fixture(autouse=True)
def small_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # The daemon's first read is the one before any split: small here, so files stay small.
    monkeypatch.setattr(csvcheck, "CHUNK_BYTES", 512)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HelperPool]:
    helpers = HelperPool()
    warm = tmp_path_factory.mktemp("warm") / "enrollments.csv"
    warm.write_bytes(HEADER + CLEAN)
    helper = helpers.borrow()  # started, and its imports done, before the first test
    assert helper is not None and helper.ask(warm, len(HEADER), warm.stat().st_size, True)
    assert helper.answer(wait=True) is not None
    helpers.give_back(helper)
    yield helpers
    helpers.close()


def both_ways(path: Path, source: HelperSource, stretch: int) -> tuple[CsvScan, CsvScan]:
    alone = scan_csv(path, strict=True)
    split = scan_csv(path, strict=True, splitter=Splitter(source, stretch, min_bytes=0))
    return alone, split


def assert_same(alone: CsvScan, split: CsvScan) -> None:
    assert split.problems == alone.problems
    assert split.warnings == alone.warnings
    assert (split.rows, split.deleted, split.kind, split.bom) == (
        alone.rows,
        alone.deleted,
        alone.kind,
        alone.bom,
    )


def test_split_scan_of_a_clean_file_counts_what_reading_in_order_counts(
    tmp_path: Path, pool: HelperPool
) -> None:
    path = tmp_path / "enrollments.csv"
    path.write_bytes(HEADER + CLEAN * 15_000)  # about 5 MB
    source = Counting(pool)

    alone, split = both_ways(path, source, stretch=64 << 10)

    assert_same(alone, split)
    assert split.rows == 13 * 15_000 and split.deleted == 3 * 15_000
    assert not split.problems.listed and not split.warnings.listed
    assert source.answered >= 5 and source.clean == source.answered  # the helper did its share


DEFECTS: list[tuple[str, bytes]] = [
    ("bad role", b"C9,u9,tutor,S1,active\n"),
    ("bad status", b"C9,u9,student,S1,gone\n"),
    ("short row", b"C9,u9,student,S1\n"),
    ("long row", b"C9,u9,student,S1,active,extra\n"),
    ("quoted comma", b'C9,"u,9",student,S1,deleted\n'),
    ("quoted lines", b'C9,"u\n9\n\n",student,S1,active\n'),
    ("open quote", b'C9,"u9,student,S1,active\n'),
    ("blank line", b"\n"),
    ("blank lines", b"\n\r\n\n"),
    ("crlf", b"C9,u9,student,S1,active\r\n"),
    ("utf-8", "C9,é,student,S1,active\n".encode()),
    ("not utf-8", b"C9,u\xff9,student,S1,active\n"),
    ("nul", b"C9,u\x009,student,S1,active\n"),
    ("many bad", b"C9,u9,x,S1,y\n" * 30),
]


def defective_file(rng: random.Random) -> bytes:
    rows = (HEADER + CLEAN * rng.randint(20, 120)).split(b"\n")[:-1]
    lines = [row + b"\n" for row in rows]
    for _ in range(rng.randint(1, 4)):
        lines.insert(rng.randint(1, len(lines)), rng.choice(DEFECTS)[1])
    data = b"".join(lines)
    if rng.random() < 0.3:
        data = data.rstrip(b"\n")  # no line end after the last row
    if rng.random() < 0.2:
        data += b"\n\n"  # blank lines at the very end
    return (b"\xef\xbb\xbf" if rng.random() < 0.2 else b"") + data


@pytest.mark.parametrize("seed", range(60))
def test_split_scan_finds_what_reading_in_order_finds(
    tmp_path: Path, source: HelperSource, seed: int
) -> None:
    rng = random.Random(seed)
    path = tmp_path / "enrollments.csv"
    path.write_bytes(defective_file(rng))

    alone, split = both_ways(path, source, stretch=rng.choice([64, 300, 1000, 5000]))

    assert_same(alone, split)


@pytest.mark.parametrize("name", [name for name, _ in DEFECTS])
def test_split_scan_with_a_defect_on_a_stretch_edge(
    tmp_path: Path, source: HelperSource, name: str
) -> None:
    defect = dict(DEFECTS)[name]
    body = CLEAN * 40
    cut = body.index(b"\n", len(body) // 2) + 1
    path = tmp_path / "enrollments.csv"
    path.write_bytes(HEADER + body[:cut] + defect + body[cut:])

    for stretch in range(cut - 40, cut + 40, 7):  # the cuts fall before, in and after it
        assert_same(*both_ways(path, source, stretch))


def test_split_scan_of_a_file_that_is_not_checked_reads_it_alone(
    tmp_path: Path, pool: HelperPool
) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(b"what,is,this\n" + b"a,b,c\n" * 2000)
    source = Counting(pool)

    alone, split = both_ways(path, source, stretch=500)

    assert_same(alone, split)
    assert split.kind is None and source.answered == 0


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-c", "pass"],  # gone at once
        [sys.executable, "-c", "import sys\nfor _ in sys.stdin: print('no', flush=True)"],
        [sys.executable, "-c", "import sys\nsys.stdin.readline(); sys.exit(3)"],
    ],
    ids=["exits", "nonsense", "dies mid-way"],
)
def test_split_scan_with_a_failing_helper_reads_alone_and_logs_it(
    tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "enrollments.csv"
    path.write_bytes(HEADER + CLEAN * 200 + b"C9,u9,tutor,S1,active\n" + CLEAN * 200)
    failing = HelperPool(command)
    try:
        with capture_logs() as logs:
            alone, split = both_ways(path, Counting(failing), stretch=1000)
        assert_same(alone, split)
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["scan_helper_failed"]
        assert failing.borrow() is None  # it rests a while before another is started
    finally:
        failing.close()


def test_split_scan_lets_a_silent_helper_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scanhelper, "ANSWER_SECONDS", 0.5)
    path = tmp_path / "enrollments.csv"
    path.write_bytes(HEADER + CLEAN * 400)
    never = "import sys, time\nfor _ in sys.stdin: time.sleep(600)"
    silent = HelperPool([sys.executable, "-c", never])
    try:
        with capture_logs() as logs:
            alone, split = both_ways(path, Counting(silent), stretch=1000)
        assert_same(alone, split)
        failed = [e for e in logs if e["event"] == "scan_helper_failed"]
        assert len(failed) == 1 and "no answer in 0 s" in failed[0]["reason"]
    finally:
        silent.close()


def test_helper_pool_lends_its_helper_to_one_file_at_a_time(pool: HelperPool) -> None:
    helper = pool.borrow()
    assert helper is not None
    try:
        assert pool.borrow() is None
    finally:
        pool.give_back(helper)
    again = pool.borrow()
    assert again is helper  # the same process, kept
    pool.give_back(again)


def test_helper_pool_close_ends_the_process() -> None:
    helpers = HelperPool()
    helper = helpers.borrow()
    assert helper is not None
    helpers.give_back(helper)
    process = helper.process  # type: ignore[attr-defined]

    helpers.close()

    assert process.returncode == 0


def test_serve_answers_each_request_on_a_line(tmp_path: Path) -> None:
    path = tmp_path / "enrollments.csv"
    path.write_bytes(HEADER + CLEAN + b"C9,u9,tutor,S1,active\n")
    start = len(HEADER)
    requests = (
        f'{{"path": "{path}", "start": {start}, "end": {start + len(CLEAN)}, "last": false}}\n'
        f'{{"path": "{path}", "start": {start}, "end": {path.stat().st_size}, "last": true}}\n'
        f'{{"path": "{tmp_path / "gone.csv"}", "start": 0, "end": 9, "last": true}}\n'
    )
    answers = io.BytesIO()

    serve(io.BytesIO(requests.encode()), answers)

    lines = answers.getvalue().decode().splitlines()
    assert lines[0] == '{"lines": 13, "rows": 13, "deleted": 3, "clean": true}'
    assert lines[1] == '{"lines": 14, "rows": 14, "deleted": 3, "clean": false}'
    assert '"clean": false' in lines[2] and '"error"' in lines[2]


def test_split_scan_never_counts_in_clean_looking_rows_inside_a_quoted_field(
    tmp_path: Path, source: Counting | InProcess
) -> None:
    # Read on its own, a stretch inside the quotes looks like clean rows: only the reading
    # in order knows they are one field.
    path = tmp_path / "enrollments.csv"
    path.write_bytes(HEADER + CLEAN * 20 + b'C9,u9,student,S1,"x\n' + CLEAN * 40 + b'"\n' + CLEAN)

    alone, split = both_ways(path, source, stretch=300)

    assert_same(alone, split)
    assert split.rows == 13 * 20 + 1 + 13
    assert source.clean > 0  # clean answers came from inside the quotes, and were not used


def test_cuts_fall_just_after_line_ends() -> None:
    data = b"".join(b"row %d\n" % n for n in range(1000))
    source = io.BytesIO(data)

    bounds = cuts(source, 3, len(data), 100)

    assert bounds[0] == 3 and bounds[-1] == len(data)
    assert all(data[b - 1 : b] == b"\n" for b in bounds[1:-1])
    assert all(b - a >= 100 for a, b in itertools.pairwise(bounds[1:-1]))
    assert source.tell() == 3


def test_cuts_skip_a_line_longer_than_a_look() -> None:
    data = b"a\n" + b"x" * 200_000 + b"\n" + b"b\n" * 10
    bounds = cuts(io.BytesIO(data), 0, len(data), 10)

    assert bounds[-1] == len(data)
    assert all(data[b - 1 : b] == b"\n" for b in bounds[1:-1])
    assert bounds == sorted(set(bounds))


def test_the_helper_starts_without_logging_or_deflate() -> None:
    # Its memory is the daemon's too: structlog alone is 11 MiB of it.
    code = "import sys, daemon.checks.csv.split; print(sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "'daemon.checks.csv.check'" in loaded
    assert "'structlog'" not in loaded and "'isal'" not in loaded
