"""Packing a batch (daemon/delivery/packing.py): the ZIP built while the files are checked; a
dropped ZIP unpacked, checked and zipped again as loose files are."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path
from zipfile import ZIP_DEFLATED

import pytest
from structlog.testing import capture_logs

from daemon.base.errors import SourceError, StillWritten, ValidationError
from daemon.base.timestamps import utc_now
from daemon.checks.csv import check as csvcheck
from daemon.checks.decoding import Decoding
from daemon.config.model import Validation
from daemon.delivery import packing
from daemon.intake.readiness import FileKind, classify
from daemon.spool.manifest import FileRecord, Manifest, Unpacked, UnpackedEntry
from daemon.spool.store import Spool
from unit.zips import zip_of

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
    monkeypatch.setattr(packing, "csv_kind", lambda path, decoding: "listings")
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
        monkeypatch.setattr(csvcheck, "ROWSCAN", None)
    elif csvcheck.ROWSCAN is None:
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


def zipped(entries: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def dropped_zip(tmp_path: Path, entries: dict[str, bytes]) -> tuple[Spool, Manifest]:
    """A batch of one dropped ZIP of `entries`, claimed."""
    spool, manifest = batch(tmp_path, {"export.zip": zipped(entries)})
    claimed(spool, manifest, ["export.zip"])
    return spool, manifest


def upload_entries(spool: Spool, manifest: Manifest) -> dict[str, bytes]:
    with zipfile.ZipFile(spool.zip_path(manifest.batch)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def test_pack_a_dropped_zip_unpacks_it_and_zips_its_files_again(tmp_path: Path) -> None:
    spool, manifest = dropped_zip(tmp_path, {"enrollments.csv": ENROLLMENTS, "users.csv": USERS})
    original = (spool.files_dir(manifest.batch) / "export.zip").read_bytes()
    packing.pack(spool, manifest, 0, Validation.STRICT)
    # dropd's own ZIP goes up, in the server's order; the dropped one stays as it came.
    assert zip_names(spool.zip_path(manifest.batch)) == ["users.csv", "enrollments.csv"]
    assert upload_entries(spool, manifest) == {"users.csv": USERS, "enrollments.csv": ENROLLMENTS}
    assert spool.zip_path(manifest.batch).read_bytes() != original
    assert (spool.files_dir(manifest.batch) / "export.zip").read_bytes() == original
    [record] = manifest.files
    assert (record.name, record.kind, record.bytes) == ("export.zip", "zip", len(original))
    assert record.sha256 == hashlib.sha256(original).hexdigest()
    assert [p.files for p in manifest.parts] == [("users.csv", "enrollments.csv")]
    assert manifest.unpacked == Unpacked(
        "export.zip",
        (
            UnpackedEntry("enrollments.csv", "enrollments.csv", len(ENROLLMENTS)),
            UnpackedEntry("users.csv", "users.csv", len(USERS)),
        ),
        (),
    )
    assert not spool.unpacked_dir(manifest.batch).exists(), "unpacked/ lives while packing"


@pytest.mark.parametrize("path", ["export/users.csv", "/users.csv", "a/b/c/users.csv"])
def test_pack_a_dropped_zip_takes_entries_by_base_name(tmp_path: Path, path: str) -> None:
    spool, manifest = dropped_zip(tmp_path, {path: USERS})
    packing.pack(spool, manifest, 0, Validation.STRICT)
    assert upload_entries(spool, manifest) == {"users.csv": USERS}
    assert manifest.unpacked is not None
    assert manifest.unpacked.entries == (UnpackedEntry(path, "users.csv", len(USERS)),)


def test_pack_a_dropped_zip_leaves_macos_junk_out_and_lists_it(tmp_path: Path) -> None:
    # What macOS's "Compress" makes of a folder: the server would refuse `._users.csv`.
    spool, manifest = dropped_zip(
        tmp_path,
        {
            "export/users.csv": USERS,
            "__MACOSX/export/._users.csv": b"\0\5\26\7\0\2\0\0Mac OS X",
            "export/.DS_Store": b"\0\0\0\1Bud1",
        },
    )
    packing.pack(spool, manifest, 0, Validation.STRICT)
    assert upload_entries(spool, manifest) == {"users.csv": USERS}
    assert manifest.unpacked is not None
    assert manifest.unpacked.left_out == ("__MACOSX/export/._users.csv", "export/.DS_Store")


def test_pack_a_dropped_zip_with_two_entries_of_one_base_name_fails_at_intake(
    tmp_path: Path,
) -> None:
    spool, manifest = dropped_zip(tmp_path, {"a/users.csv": USERS, "b/users.csv": USERS})
    with pytest.raises(SourceError) as caught:  # deliver fails SourceError at step intake
        packing.pack(spool, manifest, 0, Validation.STRICT)
    assert caught.value.name == "export.zip"
    assert '"a/users.csv", "b/users.csv"' in caught.value.reason
    assert not spool.zip_path(manifest.batch).exists()
    assert not spool.unpacked_dir(manifest.batch).exists()


def test_pack_a_dropped_zip_with_a_wrong_header_fails_at_validate(tmp_path: Path) -> None:
    wrong = USERS.replace(b"login_id", b"login")
    spool, manifest = dropped_zip(tmp_path, {"export/users.csv": wrong})
    with pytest.raises(ValidationError) as caught:
        packing.pack(spool, manifest, 0, Validation.STRICT)
    [first, *_] = caught.value.problems
    assert first.file == "users.csv" and first.line == 1
    assert not spool.zip_path(manifest.batch).exists()
    assert not spool.unpacked_dir(manifest.batch).exists()
    assert manifest.unpacked is not None, "the record says what was taken from the ZIP"


def test_pack_a_dropped_zip_bomb_or_escape_is_refused(tmp_path: Path) -> None:
    for name, entries in {
        "bomb": {"users.csv": USERS + b"\0" * (8 << 20)},
        "escape": {"../users.csv": USERS},
    }.items():
        (tmp_path / name).mkdir()
        spool, manifest = batch(tmp_path / name, {"export.zip": zipped(entries, ZIP_DEFLATED)})
        claimed(spool, manifest, ["export.zip"])
        with pytest.raises(ValidationError) as caught:
            packing.pack(spool, manifest, 0, Validation.STRICT)
        [problem] = caught.value.problems
        assert problem.file == "export.zip"
        assert ("bomb" if name == "bomb" else "leaves the archive") in problem.message
        left = sorted(p.name for p in spool.batch_dir(manifest.batch).iterdir())
        assert left == ["files", "manifest.json"], "no ZIP, nothing unpacked"


def test_pack_a_dropped_zip_behind_a_stub_goes_up_as_dropds_own(tmp_path: Path) -> None:
    stub = b"MZ a self-extractor's stub\n" * 64 + zipped({"users.csv": USERS})
    spool, manifest = batch(tmp_path, {"export.zip": stub})
    claimed(spool, manifest, ["export.zip"])
    packing.pack(spool, manifest, 0, Validation.STRICT)
    built = spool.zip_path(manifest.batch).read_bytes()
    assert built.startswith(b"PK\x03\x04"), "a ZIP Java's ZipInputStream reads from byte 0"
    assert upload_entries(spool, manifest) == {"users.csv": USERS}


def test_pack_a_dropped_zip_of_a_stored_entry_with_a_data_descriptor(tmp_path: Path) -> None:
    streamed = zip_of({"users.csv": USERS}, zipfile.ZIP_STORED, seekable=False)
    spool, manifest = batch(tmp_path, {"export.zip": streamed})
    claimed(spool, manifest, ["export.zip"])
    packing.pack(spool, manifest, 0, Validation.STRICT)
    with zipfile.ZipFile(spool.zip_path(manifest.batch)) as archive:
        [info] = archive.infolist()
        assert info.compress_type == zipfile.ZIP_DEFLATED, "never a stored entry of unknown size"
    assert upload_entries(spool, manifest) == {"users.csv": USERS}


def test_pack_a_dropped_zip_counts_its_rows_for_the_guard(tmp_path: Path) -> None:
    users = USERS + b"u2,c@d.edu,C,D,c@d.edu,deleted\n"
    spool, manifest = dropped_zip(tmp_path, {"export/users.csv": users})
    counted: list[tuple[dict[str, int], dict[str, int]]] = []
    packing.pack(
        spool,
        manifest,
        0,
        Validation.STRICT,
        guard=lambda rows, deleted: counted.append((dict(rows), dict(deleted))),
    )
    assert counted == [({"users.csv": 2}, {"users.csv": 1})]


def test_pack_a_dropped_zip_again_after_a_crash_mid_unpacking(tmp_path: Path) -> None:
    # A kill -9 while unpacking leaves part of unpacked/: the next try starts from the ZIP.
    spool, manifest = dropped_zip(tmp_path, {"users.csv": USERS})
    leftover = spool.unpacked_dir(manifest.batch)
    leftover.mkdir()
    (leftover / "users.csv").write_bytes(USERS[:10])
    (leftover / "stray.csv").write_bytes(b"half")
    packing.pack(spool, manifest, 0, Validation.STRICT)
    assert upload_entries(spool, manifest) == {"users.csv": USERS}
    assert not leftover.exists()


def test_pack_a_dropped_zip_that_changed_after_its_claim_is_still_written(tmp_path: Path) -> None:
    spool, manifest = dropped_zip(tmp_path, {"users.csv": USERS})
    path = spool.files_dir(manifest.batch) / "export.zip"
    path.write_bytes(zipped({"users.csv": USERS + b"u2,c@d.edu,C,D,c@d.edu,active\n"}))
    os.utime(path, ns=(1, 1))
    with pytest.raises(StillWritten) as caught:
        packing.pack(spool, manifest, 0, Validation.STRICT)
    assert caught.value.name == "export.zip"


def test_pack_a_dropped_zip_strips_the_bom_of_its_csvs(tmp_path: Path) -> None:
    spool, manifest = dropped_zip(tmp_path, {"export/users.csv": b"\xef\xbb\xbf" + USERS})
    packing.pack(spool, manifest, 0, Validation.STRICT)
    assert upload_entries(spool, manifest) == {"users.csv": USERS}
    assert [p.bom_removed for p in manifest.parts] == [("users.csv",)]


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


# --- the group's `encoding`, and message.properties as Java reads it ----------------------

CP1252 = Decoding("cp1252", "groups.music.encoding")
PROPERTIES = "sender=music@example.edu\nsubject=Bienvenue\nbody=Café\n"


def test_pack_sends_a_cp1252_batch_as_utf8_and_records_the_conversion(tmp_path: Path) -> None:
    users = USERS.replace(b"A,B", "Renée,Dupré".encode("cp1252"))
    enrollments = b"course_id,user_id,role,section_id,status\nC1,u1,student,S1,active\n"
    files = {
        "users.csv": users,
        "enrollments.csv": enrollments,
        "Message.Properties": PROPERTIES.encode("cp1252"),
    }
    spool, manifest = batch(tmp_path, files)
    packing.pack(spool, manifest, 0, Validation.STRICT, decoding=CP1252)
    with zipfile.ZipFile(spool.zip_path(manifest.batch)) as zipped:
        assert zipped.namelist() == ["users.csv", "Message.Properties", "enrollments.csv"]
        assert zipped.read("users.csv") == users.decode("cp1252").encode("utf-8")
        assert zipped.read("enrollments.csv") == enrollments
        assert zipped.read("Message.Properties") == PROPERTIES.replace("é", "\\u00e9").encode()
    recorded = {f.name: (f.converted_from, f.escaped) for f in manifest.files}
    assert recorded == {
        "users.csv": ("cp1252", 0),
        "Message.Properties": ("cp1252", 1),
        "enrollments.csv": ("", 0),  # ASCII: nothing converted
    }
    assert [p.custom_notification for p in manifest.parts] == [True]
    for name, data in files.items():  # the originals stay as dropped
        assert (spool.files_dir(manifest.batch) / name).read_bytes() == data


def test_pack_refuses_a_utf8_batch_holding_cp1252_bytes(tmp_path: Path) -> None:
    users = USERS.replace(b"A,B", "Renée,B".encode("cp1252"))
    spool, manifest = batch(tmp_path, {"users.csv": users})
    with pytest.raises(ValidationError) as caught:
        packing.pack(spool, manifest, 0, Validation.STRICT)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == ("users.csv", 2)
    assert "set encoding to the file's encoding" in problem.message


def test_pack_a_dropped_zip_converts_its_entries_as_loose_files_and_says_so(
    tmp_path: Path,
) -> None:
    renee = USERS.replace(b"A,B", "Renée,B".encode("cp1252"))
    spool, manifest = dropped_zip(tmp_path, {"export/users.csv": renee})
    packing.pack(spool, manifest, 0, Validation.STRICT, decoding=Decoding("cp1252"))
    assert upload_entries(spool, manifest) == {"users.csv": renee.decode("cp1252").encode()}
    assert manifest.unpacked is not None
    [entry] = manifest.unpacked.entries
    assert (entry.name, entry.converted_from) == ("users.csv", "cp1252")


def test_pack_takes_the_bom_off_message_properties_and_records_it(tmp_path: Path) -> None:
    # Java reads a byte-order mark as part of the first key: "\ufeffsender" is no sender.
    files = {"users.csv": USERS, "message.properties": b"\xef\xbb\xbf" + PROPERTIES.encode()}
    spool, manifest = batch(tmp_path, files)
    packing.pack(spool, manifest, 0, Validation.STRICT)
    with zipfile.ZipFile(spool.zip_path(manifest.batch)) as zipped:
        sent = zipped.read("message.properties")
    assert sent == PROPERTIES.replace("é", "\\u00e9").encode()
    assert [p.bom_removed for p in manifest.parts] == [("message.properties",)]
    assert (spool.files_dir(manifest.batch) / "message.properties").read_bytes() == files[
        "message.properties"
    ], "the original stays as dropped"
