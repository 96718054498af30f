"""Packing a batch (daemon/packing.py): the ZIP built while the files are checked."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from daemon.base.errors import SourceError, StillWritten, ValidationError
from daemon.base.timestamps import utc_now
from daemon.checks.csv import fast as csvfast
from daemon.config.model import Validation
from daemon.delivery import packing
from daemon.intake.readiness import FileKind, classify
from daemon.spool.manifest import FileRecord, Manifest
from daemon.spool.store import Spool

USERS = b"user_id,login_id,first_name,last_name,email,status\nu1,a@b.edu,A,B,a@b.edu,active\n"
ENROLLMENTS = b"course_id,user_id,role,section_id,status\n" + b"C1,u1,student,S1,active\n" * 5000


def batch(tmp_path: Path, files: dict[str, bytes]) -> tuple[Spool, Manifest]:
    spool = Spool(tmp_path, "music")
    spool.open()
    manifest = spool.open_batch(utc_now())
    for name, data in files.items():
        (spool.files_dir(manifest.batch) / name).write_bytes(data)
    return spool, manifest


def zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zipped:
        assert zipped.testzip() is None
        return zipped.namelist()


def test_pack_zips_in_the_servers_order(tmp_path: Path) -> None:
    spool, manifest = batch(tmp_path, {"a.csv": ENROLLMENTS, "b.csv": USERS})
    packing.pack(spool, manifest, 0, Validation.STRICT)
    assert zip_names(spool.zip_path(manifest.batch)) == ["b.csv", "a.csv"]  # users first
    assert manifest.zip is not None and manifest.zip.parts == 1
    assert [f.name for f in manifest.files] == ["b.csv", "a.csv"]


def test_pack_of_a_batch_that_fails_its_checks_leaves_no_zip(tmp_path: Path) -> None:
    bad = ENROLLMENTS + b"C1,u2,student\n"  # a row short of two fields
    spool, manifest = batch(tmp_path, {"enrollments.csv": bad, "users.csv": USERS})
    with pytest.raises(ValidationError):
        packing.pack(spool, manifest, 0, Validation.STRICT)
    folder = spool.batch_dir(manifest.batch)
    assert sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix != ".json") == []
    assert not spool.zip_path(manifest.batch).exists()
    assert manifest.parts == []


def test_pack_builds_again_when_the_checks_read_a_kind_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first look at the headers got the kinds wrong: the ZIP is built again in order.
    monkeypatch.setattr(packing, "csv_kind", lambda path: "listings")
    spool, manifest = batch(tmp_path, {"a.csv": ENROLLMENTS, "b.csv": USERS})
    packing.pack(spool, manifest, 0, Validation.STRICT)
    assert zip_names(spool.zip_path(manifest.batch)) == ["b.csv", "a.csv"]


def test_pack_cuts_parts_from_the_zip_built_ahead(tmp_path: Path) -> None:
    noise = b"course_id,user_id,role,section_id,status\n" + b"".join(
        b"C%d,u%d,student,S%d,active\n" % (i * 7919 % 10007, i * 104729 % 99991, i)
        for i in range(20_000)
    )
    spool, manifest = batch(tmp_path, {"e1.csv": noise, "e2.csv": noise, "users.csv": USERS})
    whole = len(noise)  # each file's entry alone fits, both together do not
    packing.pack(spool, manifest, whole // 2, Validation.STRICT)
    assert [p.files for p in manifest.parts] == [("users.csv", "e1.csv"), ("e2.csv",)]
    assert not spool.zip_path(manifest.batch).exists()
    for number in (1, 2):
        assert zip_names(spool.part_path(manifest.batch, number))


@pytest.mark.parametrize("scanner", [True, False], ids=["row scanner", "python only"])
def test_pack_says_once_how_rows_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scanner: bool
) -> None:
    if not scanner:
        monkeypatch.setattr(csvfast, "ROWSCAN", None)
    elif csvfast.ROWSCAN is None:
        pytest.skip("the row scanner was not built")
    packing._announce.cache_clear()
    with capture_logs() as logs:
        for folder in ("one", "two"):
            (tmp_path / folder).mkdir()
            spool, manifest = batch(tmp_path / folder, {"a.csv": ENROLLMENTS})
            packing.pack(spool, manifest, 0, Validation.STRICT)
    said = [e for e in logs if e["event"] == "csv_checks"]
    assert said == [{"event": "csv_checks", "log_level": "info", "row_scanner": scanner}]


def claimed(spool: Spool, manifest: Manifest, names: list[str]) -> None:
    """Record the files as intake does before their claim: kind, size, time."""
    files = spool.files_dir(manifest.batch)
    for name in names:
        info = (files / name).stat()
        kind = (classify(name) or FileKind.OTHER).value
        manifest.files.append(FileRecord(name, info.st_size, kind=kind, mtime_ns=info.st_mtime_ns))


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_pack_a_ready_made_zip_as_claimed_goes_as_it_came(tmp_path: Path) -> None:
    spool, manifest = batch(tmp_path, {"export.zip": zipped({"users.csv": USERS})})
    claimed(spool, manifest, ["export.zip"])
    packing.pack(spool, manifest, 0, Validation.STRICT)
    assert spool.zip_path(manifest.batch).read_bytes() == zipped({"users.csv": USERS})
    assert [(f.name, f.kind) for f in manifest.files] == [("export.zip", "zip")]


def test_pack_a_file_that_changed_after_its_claim_is_still_written(tmp_path: Path) -> None:
    spool, manifest = batch(tmp_path, {"users.csv": USERS})
    claimed(spool, manifest, ["users.csv"])
    path = spool.files_dir(manifest.batch) / "users.csv"
    with open(path, "ab") as out:  # a writer with the file still open writes on
        out.write(b"u2,c@d.edu,C,D,c@d.edu,active\n")
    with pytest.raises(StillWritten) as caught:
        packing.pack(spool, manifest, 0, Validation.STRICT)
    assert caught.value.name == "users.csv" and '"users.csv" changed' in caught.value.reason
    # What it holds now is remembered: once the file is still, the next try goes through.
    assert manifest.files[0].bytes == path.stat().st_size
    packing.pack(spool, manifest, 0, Validation.STRICT)
    assert manifest.zip is not None


def test_pack_refuses_a_file_whose_recorded_kind_is_not_uploaded(tmp_path: Path) -> None:
    # The kind written before the claim decides, whatever else the batch holds.
    spool, manifest = batch(tmp_path, {"users.csv": USERS, "report.pdf": b"%PDF"})
    claimed(spool, manifest, ["users.csv", "report.pdf"])
    with pytest.raises(SourceError) as caught:
        packing.pack(spool, manifest, 0, Validation.OFF)
    assert caught.value.name == "report.pdf"
    assert not spool.zip_path(manifest.batch).exists()


def test_pack_names_a_file_that_is_not_utf8_as_the_server_can_read_it(tmp_path: Path) -> None:
    odd = os.fsdecode(b"caf\xe9.csv")
    spool, manifest = batch(tmp_path, {odd: USERS, "caf%E9.csv": USERS.replace(b"u1", b"u2")})
    packing.pack(spool, manifest, 0, Validation.STRICT)
    assert zip_names(spool.zip_path(manifest.batch)) == ["caf%E9.csv", "caf%E9~2.csv"]
    [part] = manifest.parts
    assert part.entries == {odd: "caf%E9~2.csv"}
    assert sorted(f.name for f in manifest.files) == sorted([odd, "caf%E9.csv"])


def test_pack_a_claimed_file_that_is_no_regular_file_fails_at_intake(tmp_path: Path) -> None:
    spool, manifest = batch(tmp_path, {"users.csv": USERS})
    os.mkfifo(spool.files_dir(manifest.batch) / "pipe.csv")  # never waited on, never read
    with pytest.raises(SourceError) as caught:
        packing.pack(spool, manifest, 0, Validation.STRICT)
    assert caught.value.name == "pipe.csv"
    assert '"pipe.csv" is no longer a regular file' in caught.value.reason
    assert not spool.zip_path(manifest.batch).exists()
