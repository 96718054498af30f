"""Counting rows in a dropped ZIP's CSVs (daemon/rowcount.py), as validation counts them;
and validation's own counts where `validation = "off"`."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from daemon.checks.csv import count as rowcount
from daemon.checks.csv.count import RowCount, count_rows, zip_counts
from daemon.checks.validate import validate_batch
from daemon.config.model import Validation

USERS = b"user_id,login_id,first_name,last_name,email,status\n"
ENROLLMENTS = b"course_id,user_id,role,section_id,status\n"
ROW = b"C1,u1,student,S1,"

SAMPLES = {
    "plain": ENROLLMENTS + ROW + b"active\n" + ROW + b"deleted\n" + ROW + b"deleted\n",
    "crlf": (ENROLLMENTS + ROW + b"deleted\n" + ROW + b"active\n").replace(b"\n", b"\r\n"),
    "case and spaces": ENROLLMENTS + ROW + b"Deleted\n" + ROW + b" DELETED \n" + ROW + b"x\n",
    "quoted": ENROLLMENTS + b'"C1","u1","student","S1","deleted"\n' + ROW + b'"deleted"\n',
    "quoted line end": ENROLLMENTS + b'C1,"u\n1",student,S1,deleted\n' + ROW + b"active\n",
    "not quite": ENROLLMENTS + ROW + b"deleted_last_completed\n" + ROW + b"undeleted\n",
    "blank lines": USERS + b"u1,a@b.edu,A,B,a@b.edu,deleted\n\n  \nu2,a@b.edu,A,B,a@b.edu,x\n\n",
    "no line end": USERS + b"u1,a@b.edu,A,B,a@b.edu,deleted",
    "trailing column": ENROLLMENTS.replace(b"\n", b",limit_section_privileges\n")
    + b"C1,u1,ta,S1,deleted,true\nC1,deleted,ta,S1,active,deleted\n",
    "bom": b"\xef\xbb\xbf" + USERS + b"u1,a@b.edu,A,B,a@b.edu,deleted\n",
    "header only": USERS,
    "many": ENROLLMENTS + (ROW + b"deleted\n" + ROW + b"active\n") * 5000,
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_rowcount_counts_as_strict_validation_does(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rowcount, "CHUNK_BYTES", 64)  # runs cut at every place
    path = tmp_path / "f.csv"
    path.write_bytes(SAMPLES[name])
    report = validate_batch([path], Validation.STRICT)
    counted = count_rows(io.BytesIO(SAMPLES[name]))
    assert counted is not None
    assert (counted.rows, counted.deleted) == (report.rows["f.csv"], report.deleted["f.csv"])


def test_rowcount_kinds_and_headers_it_does_not_count() -> None:
    assert count_rows(io.BytesIO(b"user_id,listing_id\nu1,L1\n")) == RowCount("listings", 1, None)
    assert count_rows(io.BytesIO(b"a,status\n1,deleted\n")) is None
    assert count_rows(io.BytesIO(b"")) is None


def test_rowcount_zip_counts_each_csv_entry(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("enrollments.csv", SAMPLES["plain"])
        archive.writestr("users.csv", SAMPLES["blank lines"])
        archive.writestr("message.properties", b"sender=a@b.edu\n")
        archive.writestr("odd.csv", b"a,b\n1,2\n")
    assert zip_counts(path) == (
        {"enrollments.csv": 3, "users.csv": 2},
        {
            "enrollments.csv": 2,
            "users.csv": 1,
        },
    )
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not a zip")
    assert zip_counts(tmp_path / "broken.zip") == ({}, {})


def test_rowcount_validation_off_counts_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes(SAMPLES["plain"] + b"C1,u2\n")  # a short row: off does not mind
    off = validate_batch([path], Validation.OFF)
    assert off.rows == off.deleted == {}
    counted = validate_batch([path], Validation.OFF, count=True)
    assert (counted.rows, counted.deleted) == ({"e.csv": 4}, {"e.csv": 2})
    assert counted.problems == counted.warnings == (), "the counting pass's findings are dropped"
