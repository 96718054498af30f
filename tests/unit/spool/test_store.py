"""Tests of the on-disk batch (daemon/spool.py): ids, atomic writes (daemon/durable.py), claim,
finish, lock."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.base.durable import write_json_atomic
from daemon.base.errors import Finding, FolderError, SpoolError
from daemon.intake.readiness import FileKind, ReadyFile
from daemon.spool.manifest import (
    BatchState,
    FileRecord,
    Manifest,
    Part,
    Release,
    Unpacked,
    UnpackedEntry,
    ZipSummary,
)
from daemon.spool.store import Spool, new_batch_id
from unit.child import run_child, start_child

MOMENT = datetime(2026, 11, 23, 8, 58, 10, 123456, tzinfo=UTC)
USERS = b"user_id,login_id,first_name,last_name,email,status\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    drop = tmp_path / "drop"
    drop.mkdir()
    return drop


@pytest.fixture
def spool(folder: Path) -> Spool:
    spool = Spool(folder, "music")
    spool.open()
    return spool


def drop(folder: Path, name: str, data: bytes = USERS) -> ReadyFile:
    """Drop a file and return it as intake would hand it over."""
    (folder / name).write_bytes(data)
    return ReadyFile(name, len(data), (folder / name).stat().st_mtime_ns, FileKind.CSV)


def claimed_batch(spool: Spool, *names: str, markers: tuple[str, ...] = ()) -> Manifest:
    manifest = spool.open_batch(MOMENT)
    for name in names:
        ready = drop(spool.folder, name)
        for marker in markers:
            (spool.folder / marker).write_bytes(b"")
        ready = ReadyFile(ready.name, ready.size, ready.mtime_ns, ready.kind, markers)
        assert spool.claim(manifest.batch, ready)
    manifest.files = [FileRecord(n, len(USERS)) for n in names]
    manifest.state = BatchState.CLAIMED
    spool.save(manifest)
    return manifest


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


# -- ids and atomic writes ------------------------------------------------------------------


def test_new_batch_id_shape() -> None:
    batch_id = new_batch_id(MOMENT)
    assert re.fullmatch(r"20261123T085810\.123456Z-[0-9a-f]{4}", batch_id)


def test_new_batch_id_sorts_by_time() -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    steps = [timedelta(microseconds=1), timedelta(seconds=9), timedelta(days=400)]
    moments = [base + step * k for step in steps for k in range(1, 5)]
    moments.append(datetime(2026, 1, 1, 5, 0, tzinfo=timezone(timedelta(hours=8))))  # 2025
    ids = [new_batch_id(m) for m in moments]
    by_time = [i for _, i in sorted(zip(moments, ids, strict=True))]
    assert sorted(ids) == by_time
    assert len(set(ids)) == len(ids)


def test_write_json_atomic_writes_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    write_json_atomic(path, {"a": 1, "name": "Müller"})
    write_json_atomic(path, {"a": 2, "name": "Müller"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": 2, "name": "Müller"}
    assert listing(tmp_path) == ["manifest.json"]


# -- batches --------------------------------------------------------------------------------


def test_spool_open_batch_creates_folder_and_manifest(spool: Spool) -> None:
    manifest = spool.open_batch(MOMENT)
    assert manifest.state is BatchState.OPEN
    assert manifest.group == "music"
    assert manifest.created == "2026-11-23T08:58:10.123Z"
    assert manifest.batch.startswith("20261123T085810.123456Z-")
    assert spool.files_dir(manifest.batch).is_dir()
    assert spool.load(manifest.batch) == manifest


def test_spool_save_load_round_trip(spool: Spool) -> None:
    manifest = spool.open_batch(MOMENT)
    manifest.state = BatchState.UPLOADING
    manifest.files = [
        FileRecord("users.csv", 51, "ab" * 32, "csv", ["users.csv.done"]),
        FileRecord("message.properties", 9, "cd" * 32, "properties"),
    ]
    manifest.zip = ZipSummary(300, "ef" * 32, 1)
    manifest.parts = [
        Part(1, "upload.zip", ("users.csv",), {}, 300, "ef" * 32, False, sent=True, status=200)
    ]
    manifest.warnings = (Finding("users.csv", 2, "line 2: odd"),)
    manifest.released = Release("alice", "2026-11-23T08:59:00.000Z")
    manifest.attempts = 3
    manifest.first_attempt = "2026-11-23T09:00:00.000Z"
    spool.save(manifest)

    loaded = spool.load(manifest.batch)

    assert loaded == manifest
    assert loaded.state is BatchState.UPLOADING
    assert listing(spool.batch_dir(manifest.batch)) == ["files", "manifest.json"]


def test_spool_load_missing_or_broken_manifest_raises_spool_error(spool: Spool) -> None:
    with pytest.raises(SpoolError):
        spool.load("nope")
    manifest = spool.open_batch(MOMENT)
    (spool.batch_dir(manifest.batch) / "manifest.json").write_text("{not json")
    with pytest.raises(SpoolError) as caught:
        spool.load(manifest.batch)
    assert caught.value.path.name == "manifest.json"


def test_spool_claim_renames_file_and_its_markers(spool: Spool, folder: Path) -> None:
    manifest = spool.open_batch(MOMENT)
    ready = drop(folder, "users.csv")
    (folder / "users.csv.done").write_bytes(b"")
    (folder / "users.done").write_bytes(b"")
    ready = ReadyFile(
        "users.csv", ready.size, ready.mtime_ns, FileKind.CSV, ("users.csv.done", "users.done")
    )

    assert spool.claim(manifest.batch, ready)

    assert listing(spool.files_dir(manifest.batch)) == ["users.csv", "users.csv.done", "users.done"]
    assert (spool.files_dir(manifest.batch) / "users.csv").read_bytes() == USERS
    assert [p.name for p in folder.iterdir() if p.is_file()] == []


def test_spool_claim_of_a_vanished_file_is_false(spool: Spool, folder: Path) -> None:
    manifest = spool.open_batch(MOMENT)
    assert not spool.claim(manifest.batch, ReadyFile("gone.csv", 1, 0, FileKind.CSV))
    assert spool.file_count(manifest.batch) == 0


def test_spool_claim_with_a_vanished_marker_still_claims(spool: Spool, folder: Path) -> None:
    manifest = spool.open_batch(MOMENT)
    ready = drop(folder, "users.csv")
    ready = ReadyFile("users.csv", ready.size, ready.mtime_ns, FileKind.CSV, ("users.csv.done",))
    assert spool.claim(manifest.batch, ready)
    assert listing(spool.files_dir(manifest.batch)) == ["users.csv"]


def test_spool_batch_ids_oldest_first(spool: Spool) -> None:
    later = spool.open_batch(MOMENT + timedelta(seconds=5))
    earlier = spool.open_batch(MOMENT)
    latest = spool.open_batch(MOMENT + timedelta(days=1))
    (spool.work / "stray-folder").mkdir()  # no manifest: not a batch
    assert spool.batch_ids() == [earlier.batch, later.batch, latest.batch]


def test_spool_batch_ids_without_spool_is_empty(tmp_path: Path) -> None:
    assert Spool(tmp_path, "music").batch_ids() == []


def test_spool_discard_empty(spool: Spool, folder: Path) -> None:
    empty = spool.open_batch(MOMENT)
    spool.discard_empty(empty.batch)
    assert spool.batch_ids() == []

    full = claimed_batch(spool, "users.csv")
    with pytest.raises(SpoolError):
        spool.discard_empty(full.batch)
    assert spool.batch_ids() == [full.batch]


# -- finish ---------------------------------------------------------------------------------


def test_spool_finish_sent_moves_files_with_receipt(spool: Spool, folder: Path) -> None:
    manifest = claimed_batch(spool, "users.csv", "courses.csv", markers=("users.csv.done",))
    manifest.state = BatchState.SENT
    record = {"batch": manifest.batch, "status": 200, "finished": "2026-11-23T23:59:59.000Z"}

    dest = spool.finish(manifest, record, MOMENT + timedelta(days=3))

    assert dest == folder / "sent" / "2026-11-23" / manifest.batch
    assert listing(dest) == ["courses.csv", "receipt.json", "users.csv", "users.csv.done"]
    assert json.loads((dest / "receipt.json").read_text()) == record
    assert (dest / "users.csv").read_bytes() == USERS
    assert not spool.batch_dir(manifest.batch).exists()
    assert spool.batch_ids() == []


def test_spool_finish_sent_dates_by_utc(spool: Spool, folder: Path) -> None:
    manifest = claimed_batch(spool, "users.csv")
    manifest.state = BatchState.SENT
    east = datetime(2026, 11, 24, 1, 30, tzinfo=timezone(timedelta(hours=5)))
    dest = spool.finish(manifest, {"status": 200}, east)
    assert dest == folder / "sent" / "2026-11-23" / manifest.batch


def test_spool_finish_failed_moves_files_with_error(spool: Spool, folder: Path) -> None:
    manifest = claimed_batch(spool, "users.csv")
    manifest.state = BatchState.FAILED
    record = {"step": "validate", "reason": "users.csv line 2: 5 fields, the header has 6"}

    dest = spool.finish(manifest, record, MOMENT)

    assert dest == folder / "failed" / manifest.batch
    assert listing(dest) == ["error.json", "users.csv"]
    assert json.loads((dest / "error.json").read_text()) == record


@pytest.mark.parametrize(
    ("state", "dropped", "record_file"),
    [
        (BatchState.SENT, "receipt.json", "receipt.dropd.json"),
        (BatchState.FAILED, "error.json", "error.dropd.json"),
    ],
)
def test_spool_finish_record_never_overwrites_a_dropped_file(
    spool: Spool, state: BatchState, dropped: str, record_file: str
) -> None:
    manifest = spool.open_batch(MOMENT)
    assert spool.claim(manifest.batch, drop(spool.folder, dropped, b'{"mine": true}'))
    manifest.files = [FileRecord(dropped, 14, kind="other")]
    manifest.state = state

    dest = spool.finish(manifest, {"status": 1, "finished": "2026-11-23T09:00:00Z"}, MOMENT)

    assert listing(dest) == sorted([dropped, record_file])
    assert (dest / dropped).read_bytes() == b'{"mine": true}'
    assert json.loads((dest / record_file).read_text())["status"] == 1


def test_spool_complete_move_after_a_crash_past_the_rename(spool: Spool, folder: Path) -> None:
    manifest = claimed_batch(spool, "users.csv")
    manifest.state = BatchState.SENT
    manifest.record = {"status": 200, "finished": "2026-11-23T09:00:00.000Z"}
    spool.save(manifest)
    dest = spool.destination(manifest, MOMENT)
    write_json_atomic(spool.files_dir(manifest.batch) / "receipt.json", manifest.record)
    dest.parent.mkdir(parents=True)
    os.rename(spool.files_dir(manifest.batch), dest)  # then the crash: work/BATCH remains

    assert spool.complete_move(spool.load(manifest.batch), MOMENT) == dest

    assert listing(dest) == ["receipt.json", "users.csv"]
    assert spool.batch_ids() == []


def test_spool_complete_move_after_a_crash_past_the_record(spool: Spool, folder: Path) -> None:
    # The crash came after receipt.json was written beside the files, before their move:
    # the repeat must not take dropd's own record for a dropped file.
    manifest = claimed_batch(spool, "users.csv")
    manifest.state = BatchState.SENT
    manifest.record = {"status": 200, "finished": "2026-11-23T09:00:00.000Z"}
    spool.save(manifest)
    write_json_atomic(spool.files_dir(manifest.batch) / "receipt.json", manifest.record)

    dest = spool.complete_move(spool.load(manifest.batch), MOMENT)

    assert listing(dest) == ["receipt.json", "users.csv"]


# -- the owner lock -------------------------------------------------------------------------

_HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from daemon.spool.store import Spool
    spool = Spool(Path(sys.argv[1]), "music")
    print("locked" if spool.try_lock() else "refused", flush=True)
    sys.stdin.read()
    spool.unlock()
    """
)


@pytest.fixture
def holder(folder: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that takes the folder's lock and keeps it until its stdin closes."""
    process = start_child(_HOLDER, str(folder))
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()


def test_spool_try_lock_refused_while_another_process_holds_it(
    folder: Path, holder: subprocess.Popen[str]
) -> None:
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "locked"
    spool = Spool(folder, "music")

    assert not spool.try_lock()
    assert (folder / ".dropd" / "lock").read_text().strip() == str(holder.pid)

    holder.stdin.close()
    assert holder.wait(timeout=10) == 0
    assert spool.try_lock()
    assert (folder / ".dropd" / "lock").read_text().strip() == str(os.getpid())
    spool.unlock()


def test_spool_try_lock_held_here_refuses_another_process(folder: Path) -> None:
    spool = Spool(folder, "music")
    assert spool.try_lock()
    assert spool.try_lock()  # taking it again is a no-op
    try:
        result = run_child(_HOLDER, str(folder), timeout=30, check=True)
        assert result.stdout.strip() == "refused"
    finally:
        spool.unlock()
    result = run_child(_HOLDER, str(folder), timeout=30, check=True)
    assert result.stdout.strip() == "locked"


def test_spool_lock_file_is_private(folder: Path) -> None:
    spool = Spool(folder, "music")
    assert spool.try_lock()
    spool.unlock()
    assert (folder / ".dropd" / "lock").stat().st_mode & 0o077 == 0


def test_spool_claim_leaves_a_file_that_changed_since_its_scan(spool: Spool, folder: Path) -> None:
    path = folder / "users.csv"
    path.write_bytes(b"user_id,login_id\n")
    seen = path.stat()
    ready = ReadyFile("users.csv", seen.st_size, seen.st_mtime_ns, FileKind.CSV)
    path.write_bytes(b"user_id,login_id\nmore\n")  # the writer was not done after all
    batch = spool.open_batch(MOMENT)
    assert spool.claim(batch.batch, ready) is False
    assert path.exists()
    assert spool.file_count(batch.batch) == 0


# -- held by descriptor: links, things replaced under it ----------------------------------


def test_claim_refuses_a_file_replaced_since_the_scan_that_found_it(spool: Spool) -> None:
    manifest = spool.open_batch(MOMENT)
    for swap in ("link", "fifo", "other file"):
        ready = drop(spool.folder, "users.csv")
        ready = ReadyFile(ready.name, ready.size, ready.mtime_ns, ready.kind, (), 1)
        path = spool.folder / "users.csv"
        path.unlink()
        if swap == "link":
            os.symlink("/etc/passwd", path)
        elif swap == "fifo":
            os.mkfifo(path)
        else:
            path.write_bytes(USERS)  # same size, but not the inode the scan saw
        assert not spool.claim(manifest.batch, ready), swap
        assert os.path.lexists(path), f"{swap}: left where it was"
        path.unlink()
    assert spool.file_count(manifest.batch) == 0


def test_open_refuses_a_spool_that_is_a_link_and_writes_nothing_there(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "drop").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "drop" / ".dropd")
    spool = Spool(tmp_path / "drop", "music")
    with pytest.raises(FolderError) as caught:
        spool.try_lock()
    assert ".dropd is a symbolic link" in caught.value.reason
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_open_makes_a_private_spool(folder: Path, spool: Spool) -> None:
    assert (folder / ".dropd").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("target", ["outside", "nowhere"])
def test_finish_never_files_through_a_link_and_files_once_it_is_gone(
    tmp_path: Path, folder: Path, spool: Spool, target: str
) -> None:
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / target, folder / "sent")
    manifest = claimed_batch(spool, "users.csv")
    manifest.state = BatchState.SENT
    record = {"finished": "2026-11-23T08:58:10.000Z"}
    with pytest.raises(FolderError):
        spool.finish(manifest, record, MOMENT)
    assert list((tmp_path / "outside").iterdir()) == []
    assert not (tmp_path / "nowhere").exists()
    assert spool.exists(manifest.batch), "the batch waits in the spool"
    (folder / "sent").unlink()
    dest = spool.complete_move(spool.load(manifest.batch), MOMENT)
    assert dest == folder / "sent" / "2026-11-23" / manifest.batch
    assert listing(dest) == ["receipt.json", "users.csv"]


def test_layout_problems_names_links_where_batches_are_filed(folder: Path, spool: Spool) -> None:
    assert spool.layout_problems(MOMENT) == []
    (folder / "sent").mkdir()
    os.symlink("/tmp", folder / "sent" / "2026-11-23")
    [problem] = spool.layout_problems(MOMENT)
    assert "sent/2026-11-23 is a symbolic link" in problem
    os.symlink("/tmp", folder / "held")
    [problem] = spool.layout_problems(MOMENT)
    assert "held is a symbolic link" in problem


def test_lost_tells_the_folder_by_what_it_is_not_by_its_path(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    spool = Spool(folder, "music")
    assert spool.try_lock()
    assert spool.lost() is None
    (folder / ".dropd" / "lock").unlink()
    assert "lock was removed or replaced" in (spool.lost() or "")
    spool.unlock()
    assert spool.try_lock() and spool.lost() is None
    os.rename(folder / ".dropd", tmp_path / "old-spool")
    (folder / ".dropd").mkdir()
    assert ".dropd was removed or replaced" in (spool.lost() or "")
    spool.unlock()
    assert spool.try_lock()
    os.rename(folder, tmp_path / "moved")
    assert "is gone" in (spool.lost() or "")
    folder.mkdir()
    said = spool.lost() or ""
    assert "replaced by another folder" in said and str(tmp_path / "moved") in said
    spool.unlock()


def test_json_writes_keep_a_name_that_is_not_utf8_and_never_follow_a_link(
    tmp_path: Path,
) -> None:
    name = os.fsdecode(b"caf\xe9.csv")
    path = tmp_path / "manifest.json"
    os.symlink(tmp_path / "elsewhere", tmp_path / ".manifest.json.tmp")  # left in its way
    write_json_atomic(path, {"files": [name]})
    assert json.loads(path.read_text(encoding="utf-8"))["files"] == [name]
    assert not (tmp_path / "elsewhere").exists()
    assert not (tmp_path / ".manifest.json.tmp").exists()


def test_show_writes_the_spools_descriptor_paths_as_the_folders_own(
    folder: Path, spool: Spool
) -> None:
    work = str(spool.work)
    said = spool.show(f"{work}/B1/manifest.json: full; {work}9/x stays")
    assert said == f"{folder}/.dropd/work/B1/manifest.json: full; {work}9/x stays"


def test_try_lock_refuses_a_fifo_at_the_lock_without_waiting_on_it(tmp_path: Path) -> None:
    (tmp_path / ".dropd").mkdir(mode=0o700)
    os.mkfifo(tmp_path / ".dropd" / "lock")
    with pytest.raises(FolderError) as caught:
        Spool(tmp_path, "music").try_lock()
    assert "lock is not a regular file" in caught.value.reason


def test_spool_fresh_unpacked_dir_starts_empty_and_is_cleared(spool: Spool) -> None:
    manifest = spool.open_batch(MOMENT)
    leftover = spool.fresh_unpacked_dir(manifest.batch)
    (leftover / "users.csv").write_bytes(b"half of it")  # a crash came mid-unpacking
    again = spool.fresh_unpacked_dir(manifest.batch)
    assert again == leftover and list(again.iterdir()) == []
    assert again.stat().st_mode & 0o777 == 0o700
    spool.clear_unpacked(manifest.batch)
    spool.clear_unpacked(manifest.batch)  # gone already: nothing to do
    assert listing(spool.batch_dir(manifest.batch)) == ["files", "manifest.json"]


def test_spool_save_load_round_trip_of_a_dropped_zip(spool: Spool) -> None:
    manifest = spool.open_batch(MOMENT)
    manifest.unpacked = Unpacked(
        "export.zip", (UnpackedEntry("a/users.csv", "users.csv", 51),), ("__MACOSX/a/._users.csv",)
    )
    spool.save(manifest)
    assert spool.load(manifest.batch) == manifest
